"""VAE.score: -log p(x) from a folder's score.onnx (formats 1 and 2), against PyTorch's ELBO and IWAE on the same
weights and noise; the pixels it scores (binarized models threshold grey inputs); 0.1.0 folders refused in one line."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

from conftest import REPO, learned_prior_model
from vae_edge.export import export_model
from vae_edge.export.load import load_model
from vae_edge.runtime import VAE, ModelFolderError, RuntimeInputError, random
from vae_edge.train.iwae import Score
from vae_edge.train.model import elbo_terms

FIXTURES = REPO / "tests" / "fixtures"
SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """tests/fixtures/format1-mlp.pt exported today: a format-1 folder with score.onnx, and its torch model."""
    model, _ = load_model(FIXTURES / "format1-mlp.pt", SHAPE)
    out = tmp_path_factory.mktemp("score") / "mlp"
    export_model(model, out)
    return model.eval(), out


@pytest.fixture(scope="module")
def vamp(tmp_path_factory):
    model = learned_prior_model()
    out = tmp_path_factory.mktemp("score") / "vamp"
    export_model(model, out)
    return model, out


def _images(n: int) -> np.ndarray:
    return np.random.default_rng().random((n, *SHAPE), dtype=np.float32)


def _torch_nll(log_w: torch.Tensor) -> np.ndarray:
    """-(logsumexp over the samples - log k), float64."""
    return -(torch.logsumexp(log_w.double(), 0) - math.log(log_w.shape[0])).numpy()


def test_a_format1_export_writes_score_onnx_and_keeps_format_version_1(mlp):
    _, out = mlp
    meta = json.loads((out / "vae.json").read_text())
    assert meta["format_version"] == 1 and "prior" not in meta and "min_vae_edge" not in meta
    assert meta["files"]["score"]["path"] == "score.onnx"
    assert meta["parity"]["score"]["log_w_rel"] <= meta["parity"]["score"]["log_w_rtol"]


@pytest.mark.parametrize("k", [1, 5])
def test_format1_scores_are_torch_s_negative_elbo_and_iwae_on_the_same_noise(mlp, k):
    model, out = mlp
    x = _images(6)
    eps = np.random.default_rng().standard_normal((k, 6, model.latent_dim), dtype=np.float32)
    with torch.no_grad():
        ref = _torch_nll(Score(model)(torch.from_numpy(x), torch.from_numpy(eps)))
    np.testing.assert_allclose(VAE.load(out).score(x, k=k, eps=eps), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k", [1, 5])
def test_format2_scores_are_torch_s_negative_elbo_and_iwae_on_the_same_noise(vamp, k):
    model, out = vamp
    x = _images(6)
    eps = np.random.default_rng().standard_normal((k, 6, model.latent_dim), dtype=np.float32)
    with torch.no_grad():
        ref = _torch_nll(Score(model)(torch.from_numpy(x), torch.from_numpy(eps)))
    np.testing.assert_allclose(VAE.load(out).score(x, k=k, eps=eps), ref, rtol=1e-5, atol=1e-4)


def test_the_k1_score_averages_to_the_analytic_negative_elbo(mlp):
    """One sample of log w is an unbiased draw of the ELBO: over many seeds its mean is PyTorch's rec + KL."""
    model, out = mlp
    vae, x = VAE.load(out), _images(1)
    draws = np.array([vae.score(x, seed=s)[0] for s in range(400)])
    with torch.no_grad():  # the reconstruction term's expectation by many draws of z, the KL analytic
        e = torch.randn(20000, model.latent_dim, generator=torch.Generator().manual_seed(0))
        recs, kls = elbo_terms(model, torch.from_numpy(x).expand(20000, *SHAPE), e)
    expected = float(recs.mean() + kls[0])
    se = math.hypot(draws.std() / math.sqrt(len(draws)), float(recs.std()) / math.sqrt(len(recs)))
    assert abs(draws.mean() - expected) < 4 * se


def test_the_seed_s_noise_is_image_i_s_own_run_and_start_continues_a_chunked_set(mlp):
    _, out = mlp
    vae, x, k, d, seed = VAE.load(out), _images(5), 3, 3, 7
    eps = random.gaussian(5 * k * d, seed).reshape(5, k, d).transpose(1, 0, 2)
    whole = vae.score(x, k=k, seed=seed)
    np.testing.assert_array_equal(whole, vae.score(x, k=k, eps=eps))
    np.testing.assert_array_equal(whole[2:], vae.score(x[2:], k=k, seed=seed, start=2))


def test_bits_per_dim_is_nats_over_the_pixel_count_and_log_2(mlp):
    _, out = mlp
    vae, x = VAE.load(out), _images(3)
    np.testing.assert_allclose(vae.score(x, seed=1, bits_per_dim=True), vae.score(x, seed=1) / (64 * math.log(2)))


def _binarized_copy(out, tmp_path):
    dst = tmp_path / "binary"
    shutil.copytree(out, dst)
    meta = json.loads((dst / "vae.json").read_text())
    meta["recipe"] = {"binarize": True}
    (dst / "vae.json").write_text(json.dumps(meta))
    return dst


def test_a_binarized_model_scores_grey_inputs_thresholded_at_one_half(mlp, tmp_path):
    _, out = mlp
    binary, grey = VAE.load(_binarized_copy(out, tmp_path)), VAE.load(out)
    x = _images(4)
    bits = (x >= 0.5).astype(np.float32)
    assert binary.pixel_rule == "binary: x >= 0.5 is 1" and grey.pixel_rule == "grey levels in [0, 1]"
    np.testing.assert_array_equal(binary.score(x, seed=3), grey.score(bits, seed=3))
    u = (x * 255).astype(np.uint8)  # uint8: 128 and above are 1 (128 / 255 >= 0.5 > 127 / 255)
    np.testing.assert_array_equal(binary.score(u, seed=3), grey.score((u >= 128).astype(np.float32), seed=3))
    assert not np.array_equal(grey.score(x, seed=3), grey.score(bits, seed=3))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_a_0_1_0_folder_is_refused_in_one_line_that_says_to_re_export_and_still_samples(arch):
    vae = VAE.load(FIXTURES / f"format1-{arch}")
    with pytest.raises(ModelFolderError, match="has no score.onnx .*re-export it with vae-export") as e:
        vae.score(np.zeros((1, *vae.input_shape), np.float32))
    assert "\n" not in str(e.value)
    assert vae.sample(2, seed=0).shape == (2, *vae.input_shape)


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k must be >= 1"),
    ({"k": 2**20 + 1}, "k must be at most 1048576 per call"),
    ({"eps": np.zeros((2, 2, 3))}, r"eps has float64 shape \(2, 2, 3\); expected floats of shape \(1, 2, 3\)"),
    ({"eps": np.full((1, 2, 3), np.nan)}, "eps contains NaN or inf"),
    ({"seed": -1}, "seed must be an integer"),
])
def test_bad_arguments_are_one_line_input_errors(mlp, kwargs, message):
    _, out = mlp
    with pytest.raises(RuntimeInputError, match=message):
        VAE.load(out).score(_images(2), **kwargs)

"""A learned-prior or two-layer export (format 2): prior.onnx and score.onnx in the folder, the Python runtime sampling
through them and computing the IWAE estimate from the files alone, against PyTorch on the same noise."""
import hashlib
import json

import numpy as np
import pytest
import torch

from conftest import copy_export, learned_prior_model as _model, rehash, run_cli
from vae_edge.export import export_model
from vae_edge.runtime import VAE, ModelFolderError, random
from vae_edge.train.iwae import iwae_log_likelihood
from vae_edge.train.model import VAE as TorchVAE

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    model = _model()
    out = tmp_path_factory.mktemp("prior") / "vamp2"
    export_model(model, out)
    return model, out


def test_the_folder_carries_prior_and_score_graphs_with_their_sha256_and_names_the_noise(folder):
    _, out = folder
    meta = json.loads((out / "vae.json").read_text())
    assert meta["format_version"] == 2 and meta["min_vae_edge"] == "0.2.0"
    assert {"prior", "score"} <= set(meta["files"])
    for key in ("prior", "score"):
        entry = meta["files"][key]
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    p = meta["prior"]
    assert (p["name"], p["components"], p["latent_layers"], p["layer_sizes"]) == ("vamp", 5, 2, [2, 2])
    assert list(p["sample"]["inputs"]) == ["eps", "u"]
    assert meta["parity"]["prior"]["z"] <= 1e-5 and meta["parity"]["prior"]["log_w_rel"] <= 1e-5


def test_a_gaussian_hierarchy_s_prior_graph_takes_eps_alone(tmp_path):
    info = export_model(_model(prior="gaussian"), tmp_path / "g2")
    assert list(info["prior"]["sample"]["inputs"]) == ["eps"]
    vae = VAE.load(tmp_path / "g2")
    assert vae.prior == "gaussian" and vae.sample(3, seed=1).shape == (3, *SHAPE)


def test_the_prior_graph_s_samples_have_the_mixture_s_mean_and_covariance(tmp_path):
    model = _model(layers=1, latent=2, components=3)
    with torch.no_grad():
        model.fc21.weight.mul_(10)
    export_model(model, tmp_path / "v1")
    vae = VAE.load(tmp_path / "v1")
    rng = np.random.default_rng()
    n = 400_000
    z = vae.from_noise(rng.standard_normal((n, 2)), rng.random(n)).astype(np.float64)
    with torch.no_grad():
        mu, logvar = (t.double().numpy() for t in model.prior.mixture())
    mean = mu.mean(0)
    cov = np.mean([np.diag(np.exp(lv)) + np.outer(m, m) for m, lv in zip(mu, logvar)], 0) - np.outer(mean, mean)
    assert np.abs(mu[0] - mu[1]).max() > 0.5  # a mixture, not one Gaussian
    np.testing.assert_allclose(z.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.03 * max(1.0, np.abs(cov).max()))


def test_sample_decodes_the_prior_graph_of_temperature_scaled_eps_and_an_unscaled_u(folder):
    model, out = folder
    vae = VAE.load(out)
    eps, u = random.gaussian(36, 7).reshape(9, 4), random.uniform(9, 7)
    with torch.no_grad():
        z = model.prior.sample(torch.from_numpy(0.5 * eps).float(), torch.from_numpy(u).float())
        want = model.probs(z).numpy()
    np.testing.assert_allclose(vae.sample(9, seed=7, temperature=0.5), want, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(list(vae.iter_samples(9, seed=7, temperature=0.5, batch_size=4))),
                               want, atol=1e-5)
    with torch.no_grad():  # temperature 0: z2 is the chosen component's mean, the choice unchanged by temperature
        mu, _ = model.prior.mixture()
    z0 = vae.from_noise(np.zeros((9, 4)), u)
    np.testing.assert_allclose(z0[:, 2:], mu.numpy()[np.minimum((u.astype(np.float32) * 5).astype(int), 4)], atol=1e-6)


def test_encode_decode_reconstruct_and_interpolate_work_on_a_learned_prior_folder(folder):
    model, out = folder
    vae = VAE.load(out)
    x = np.random.default_rng().random((3, *SHAPE), dtype=np.float32)
    mu, logvar = vae.encode(x)
    with torch.no_grad():
        ref_mu, ref_logvar = model.encode(torch.from_numpy(x))
    np.testing.assert_allclose(mu, ref_mu.numpy(), atol=1e-5)  # [z1, z2]'s mean path
    assert mu.shape == (3, 4) and vae.reconstruct(x).shape == x.shape
    assert vae.interpolate(x[0], x[1], steps=5).shape == (5, *SHAPE)
    np.testing.assert_allclose(vae.decode(mu), model.probs(ref_mu).detach().numpy(), atol=1e-5)


def test_the_iwae_noise_of_an_image_is_its_own_run_of_the_seed_s_stream(folder):
    """Image i's sample s is normals (i k + s) d .. (i k + s + 1) d - 1 of the seed (docs/noise.md): the estimate
    equals one on that noise given explicitly, and an image's estimate does not depend on the images beside it."""
    _, out = folder
    vae, k, d, seed = VAE.load(out), 7, 4, 11
    x = (np.random.default_rng().random((3, *SHAPE)) < 0.5).astype(np.float32)
    eps = random.gaussian(3 * k * d, seed).reshape(3, k, d).transpose(1, 0, 2)
    got = vae.log_likelihood(x, k=k, seed=seed)
    np.testing.assert_array_equal(got, vae.log_likelihood(x, k=k, eps=eps))
    np.testing.assert_array_equal(got[:2], vae.log_likelihood(x[:2], k=k, seed=seed))


def test_the_runtime_s_iwae_agrees_with_torch_on_the_same_noise(fashion_mnist):
    from vae_edge.train.data import load_data, pixels

    data = load_data("fashion-mnist", str(fashion_mnist))
    x = pixels(data.test, True)[:100].float()
    model = _model(shape=(1, 28, 28), latent=8, components=20)
    k = 200
    g = torch.Generator().manual_seed(1)
    torch_ll = iwae_log_likelihood(model, x, k, g, chunk=50).numpy()
    g = torch.Generator().manual_seed(1)
    eps = torch.cat([torch.randn((50, 100, 8), generator=g) for _ in range(k // 50)]).numpy()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        export_model(model, Path(d) / "m")
        runtime_ll = VAE.load(Path(d) / "m").log_likelihood(x.numpy(), k, eps=eps)
    assert abs(runtime_ll.mean() - torch_ll.mean()) < 0.05
    assert np.abs(runtime_ll - torch_ll).max() < 0.05


def test_a_folder_newer_than_this_runtime_names_the_vae_edge_it_needs(folder, tmp_path):
    dst = copy_export(folder[1], tmp_path)
    meta = json.loads((dst / "vae.json").read_text())
    meta.update(format_version=3, min_vae_edge="0.9.0")
    (dst / "vae.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match=r"format_version 3, newer .* needs vae-edge >= 0\.9\.0"):
        VAE.load(dst)
    r = run_cli("vae-sample", "--model", dst, "--n", 2, "--out", tmp_path / "s.png")
    assert r.returncode == 2 and "needs vae-edge >= 0.9.0" in r.stderr and "Traceback" not in r.stderr


def test_the_command_line_tools_work_on_a_learned_prior_folder(folder, tmp_path):
    _, out = folder
    info = run_cli("vae-info", "--model", out)
    assert info.returncode == 0, info.stderr
    assert "prior:    vamp: a mixture of the posteriors at 5 pseudo-inputs, two latent layers" in info.stdout
    assert run_cli("vae-sample", "--model", out, "--n", 4, "--out", tmp_path / "s.png").returncode == 0
    z = tmp_path / "z.npy"
    np.save(tmp_path / "x.npy", np.random.default_rng().random((2, *SHAPE), dtype=np.float32))
    r = run_cli("vae-encode", "--model", out, tmp_path / "x.npy", "--out", z)
    assert r.returncode == 0, r.stderr
    r = run_cli("vae-decode", "--model", out, z, "--out", tmp_path / "d.png")
    assert r.returncode == 0, r.stderr


def test_a_vampprior_checkpoint_exports_with_its_model_facts_and_recipe(tmp_path):
    from vae_edge.export import export_checkpoint
    from vae_edge.train import checkpoint
    from vae_edge.train.config import Config
    from vae_edge.train.train import final_checkpoint

    cfg = Config(arch="conv", hidden_dim=16, latent_dim=4, input_shape=SHAPE, prior="vamp", prior_components=6,
                 latent_layers=2)
    torch.manual_seed(0)
    model = TorchVAE.from_config(cfg.architecture())
    checkpoint.save(final_checkpoint(model, cfg, []), tmp_path / "model.pt")
    info = export_checkpoint(tmp_path / "model.pt", tmp_path / "out")
    assert info["model"] == cfg.architecture()
    assert (info["model"]["prior"], info["model"]["prior_components"], info["model"]["latent_layers"]) == ("vamp", 6, 2)
    assert info["recipe"]["prior"] == "vamp" and info["format_version"] == 2


def test_a_prior_graph_that_is_the_folders_int8_encoder_is_refused_at_load_not_at_the_first_sample(vamp_export,
                                                                                                    tmp_path):
    dst = copy_export(vamp_export, tmp_path)
    (dst / "prior.onnx").write_bytes((dst / "encoder.int8.onnx").read_bytes())
    rehash(dst, "prior")
    with pytest.raises(ModelFolderError) as e:
        VAE.load(dst, decoder_only=True)
    assert str(e.value).startswith(f"{dst / 'prior.onnx'} is not the prior vae.json describes: it maps x float32 ")
    assert str(e.value).endswith("expected eps float32 [batch, 4], u float32 [batch] -> z float32 [batch, 4]")
    r = run_cli("vae-sample", "--model", dst, "--n", 2, "--out", tmp_path / "s.png")
    assert r.returncode == 2 and "prior.onnx is not the prior vae.json describes" in r.stderr
    assert "Traceback" not in r.stderr and "Required inputs" not in r.stderr


def test_a_score_graph_that_is_another_network_is_refused_when_first_used_naming_the_file(vamp_export, tmp_path):
    dst = copy_export(vamp_export, tmp_path)
    (dst / "score.onnx").write_bytes((dst / "prior.onnx").read_bytes())
    rehash(dst, "score")
    vae = VAE.load(dst)  # score.onnx waits until something scores
    x = np.random.default_rng().random((2, *SHAPE), dtype=np.float32)
    with pytest.raises(ModelFolderError, match=r"score\.onnx is not the score graph vae\.json describes: it maps eps "
                                               r"float32 \[batch, 4\], u float32 \[batch\] -> z float32 \[batch, 4\]; "
                                               r"expected x float32 \[batch, 1, 8, 8\], eps float32 "
                                               r"\[samples, batch, 4\] -> log_w float32 \[samples, batch\]$"):
        vae.log_likelihood(x, k=3)

"""int8: calibrated static quantization where it stays within the error bound, dynamic where that is what does,
fp32 only when nothing does; the error measured on a model that has really learned."""
import gzip
import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from conftest import REPO, blobs, trained
from vae_edge.export import ExportError, export_model, int8_decoder, quantize
from vae_edge.export.graphs import decoder_graph
from vae_edge.export.parity import session
from vae_edge.export.cli import app
from vae_edge.runtime import VAE, ModelFolderError
from vae_edge.train import checkpoint
from vae_edge.train.config import Config
from vae_edge.train.model import VAE as TorchVAE
from vae_edge.train.train import final_checkpoint

BUNDLED = REPO / "runtime" / "models" / "fashion-mnist"


@pytest.fixture(scope="module")
def conv_and_images(tmp_path_factory):
    """A small conv VAE trained a few steps, and a .npy of 8x8 images to calibrate on."""
    d = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    model = trained(TorchVAE("conv", (1, 8, 8), hidden_dim=32, latent_dim=4), steps=20)
    np.save(d / "images.npy", blobs(64, 8))
    return model, d / "images.npy"


def test_a_calibrated_export_is_the_same_file_every_time(conv_and_images, tmp_path):
    model, images = conv_and_images
    a = export_model(model, tmp_path / "a", quantize="int8", calibration=str(images))
    b = export_model(model, tmp_path / "b", quantize="int8", calibration=str(images))
    assert a["int8"]["calibration"] == "48 images from " + str(images)
    assert "static" in a["int8"]["tried"]["encoder"]  # real images: the static way was tried
    assert a["int8"]["tried"] == b["int8"]["tried"]  # the same images, the same noise, the same errors
    for key in ("encoder_int8", "decoder_int8"):  # the same graphs and scales (the metadata holds fresh parity figures)
        graphs = [onnx.load(str(d / a["files"][key]["path"])).graph.SerializeToString() for d in (tmp_path / "a",
                                                                                                  tmp_path / "b")]
        assert graphs[0] == graphs[1]


def test_calibration_images_of_the_wrong_shape_are_refused_in_one_line(conv_and_images, tmp_path):
    model, _ = conv_and_images
    np.save(tmp_path / "wrong.npy", np.zeros((10, 3, 8, 8), np.uint8))
    cfg = Config(arch="conv", hidden_dim=32, latent_dim=4, input_shape=(1, 8, 8))
    checkpoint.save(final_checkpoint(model, cfg, []), tmp_path / "model.pt")
    r = CliRunner().invoke(app, [str(tmp_path / "model.pt"), "--out", str(tmp_path / "out"), "--quantize", "int8",
                                 "--calibration", str(tmp_path / "wrong.npy")])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "has shape (10, 3, 8, 8); the model takes images of (1, 8, 8)" in r.stderr
    assert not (tmp_path / "out").exists()


def test_over_the_bound_the_export_keeps_fp32_only_and_says_so(conv_and_images, tmp_path, monkeypatch):
    model, images = conv_and_images
    monkeypatch.setattr(quantize, "BOUND", {"mu_mean_abs": 1e-9, "x_mean_abs": 1e-9})
    said = []
    info = export_model(model, tmp_path / "out", quantize="int8", calibration=str(images), say=said.append)
    assert set(info["files"]) == {"encoder", "decoder"}
    assert said and said[0].startswith("note: int8 stays over the error bound (encoder ")
    with pytest.raises(ModelFolderError, match="at export their error against fp32 was over the bound"):
        VAE.load(tmp_path / "out", precision="int8")
    forced = export_model(model, tmp_path / "forced", quantize="int8", calibration=str(images), force_int8=True)
    assert {"encoder_int8", "decoder_int8"} <= set(forced["files"])


def test_the_way_chosen_is_the_first_within_the_bound(conv_and_images, tmp_path):
    model, images = conv_and_images
    q = export_model(model, tmp_path / "out", quantize="int8", calibration=str(images))["int8"]
    for role, bound in (("encoder", q["bound"]["mu_mean_abs"]), ("decoder", q["bound"]["x_mean_abs"])):
        tried = list(q["tried"][role].items())
        assert tried[-1][0] == q["method"][role] and tried[-1][1]["mean_abs"] <= bound
        assert all(err["mean_abs"] > bound for _, err in tried[:-1])


def test_the_decoders_int8_layout_computes_what_the_decoder_computes(conv_and_images):
    model, _ = conv_and_images
    z = np.random.default_rng().standard_normal((37, model.latent_dim)).astype(np.float32)
    plain, layout = (session(decoder_graph(model, int8_layout=flag).SerializeToString()) for flag in (False, True))
    np.testing.assert_allclose(layout.run(None, {"z": z})[0], plain.run(None, {"z": z})[0], atol=1e-6)


def _static_decoder_before_and_after_the_last_conv_rewrite(model):
    z = np.random.default_rng(0).standard_normal((256, model.latent_dim)).astype(np.float32)
    q = quantize.static_decoder_qdq(decoder_graph(model, int8_layout=True), z)
    return q, int8_decoder.integer_last_conv(onnx.ModelProto.FromString(q.SerializeToString()))


def test_the_static_decoder_computes_its_logits_in_int32_and_never_rounds_them_to_8_bits(conv_and_images):
    model, _ = conv_and_images
    _, q = _static_decoder_before_and_after_the_last_conv_rewrite(model)
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("MatMulInteger") == 4 and ops.count("Conv") == 1  # conv1 (int8 in onnxruntime) and 4 taps
    last_quantize = max(i for i, op in enumerate(ops) if op == "QuantizeLinear")
    assert last_quantize < ops.index("MatMulInteger") and ops[-1] == "Sigmoid"


@pytest.mark.parametrize("channels", [1, 3])
def test_the_last_conv_as_integer_products_matches_the_float_conv_of_the_same_int8_input(channels):
    """Only the last conv's weights are rounded (int8 per output channel): on fresh latents the pixels stay
    within 0.002 of the same graph with that conv in float, grey or RGB (the pixel shuffle's channel order)."""
    torch.manual_seed(0)
    model = trained(TorchVAE("conv", (channels, 8, 8), hidden_dim=32, latent_dim=4), steps=20).eval()
    before, after = (session(q.SerializeToString()) for q in _static_decoder_before_and_after_the_last_conv_rewrite(model))
    z = np.random.default_rng().standard_normal((200, model.latent_dim)).astype(np.float32)
    assert np.abs(after.run(None, {"z": z})[0] - before.run(None, {"z": z})[0]).mean() < 0.002


def test_the_bundled_decoder_is_static_int8():
    """The chooser's first way passes on the bundled model: int8 products all through the decoder."""
    q = json.loads((BUNDLED / "vae.json").read_text())["int8"]
    assert q["method"]["decoder"] == "static" and list(q["tried"]["decoder"]) == ["static"]


def _test_images(n=2000):
    from conftest import FASHION_MNIST
    with gzip.open(FASHION_MNIST / "t10k-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]


def test_the_bundled_int8_files_stay_within_the_bound_on_real_images(fashion_mnist):
    """A model that has really learned, on Fashion-MNIST test images: mean abs error <= 0.02 on mu, <= 0.002 on
    pixels (reconstructions and samples), the bounds of the issue, independent of what the export measured."""
    x = _test_images()
    fp32, int8 = VAE.load(BUNDLED), VAE.load(BUNDLED, precision="int8")
    mu, mu8 = fp32.encode(x)[0], int8.encode(x)[0]
    assert np.abs(mu8 - mu).mean() <= 0.02
    z = np.concatenate([mu, np.random.default_rng().standard_normal(mu.shape).astype(np.float32)])
    assert np.abs(int8.decode(z) - fp32.decode(z)).mean() <= 0.002
    # and not trivially: a constant encoder or decoder would be far off
    assert mu.std() > 0.3 and fp32.decode(z).std() > 0.1


def test_the_bundled_vae_json_records_the_way_each_int8_file_was_made():
    q = json.loads((BUNDLED / "vae.json").read_text())["int8"]
    assert set(q["method"]) == {"encoder", "decoder"} and q["calibration"].endswith("of fashion-mnist")
    assert q["x_mean_abs"] <= q["bound"]["x_mean_abs"] and q["mu_mean_abs"] <= q["bound"]["mu_mean_abs"]

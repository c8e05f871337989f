"""What keeps int8 honest where nothing else looks: the forced export keeps its most accurate way, and the
integer rewrite of the decoder's last conv refuses a convolution it cannot rewrite."""
import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from conftest import blobs, trained
from vae_edge.export import export_model, int8_decoder, quantize
from vae_edge.export.graphs import decoder_graph
from vae_edge.train.model import VAE as TorchVAE


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    """A small conv VAE trained a few steps, and a .npy of 8x8 images to calibrate on."""
    torch.manual_seed(0)
    model = trained(TorchVAE("conv", (1, 8, 8), hidden_dim=32, latent_dim=4), steps=20)
    images = tmp_path_factory.mktemp("int8-guards") / "images.npy"
    np.save(images, blobs(64, 8))
    return model, images


def test_forced_over_the_bound_each_graph_keeps_its_most_accurate_way(conv, tmp_path, monkeypatch):
    model, images = conv
    monkeypatch.setattr(quantize, "BOUND", {"mu_mean_abs": 1e-9, "x_mean_abs": 1e-9})  # no way passes
    q = export_model(model, tmp_path / "out", quantize="int8", calibration=str(images), force_int8=True)["int8"]
    for role, recorded in (("encoder", "mu_mean_abs"), ("decoder", "x_mean_abs")):
        tried = q["tried"][role]
        assert len(tried) >= 2, tried  # a real choice
        best = min(tried, key=lambda way: tried[way]["mean_abs"])
        assert q["method"][role] == best and q[recorded] == tried[best]["mean_abs"], (role, q)


def _static_decoder(model):
    z = np.random.default_rng(0).standard_normal((256, model.latent_dim)).astype(np.float32)
    return quantize.static_decoder_qdq(decoder_graph(model, int8_layout=True), z)


def _last_conv_with(q: onnx.ModelProto, name: str, value) -> onnx.ModelProto:
    q = onnx.ModelProto.FromString(q.SerializeToString())
    conv = [n for n in q.graph.node if n.op_type == "Conv"][-1]
    for a in [a for a in conv.attribute if a.name == name]:
        conv.attribute.remove(a)
    conv.attribute.append(helper.make_attribute(name, value))
    return q


@pytest.mark.parametrize("name, value", [("pads", [1, 1, 1, 1]), ("pads", [0, 0, 0, 1]), ("strides", [2, 2]),
                                         ("strides", [1, 2]), ("group", 2)])
def test_the_last_conv_rewrite_refuses_padding_strides_and_groups(conv, name, value):
    model, _ = conv
    q = _static_decoder(model)
    int8_decoder.integer_last_conv(onnx.ModelProto.FromString(q.SerializeToString()))  # as exported: rewritten
    with pytest.raises(ValueError, match="not the phase decoder's Conv and pixel shuffle"):
        int8_decoder.integer_last_conv(_last_conv_with(q, name, value))

"""int8 weights rounded by what they do to the layer's output (export/rounding.py), not each to the nearest."""
import numpy as np
import onnx
import torch
from onnx import numpy_helper

from conftest import trained
from vae_edge.export import quantize, rounding
from vae_edge.export.graphs import decoder_graph
from vae_edge.export.int8_reference import reference_run
from vae_edge.train.model import VAE as TorchVAE


def _inputs(rng, n, mixing):
    """Post-ReLU activations with correlated columns, as a layer inside a network sees them."""
    return np.maximum(rng.standard_normal((n, mixing.shape[0])) @ mixing, 0)


def _output_error(w, q, scale, zero, x):
    return (((w - (q - zero) * scale[:, None]) @ x.T) ** 2).mean()


def test_rounding_by_output_keeps_a_layer_closer_than_rounding_each_weight_to_the_nearest():
    rng = np.random.default_rng()
    mixing = rng.standard_normal((48, 48))
    calibration, fresh = _inputs(rng, 2000, mixing), _inputs(rng, 2000, mixing)
    w = rng.standard_normal((32, 48))
    scale = np.abs(w).max(1) / 64
    q = rounding.round_by_output(w, scale, 0, -64, 64, calibration.T @ calibration)
    nearest = np.clip(np.round(w / scale[:, None]), -64, 64)
    assert _output_error(w, q, scale, 0, fresh) < 0.85 * _output_error(w, nearest, scale, 0, fresh)


def test_rounded_weights_stay_within_their_integer_range_around_their_zero_point():
    rng = np.random.default_rng()
    x = _inputs(rng, 500, rng.standard_normal((40, 40)))
    w = rng.standard_normal((16, 40))
    scale = np.abs(w).max(1) / 127
    q = rounding.round_by_output(w, scale, 128, 0, 255, x.T @ x)
    assert q.min() >= 0 and q.max() <= 255
    assert np.abs((q - 128) * scale[:, None] - w).max() < 0.25 * np.abs(w).max()  # near w, not anywhere in range


def test_an_input_that_is_always_zero_leaves_the_rounding_finite_and_within_range():
    rng = np.random.default_rng()
    x = _inputs(rng, 300, rng.standard_normal((12, 12)))
    x[:, 3] = 0
    w = rng.standard_normal((5, 12))
    q = rounding.round_by_output(w, np.abs(w).max(1) / 64, 0, -64, 64, x.T @ x)
    assert np.isfinite(q).all() and np.abs(q).max() <= 64


def test_im2col_times_the_weights_is_the_convolution():
    rng = np.random.default_rng()
    x = rng.standard_normal((3, 5, 9, 8)).astype(np.float32)
    w = rng.standard_normal((7, 5, 3, 2)).astype(np.float32)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=(1, 1), stride=(2, 1))
    rows = rounding.im2col(x, (3, 2), pads=(1, 1, 1, 1), strides=(2, 1))
    got = (rows @ w.reshape(7, -1).T).reshape(3, want.shape[2], want.shape[3], 7).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def _dynamic_decoder():
    torch.manual_seed(0)
    model = trained(TorchVAE("mlp", (1, 8, 8), hidden_dim=32, latent_dim=4), steps=20).eval()
    fp32 = decoder_graph(model)
    return model, fp32, quantize._dynamic(fp32, quantize._first_layers(fp32, "z"))


def test_a_quantized_graph_keeps_its_scales_and_integer_types_and_only_its_weights_change():
    _, fp32, q = _dynamic_decoder()
    before = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    z = np.random.default_rng().standard_normal((256, 4)).astype(np.float32)
    floats = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in rounding.rounded_by_output(
        onnx.ModelProto.FromString(q.SerializeToString()), floats, {"z": z}).graph.initializer}
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert changed == [k for k in before if k.endswith("_quantized")] and changed
    assert all(after[k].dtype == before[k].dtype and after[k].shape == before[k].shape for k in changed)


def test_a_dynamic_int8_decoder_rounded_by_output_is_closer_to_pytorch_on_fresh_latents():
    model, fp32, q = _dynamic_decoder()
    rng = np.random.default_rng()
    calibration, fresh = (rng.standard_normal((n, 4)).astype(np.float32) for n in (512, 500))
    floats = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    rounded = rounding.rounded_by_output(onnx.ModelProto.FromString(q.SerializeToString()), floats,
                                         {"z": calibration})
    with torch.no_grad():
        want = model.probs(torch.from_numpy(fresh)).numpy()
    nearest, by_output = (np.abs(reference_run(g, "x", {"z": fresh}) - want).mean() for g in (q, rounded))
    assert by_output < nearest

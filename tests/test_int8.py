"""int8: calibrated static quantization where it stays within the error bound, dynamic where that is what does,
fp32 only when nothing does; the error measured on a model that has really learned."""
import gzip
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
import torch
from typer.testing import CliRunner

from conftest import REPO, blobs, trained
from int8_tolerance import REFERENCE_MEAN, off_reference
from vae_edge.export import export_model, int8_decoder, quantize
from vae_edge.export.graphs import decoder_graph, encoder_graph
from vae_edge.export.calibration import calibration
from vae_edge.export.int8_reference import reference_run
from vae_edge.export.parity import session, torch_outputs
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


@pytest.mark.fresh_graphs
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
    assert set(info["files"]) == {"encoder", "decoder", "score"}
    assert said and said[0].startswith("note: int8 stays over the error bound (encoder ")
    with pytest.raises(ModelFolderError, match="at export their error against fp32 was over the bound"):
        VAE.load(tmp_path / "out", precision="int8")
    forced = export_model(model, tmp_path / "forced", quantize="int8", calibration=str(images), force_int8=True)
    assert {"encoder_int8", "decoder_int8"} <= set(forced["files"])


def test_the_export_says_in_one_line_when_a_faster_way_missed_the_bound(conv_and_images, tmp_path):
    model, images = conv_and_images
    said = []
    q = export_model(model, tmp_path / "out", quantize="int8", calibration=str(images), say=said.append)["int8"]
    for role, ways in q["tried"].items():
        lines = [s for s in said if s.startswith(f"note: int8 {role}: ")]
        assert len(lines) == (len(ways) > 1)
        if lines:
            assert f"kept {q['method'][role]}" in lines[0] and all(w in lines[0] for w in ways)


def test_a_way_over_the_bound_is_named_with_its_error_and_the_way_kept():
    report = {"bound": {"mu_mean_abs": 0.02, "x_mean_abs": 0.002},
              "method": {"encoder": "dynamic", "decoder": "static"},
              "tried": {"encoder": {"static": {"mean_abs": 0.0254}, "mixed": {"mean_abs": 0.0203},
                                    "dynamic": {"mean_abs": 0.0173}},
                        "decoder": {"static": {"mean_abs": 0.0018}}}}
    assert quantize.fallback_messages(report) == [
        "int8 encoder: static 0.0254, mixed 0.0203 over the bound 0.02 (mean abs vs PyTorch); kept dynamic (0.0173)"]


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


@pytest.mark.parametrize("latent_layers", [1, 2])
def test_the_encoders_int8_layout_computes_what_the_encoder_computes(latent_layers):
    torch.manual_seed(0)
    model = TorchVAE("conv", (1, 28, 28), hidden_dim=32, latent_dim=4, latent_layers=latent_layers).eval()
    x = np.random.default_rng().random((37, 1, 28, 28), dtype=np.float32)
    plain, layout = (session(encoder_graph(model, int8_layout=flag).SerializeToString()) for flag in (False, True))
    for got, want in zip(layout.run(None, {"x": x}), plain.run(None, {"x": x})):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_encoders_int8_convolutions_are_quantized_in_its_int8_layout(conv_and_images):
    """The static and mixed ways quantize the layout graph: its flatten reads (y, x, channel), a Transpose first."""
    model, _ = conv_and_images
    x = np.random.default_rng(0).random((16, *model.input_shape), dtype=np.float32)
    layout = lambda: encoder_graph(model, int8_layout=True)  # noqa: E731
    for way, make in quantize._ways(encoder_graph(model), "x", x, layout):
        transposes = [n for n in make().graph.node if n.op_type == "Transpose"]
        assert len(transposes) == (way in ("static", "mixed")), way


def test_a_64x64_rgb_conv_decoder_of_three_stages_gets_static_int8_within_the_bound(conv64_export):
    model, folder, info = conv64_export
    q = info["int8"]
    assert model.stages == 3 and q["method"]["decoder"] == "static"
    assert q["x_mean_abs"] <= q["bound"]["x_mean_abs"] and q["mu_mean_abs"] <= q["bound"]["mu_mean_abs"]
    z = np.random.default_rng().standard_normal((200, model.latent_dim)).astype(np.float32)
    with torch.no_grad():
        want = model.probs(torch.from_numpy(z)).numpy()
    assert np.abs(VAE.load(folder, precision="int8").decode(z) - want).mean() <= q["bound"]["x_mean_abs"]


def _static_decoder_before_and_after_the_last_conv_rewrite(model):
    z = np.random.default_rng(0).standard_normal((256, model.latent_dim)).astype(np.float32)
    q = quantize.static_decoder_qdq(decoder_graph(model, int8_layout=True), z)
    return q, int8_decoder.integer_last_conv(onnx.ModelProto.FromString(q.SerializeToString()))


def test_the_phase_mask_keeps_its_input_s_8_bit_grid_so_int8_masking_is_exact(conv_and_images):
    """The mask multiplies by 0 or 1: its output quantized on its input's scale and zero point is its input's
    integers, with no second rounding."""
    model, _ = conv_and_images
    z = np.random.default_rng(0).standard_normal((256, model.latent_dim)).astype(np.float32)
    q = quantize.static_decoder_qdq(decoder_graph(model, int8_layout=True), z)
    made = {o: n for n in q.graph.node for o in n.output}
    init = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    mask = next(n for n in q.graph.node if n.op_type == "Mul")
    out = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == mask.output[0])
    into = next(made[i] for i in mask.input if i in made and made[i].op_type == "DequantizeLinear")
    assert [init[i] for i in out.input[1:]] == [init[i] for i in into.input[1:]]


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
    before, after = (session(q.SerializeToString())
                     for q in _static_decoder_before_and_after_the_last_conv_rewrite(model))
    z = np.random.default_rng().standard_normal((200, model.latent_dim)).astype(np.float32)
    assert np.abs(after.run(None, {"z": z})[0] - before.run(None, {"z": z})[0]).mean() < 0.002


def test_fc4_as_one_uint8_product_keeps_8_bit_weights(conv_and_images):
    """integer_gemm rewrites onnxruntime's QDQ fc4 (7-bit weights) as one uint8 x uint8 MatMulInteger with 8-bit
    weights: no Gemm is left reading quantized weights, and the decoder is closer to the float decoder than
    before (a wrong weight layout would be far off)."""
    model, _ = conv_and_images
    layout = decoder_graph(model, int8_layout=True)
    z = np.random.default_rng(0).standard_normal((256, model.latent_dim)).astype(np.float32)
    q = quantize.static_decoder_qdq(layout, z)
    floats = {i.name: numpy_helper.to_array(i) for i in layout.graph.initializer}
    rewritten = int8_decoder.integer_gemm(onnx.ModelProto.FromString(q.SerializeToString()), floats)
    products = [n for n in rewritten.graph.node if n.op_type == "MatMulInteger"]
    assert len(products) == 1 and [n.op_type for n in rewritten.graph.node].count("Gemm") == 1  # fc3 stays float
    weights = _integer_weights(rewritten)
    assert weights[products[0].input[1]].dtype == np.uint8
    fresh = np.random.default_rng().standard_normal((200, model.latent_dim)).astype(np.float32)
    want = session(layout.SerializeToString()).run(None, {"z": fresh})[0]
    before, after = (np.abs(reference_run(g, "x", {"z": fresh}) - want).mean() for g in (q, rewritten))
    assert after < before


def test_the_bundled_files_are_the_first_way_within_the_bound_with_a_margin():
    """The chooser tried the fastest way first (static, for both graphs) and kept the first within the bound; the
    kept files' own errors leave a tenth of each bound, so that fresh images and noise stay within it."""
    q = json.loads((BUNDLED / "vae.json").read_text())["int8"]
    for role, bound in (("encoder", q["bound"]["mu_mean_abs"]), ("decoder", q["bound"]["x_mean_abs"])):
        tried = list(q["tried"][role].items())
        assert tried[0][0] == "static" and tried[-1][0] == q["method"][role]
        assert all(err["mean_abs"] > bound for _, err in tried[:-1]) and tried[-1][1]["mean_abs"] <= 0.9 * bound


def _test_images(n=2000):
    from conftest import FASHION_MNIST
    with gzip.open(FASHION_MNIST / "t10k-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]


def test_the_bundled_int8_files_stay_within_the_bound_on_the_pixels_the_model_is_defined_on(fashion_mnist):
    """A model that has really learned, on Fashion-MNIST test images as it sees them (binarized: fresh 0/1 bits,
    P(1) = the grey level): mean abs error <= 0.02 on mu, <= 0.002 on pixels (reconstructions and samples), the
    bounds of the issue, independent of what the export measured."""
    grey = _test_images() / np.float32(255)
    x = (np.random.default_rng().random(grey.shape, dtype=np.float32) < grey).astype(np.float32)
    fp32, int8 = VAE.load(BUNDLED), VAE.load(BUNDLED, precision="int8")
    mu, mu8 = fp32.encode(x)[0], int8.encode(x)[0]
    assert np.abs(mu8 - mu).mean() <= 0.02
    z = np.concatenate([mu, np.random.default_rng().standard_normal(mu.shape).astype(np.float32)])
    assert np.abs(int8.decode(z) - fp32.decode(z)).mean() <= 0.002
    # and not trivially: a constant encoder or decoder would be far off
    assert mu.std() > 0.3 and fp32.decode(z).std() > 0.1


def test_the_bundled_vae_json_records_the_way_each_int8_file_was_made():
    q = json.loads((BUNDLED / "vae.json").read_text())["int8"]
    assert set(q["method"]) == {"encoder", "decoder"} and q["calibration"].endswith("of fashion-mnist, binarized")
    assert q["x_mean_abs"] <= q["bound"]["x_mean_abs"] and q["mu_mean_abs"] <= q["bound"]["mu_mean_abs"]


# -----------------------------------------------------------------------------
# the same int8 on every CPU: weights no kernel saturates, checked against the exact reference

def _integer_weights(proto: onnx.ModelProto) -> dict:
    """name -> array of each quantized weight an integer product reads: MatMulInteger's second input, and the
    weights that the QDQ parts dequantize into a Conv's or Gemm's weight input."""
    init = {i.name: i for i in proto.graph.initializer}
    weight_inputs = {n.input[1] for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    names = [n.input[1] for n in proto.graph.node if n.op_type == "MatMulInteger"]
    names += [n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.output[0] in weight_inputs]
    return {name: numpy_helper.to_array(init[name]) for name in names if name in init}


@pytest.fixture(scope="module")
def int8_exports(conv_and_images, conv64_export, tmp_path_factory):
    """The small conv model calibrated on images (static decoder, its encoder's first way that passes) and an
    mlp measured on random inputs (dynamic), both forced to keep int8 whatever its error; conv64_export (three
    stages, calibrated, kept within the bound)."""
    model, images = conv_and_images
    d = tmp_path_factory.mktemp("int8-cpus")
    torch.manual_seed(1)
    mlp = trained(TorchVAE("mlp", hidden_dim=64, latent_dim=8))
    return {"conv": (model, d / "conv", export_model(model, d / "conv", quantize="int8", calibration=str(images),
                                                     force_int8=True)),
            "mlp": (mlp, d / "mlp", export_model(mlp, d / "mlp", quantize="int8", force_int8=True)),
            "conv64": conv64_export}


def _int8_files(int8_exports, name):
    if name == "bundled":
        return BUNDLED, json.loads((BUNDLED / "vae.json").read_text())
    return int8_exports[name][1:]


@pytest.mark.parametrize("name", ["conv", "mlp", "bundled", "conv64"])
def test_no_int8_weight_can_saturate_a_16_bit_sum_of_two_products(int8_exports, name):
    """onnxruntime on x86 without VNNI adds two uint8 x int8 products in a saturating 16-bit sum: an int8 weight
    must stay within [-64, 64] (255 * 64 * 2 = 32,640 <= 32,767). uint8 weights go through uint8 x uint8
    kernels, which widen to 16 bits and sum in 32, on every CPU."""
    folder, info = _int8_files(int8_exports, name)
    for key in ("encoder_int8", "decoder_int8"):
        weights = _integer_weights(onnx.load(str(folder / info["files"][key]["path"])))
        assert weights, f"{key} has no integer weights"
        for w in weights.values():
            assert w.dtype in (np.int8, np.uint8)
            if w.dtype == np.int8:
                assert 255 * int(np.abs(w.astype(np.int32)).max()) * 2 <= 32767


def _fresh_inputs(info: dict, n: int = 200) -> dict:
    rng = np.random.default_rng()
    shape, latent = info["model"]["input_shape"], info["model"]["latent_dim"]
    return {"x": rng.random((n, *shape), dtype=np.float32), "z": rng.standard_normal((n, latent), dtype=np.float32)}




@pytest.mark.parametrize("name", ["conv", "mlp", "bundled", "conv64"])
def test_onnxruntime_here_computes_what_the_exact_reference_computes(int8_exports, name):
    folder, info = _int8_files(int8_exports, name)
    feed = _fresh_inputs(info)
    for key, inp, out in (("encoder_int8", "x", "mu"), ("decoder_int8", "z", "x")):
        path = folder / info["files"][key]["path"]
        got = session(path.read_bytes()).run([out], {inp: feed[inp]})[0]
        assert off_reference(got, reference_run(onnx.load(str(path)), out, {inp: feed[inp]}), out) is None, key


def test_the_recorded_int8_error_is_the_files_own_against_pytorch(int8_exports):
    """vae.json's int8 figures are the exact reference's error against PyTorch on the export's seeded check
    inputs, so anyone can recompute them, on any CPU; the exporting CPU's own figure sits beside them."""
    model, folder, info = int8_exports["conv"]
    q = info["int8"]
    data = calibration(model, q["calibration"].split(" from ")[1], None)
    expected = torch_outputs(model, data.x_check, data.z_check)
    mu8 = reference_run(onnx.load(str(folder / "encoder.int8.onnx")), "mu", {"x": data.x_check})
    px8 = reference_run(onnx.load(str(folder / "decoder.int8.onnx")), "x", {"z": data.z_check})
    assert q["mu_mean_abs"] == pytest.approx(np.abs(mu8 - expected["mu"]).mean(), rel=1e-6)
    assert q["x_mean_abs"] == pytest.approx(np.abs(px8 - expected["x"]).mean(), rel=1e-6)
    assert q["x_max_abs"] == pytest.approx(np.abs(px8 - expected["x"]).max(), rel=1e-6)
    assert set(q["this_cpu"]) == {"cpu", "onnxruntime", "mu_mean_abs", "mu_max_abs", "x_mean_abs", "x_max_abs"}
    assert q["this_cpu"]["x_mean_abs"] == pytest.approx(q["x_mean_abs"], abs=REFERENCE_MEAN["x"])


@pytest.mark.fresh_graphs
def test_an_export_without_images_makes_the_same_choice_and_graphs_every_time(tmp_path):
    """No dataset: the error is measured on random inputs drawn with a fixed seed, so whether int8 is kept, and
    how, does not change from one run to the next."""
    torch.manual_seed(2)
    model = trained(TorchVAE("mlp", hidden_dim=32, latent_dim=4))
    a, b = (export_model(model, tmp_path / d, quantize="int8", force_int8=True) for d in ("a", "b"))
    assert a["int8"]["tried"] == b["int8"]["tried"] and a["int8"]["calibration"].startswith("random inputs")
    for key in ("encoder_int8", "decoder_int8"):
        graphs = [onnx.load(str(tmp_path / d / a["files"][key]["path"])).graph.SerializeToString() for d in "ab"]
        assert graphs[0] == graphs[1]


def _need_qemu() -> str:
    """qemu-x86_64-static (Debian's qemu-user-static): make test installs it where apt is usable (CI), so it fails
    there if missing."""
    path = shutil.which("qemu-x86_64-static")
    if path is None:
        msg = "qemu-x86_64-static is not installed (apt-get install qemu-user-static)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _saturating_control(path) -> None:
    """The control for the saturating kernel: x [n, 1, 28, 28] -> mu = flatten(x) @ W [784, 16] with every weight 1,
    so that full 8-bit int8 weights sit at 127 and two products of bright pixels (255 * 127 * 2) pass 16 bits.
    (A real encoder's weights saturate now and then, depending on its training.)"""
    from onnx import TensorProto, helper, numpy_helper

    consts = [numpy_helper.from_array(np.ones((784, 16), np.float32), "w"),
              numpy_helper.from_array(np.array([-1, 784], np.int64), "shape")]
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["flat"]),
                               helper.make_node("MatMul", ["flat", "w"], ["mu"])], "control",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 28, 28])],
                              [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["n", 16])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.slow
@pytest.mark.emulated
def test_an_avx2_cpu_without_vnni_computes_what_the_exact_reference_computes(int8_exports, tmp_path):
    """Under qemu's Haswell (AVX2, no VNNI, no AVX-512) onnxruntime runs its saturating uint8 x int8 kernels: the
    int8 files give there what the exact reference gives. A file quantized the way vae-export did before (full
    8-bit weights) does not: the check can fail, and the emulated CPU really runs the saturating kernels."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    qemu = _need_qemu()
    feed = _fresh_inputs({"model": {"input_shape": [1, 28, 28], "latent_dim": 32}}, n=100)
    np.savez(tmp_path / "in.npz", **feed)
    files = {f"{name}.{key}": folder / info["files"][key]["path"]
             for name in ("conv", "mlp", "bundled") for folder, info in [_int8_files(int8_exports, name)]
             for key in ("encoder_int8", "decoder_int8")}
    for name in ("conv", "mlp"):  # these take other shapes: their own inputs, in their own file
        np.savez(tmp_path / f"{name}.npz", **_fresh_inputs(int8_exports[name][2]))
    _saturating_control(tmp_path / "control.onnx")
    quantize_dynamic(str(tmp_path / "control.onnx"), str(tmp_path / "full8.onnx"), weight_type=QuantType.QInt8,
                     per_channel=True, reduce_range=False)
    files["full8"] = tmp_path / "full8.onnx"
    runs = {"bundled": [k for k in files if k.startswith("bundled.")] + ["full8"],
            "conv": [k for k in files if k.startswith("conv.")], "mlp": [k for k in files if k.startswith("mlp.")]}
    for group, names in runs.items():
        inputs = tmp_path / ("in.npz" if group == "bundled" else f"{group}.npz")
        r = subprocess.run([qemu, "-cpu", "Haswell", sys.executable, str(REPO / "tests" / "int8_run.py"),
                            str(inputs), str(tmp_path / f"{group}.out.npz"), *(f"{n}={files[n]}" for n in names)],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        got, feed = np.load(tmp_path / f"{group}.out.npz"), np.load(inputs)
        for name in names:
            proto = onnx.load(str(files[name]))
            inp, out = proto.graph.input[0].name, proto.graph.output[0].name
            off = off_reference(got[name], reference_run(proto, out, {inp: feed[inp]}), out)
            if name == "full8":
                assert off is not None, "no saturation: is the emulated CPU AVX2-only?"
            else:
                assert off is None, f"{name}: {off}"

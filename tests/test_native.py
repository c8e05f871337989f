"""native/: the C library and its vae-sample against the Python runtime: the browser's z for a seed, parity on the
same z (fp32, and int8 against the Python runtime's int8), in format 1 and in format 2 (a learned prior's
prior.onnx), the Python runtime's bad folders refused in one line by both, a run under AddressSanitizer, and the
same program cross-compiled for ARM64 and run by qemu on two CPUs.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import external_data_helper, helper, numpy_helper

import arm64
from conftest import REPO, copy_export, rehash
from test_conformance import SETUP_TIMEOUT_S, apply_setup
from vae_edge.export import export_model
from vae_edge.runtime import VAE, ModelFolderError, verify_files
from vae_edge.runtime.images import make_grid
from vae_edge.train.model import VAE as TorchVAE

TOL = 1e-5
BUNDLED = REPO / "runtime" / "models" / "fashion-mnist"
ORT_LIBRARY = next((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so.*"))
WEB = REPO / "web"
X86_ONNXRUNTIME = ["manylinux_2_27_x86_64", "manylinux_2_28_x86_64"]


def make(*args: str) -> None:
    for tool, why in (("make", "make"), ("cc", "a C compiler (cc)")):
        if shutil.which(tool) is None:
            arm64.missing(f"{why} is not installed: the C tests build native/")
    if not Path("/usr/include/cjson/cJSON.h").is_file():
        arm64.missing("cJSON is not installed: apt-get install libcjson-dev")
    fetched = REPO / ".cache" / "native" / "onnxruntime-header"
    if not (Path("/usr/include/onnxruntime").is_dir() or fetched.is_dir() or shutil.which("apt-get")):
        arm64.missing("onnxruntime's C API header: install libonnxruntime-dev, or use Debian (make native fetches it)")
    r = subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.fixture(scope="module")
def native() -> Path:
    make("native")
    return REPO / "build" / "native" / "vae-sample"


def vae_sample(exe: Path, *args, library: Path = ORT_LIBRARY, runner=subprocess.run, timeout=600, **kw):
    return runner([str(exe), "--onnxruntime", str(library), *map(str, args)], capture_output=True, text=True,
                  timeout=timeout, **kw)


# onnxruntime's own line on qemu's "max" CPU, whose ID names no vendor: printed before any of our code speaks
QEMU_MAX_NOISE = "onnxruntime cpuid_info warning: Unknown CPU vendor"


def refused(r: subprocess.CompletedProcess) -> str:
    """The one line a refused run prints; no traceback, exit status 2."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.strip().splitlines() if not line.startswith(QEMU_MAX_NOISE)]
    assert len(lines) == 1 and lines[0].startswith("vae-sample: "), r.stderr
    return lines[0]


def _export(tmp_path_factory, name, quantize=None, **kw) -> Path:
    torch.manual_seed(sum(map(ord, name)))
    folder = tmp_path_factory.mktemp(name) / "vae-onnx"
    export_model(TorchVAE(**kw).eval(), folder, quantize=quantize)
    return folder


@pytest.fixture(scope="module")
def mlp(mlp_int8) -> Path:
    return mlp_int8[1]


@pytest.fixture(scope="module")
def mlp_latent8(tmp_path_factory) -> Path:
    return _export(tmp_path_factory, "mlp8", arch="mlp", hidden_dim=32, latent_dim=8)


def fresh_seed() -> int:
    return int(np.random.default_rng().integers(0, 2**53))


# -- the browser's z, parity with the Python runtime ------------------------------------------------------

def node_onnxruntime() -> Path:
    """The libonnxruntime that the JavaScript library's onnxruntime-node loads (skips where Node or it is missing)."""
    if shutil.which("node") is None:
        arm64.missing("Node.js is not installed: it prints the browser's latents")
    found = sorted((WEB / "node_modules" / "onnxruntime-node" / "bin").glob("napi-v*/linux/x64/libonnxruntime.so*"))
    if not found:
        arm64.missing("web/node_modules has no onnxruntime-node for linux x64: run `make web-deps`")
    return found[-1]


@pytest.mark.parametrize("model", ["bundled", "vamp"])
def test_c_draws_the_browsers_latents_for_a_seed(native, vamp_export, tmp_path, model):
    """The browser's vae.latents: z = temperature * eps in format 1; in format 2 (vamp: a VampPrior's folder)
    prior.onnx of that and of u, run here by the onnxruntime Node runs, so that the two agree bit for bit."""
    folder, library = BUNDLED if model == "bundled" else vamp_export, node_onnxruntime()
    seed, n, t = fresh_seed(), 37, float(np.random.default_rng().uniform(0.5, 1.5))
    r = vae_sample(native, "--model", folder, "--n", n, "--seed", seed, "--temperature", repr(t), "--save-z",
                   tmp_path / "z.npy", "--no-image", library=library)
    assert r.returncode == 0, r.stderr
    js = subprocess.run(["node", "--input-type=module", "-e",
                         "import {VAE} from './src/node.js'; const [folder, n, seed, t] = process.argv.slice(1);"
                         "const vae = await VAE.load(folder, {decoderOnly: true});"
                         "const z = await vae.latents(Number(n), {seed: Number(seed), temperature: Number(t)});"
                         "process.stdout.write(Buffer.from(z.buffer, z.byteOffset, z.byteLength));",
                         str(folder), str(n), str(seed), repr(t)], cwd=WEB, capture_output=True, timeout=60)
    assert js.returncode == 0, js.stderr.decode()
    z = np.load(tmp_path / "z.npy")
    np.testing.assert_array_equal(z, np.frombuffer(js.stdout, np.float32).reshape(z.shape))


@pytest.mark.parametrize("model,precision", [("bundled", "fp32"), ("bundled", "int8"), ("mlp", "fp32"),
                                             ("mlp", "int8"), ("vamp", "fp32"), ("vamp", "int8"),
                                             ("conv64", "fp32"), ("conv64", "int8")])
def test_c_samples_equal_the_python_runtime_decoding_the_same_z(native, mlp, vamp_export, conv64_export, tmp_path,
                                                                model, precision):
    """--save-z saves the z that was decoded: in a format-2 folder (vamp), prior.onnx's z, not the noise; conv64:
    a 64x64 RGB conv of three stages."""
    folder = {"bundled": BUNDLED, "mlp": mlp, "vamp": vamp_export, "conv64": conv64_export[1]}[model]
    r = vae_sample(native, "--model", folder, "--n", 70, "--seed", fresh_seed(), "--precision", precision,
                   "--save-z", tmp_path / "z.npy", "--npy", tmp_path / "x.npy", "--no-image")
    assert r.returncode == 0, r.stderr
    z, x = np.load(tmp_path / "z.npy"), np.load(tmp_path / "x.npy")
    python = VAE.load(folder, precision=precision)
    assert z.shape == (70, python.latent_dim) and x.shape == (70, *python.input_shape)
    np.testing.assert_allclose(x, python.decode(z), rtol=0, atol=TOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_decodes_given_latents_like_the_python_runtime(native, mlp, tmp_path, dtype):
    z = np.random.default_rng().standard_normal((9, 20)).astype(dtype)
    np.save(tmp_path / "z.npy", z)
    r = vae_sample(native, "--model", mlp, "--z", tmp_path / "z.npy", "--npy", tmp_path / "x.npy", "--no-image")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), VAE.load(mlp).decode(z), rtol=0, atol=TOL)


def test_the_grid_is_the_python_runtimes_grid_of_the_same_images(native, tmp_path):
    r = vae_sample(native, "--model", BUNDLED, "--n", 11, "--nrow", 4, "--npy", tmp_path / "x.npy", "--out",
                   tmp_path / "grid.pgm")
    assert r.returncode == 0, r.stderr
    want = make_grid(np.load(tmp_path / "x.npy"), nrow=4)
    header = f"P5\n{want.shape[1]} {want.shape[0]}\n255\n".encode()
    data = (tmp_path / "grid.pgm").read_bytes()
    assert data[:len(header)] == header
    np.testing.assert_array_equal(np.frombuffer(data[len(header):], np.uint8).reshape(want.shape[:2]), want[..., 0])


# -- bad folders: each case is refused by the Python runtime and by the C program with the same words --------

def _flip_byte(name):
    def tamper(folder, _):
        data = bytearray((folder / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (folder / name).write_bytes(bytes(data))
    return tamper


def _edit_meta(edit):
    def change(folder, _):
        meta = json.loads((folder / "vae.json").read_text())
        edit(meta)
        (folder / "vae.json").write_text(json.dumps(meta))
    return change


def _replace_decoder(source: str, from_other: bool):
    """decoder.onnx replaced by `source` of this folder or of the other export (latent_dim 8), rehashed."""
    def swap(folder, other):
        shutil.copyfile((other if from_other else folder) / source, folder / "decoder.onnx")
        rehash(folder, "decoder")
    return swap


def _decoder_of_ir_version_99(folder, _):
    """decoder.onnx as it is but stamped ONNX IR version 99, newer than any onnxruntime reads, rehashed."""
    data = (folder / "decoder.onnx").read_bytes()
    assert data[0] == 0x08  # field 1 (ir_version) first, as onnx writes it, its value one byte
    (folder / "decoder.onnx").write_bytes(b"\x08\x63" + data[2:])
    rehash(folder, "decoder")


def _corrupt_decoder(folder, _):
    (folder / "decoder.onnx").write_bytes(b"not an onnx model")
    rehash(folder, "decoder")


# (name, how the mlp folder is damaged, precision, --check?, the message, whether the Python runtime checks it)
BAD_FOLDERS = [
    ("missing folder", lambda f, _: shutil.rmtree(f), "fp32", False, r"run `vae-export model.pt --out .*` first", True),
    ("tampered decoder", _flip_byte("decoder.onnx"), "fp32", False,
     r"decoder.onnx does not match the sha256 in vae.json", True),
    ("tampered int8 decoder", _flip_byte("decoder.int8.onnx"), "int8", False,
     r"decoder.int8.onnx does not match the sha256 in vae.json", True),
    ("tampered encoder, checked", _flip_byte("encoder.onnx"), "fp32", True,
     r"encoder.onnx does not match the sha256 in vae.json", True),
    ("missing decoder", lambda f, _: (f / "decoder.onnx").unlink(), "fp32", False, r"cannot read .*decoder.onnx", True),
    ("corrupt decoder, matching hash", _corrupt_decoder, "fp32", False,
     r"decoder.onnx is not a loadable ONNX model", True),
    ("corrupt vae.json", lambda f, _: (f / "vae.json").write_text('{"format": "vae-edge-onnx", '), "fp32", False,
     r"vae.json is not readable JSON", True),
    ("other format", _edit_meta(lambda m: m.update(format="something-else")), "fp32", False,
     r"vae.json is not a vae-edge ONNX export \(format should be 'vae-edge-onnx'\)", True),
    ("newer format_version", _edit_meta(lambda m: m.update(format_version=3)), "fp32", False,
     r"vae.json has format_version 3", True),
    ("format 2 without its prior", _edit_meta(lambda m: m.update(format_version=2)), "fp32", False,
     r"vae.json has format_version 2 but no valid prior \(name, and sample.inputs naming eps\)", True),
    ("no latent_dim", _edit_meta(lambda m: m["model"].pop("latent_dim")), "fp32", False,
     r"vae.json lacks valid model.input_shape, model.latent_dim or files", True),
    ("decoder of another latent size", _replace_decoder("decoder.onnx", from_other=True), "fp32", False,
     r"the decoder and vae.json disagree on latent_dim: vae.json says 20, the decoder takes 8$", True),
    ("encoder in the decoder's place", _replace_decoder("encoder.onnx", from_other=False), "fp32", False,
     r"the decoder file is not a decoder \(z -> x\): it has 1 inputs and 2 outputs; encoder and decoder swapped\?",
     True),
    ("path outside the folder", _edit_meta(lambda m: m["files"]["decoder"].update(path="../elsewhere.onnx")), "fp32",
     False, r"decoder path '../elsewhere.onnx' is not a plain path inside the model folder", True),
    ("no int8 files", _edit_meta(lambda m: [m["files"].pop(k) for k in ("encoder_int8", "decoder_int8")]), "int8",
     False, r"has no int8 files; re-export with `vae-export ... --quantize int8`", True),
    ("decoder newer than any onnxruntime reads", _decoder_of_ir_version_99, "fp32", False,
     r"decoder.onnx needs an onnxruntime newer than .*: it is ONNX IR version 99, opset", True),
]


@pytest.mark.parametrize("case", BAD_FOLDERS, ids=[c[0] for c in BAD_FOLDERS])
def test_a_bad_folder_is_refused_in_one_line_as_the_python_runtime_refuses_it(native, mlp, mlp_latent8, tmp_path,
                                                                              case):
    _, damage, precision, check, message, python_checks = case
    folder = copy_export(mlp, tmp_path)
    damage(folder, mlp_latent8)
    args = ["--check"] if check else ["--precision", precision, "--n", 2, "--npy", tmp_path / "x.npy"]
    r = vae_sample(native, "--model", folder, *args, cwd=tmp_path)
    assert re.search(message, refused(r)), r.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name != "model-copy"] == []  # nothing written
    if python_checks:
        if check:
            assert any(why and re.search(message, why) for _, _, why in verify_files(folder))
        else:
            with pytest.raises(ModelFolderError, match=message):
                VAE.load(folder, precision=precision, decoder_only=True)


def test_vae_jsons_min_onnxruntime_is_informative_the_files_own_versions_decide(native, mlp, tmp_path):
    folder = copy_export(mlp, tmp_path)
    _edit_meta(lambda m: m["onnx"].update(min_onnxruntime="99.0"))(folder, None)
    r = vae_sample(native, "--model", folder, "--n", 2, "--npy", tmp_path / "x.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_without_model_vae_onnx_is_read_and_a_missing_one_is_refused_with_no_fallback(native, tmp_path):
    """The default-model rule of docs/format.md: the C program bundles no model, so it ends at vae-onnx."""
    shutil.copytree(REPO / "tests" / "conformance" / "folders" / "valid", tmp_path / "vae-onnx")
    assert vae_sample(native, "--n", 2, "--npy", tmp_path / "x.npy", cwd=tmp_path).returncode == 0
    shutil.rmtree(tmp_path / "vae-onnx")
    assert refused(vae_sample(native, "--n", 2, "--npy", tmp_path / "y.npy", cwd=tmp_path)) == (
        "vae-sample: no exported model at vae-onnx; run `vae-export model.pt --out vae-onnx` first")


@pytest.mark.parametrize("damage,message", [
    (lambda folder: (folder / "prior.onnx").unlink(), r"cannot read .*prior.onnx"),
    (lambda folder: _flip_byte("prior.onnx")(folder, None), r"prior.onnx does not match the sha256 in vae.json"),
], ids=["missing", "altered"])
def test_a_format_2_folder_without_its_own_prior_graph_is_refused_in_one_line_as_the_python_runtime_refuses_it(
        native, vamp_export, tmp_path, damage, message):
    folder = copy_export(vamp_export, tmp_path)
    damage(folder)
    r = vae_sample(native, "--model", folder, "--n", 2, "--npy", tmp_path / "x.npy", cwd=tmp_path)
    assert re.search(message, refused(r)), r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["model-copy"]  # nothing written
    with pytest.raises(ModelFolderError, match=message):
        VAE.load(folder, decoder_only=True)


# -- a folder from a stranger (docs/security.md): nothing outside it read, nothing hangs, no output trusted -----

def _stranger(tiny_export, tmp_path, change=None) -> Path:
    """A copy of the tiny export whose decoder.onnx is changed by change(onnx model) and rehashed."""
    folder = copy_export(tiny_export, tmp_path)
    if change is not None:
        model = onnx.load(folder / "decoder.onnx")
        change(model)
        onnx.save(model, folder / "decoder.onnx")
        rehash(folder, "decoder")
    return folder


def _sample(native, folder, tmp_path, *args):
    return vae_sample(native, "--model", folder, "--n", 2, "--no-image", "--npy", tmp_path / "x.npy", *args,
                      cwd=tmp_path, timeout=60)


def test_a_fifo_in_the_decoders_place_is_refused_without_hanging(native, tiny_export, tmp_path):
    folder = _stranger(tiny_export, tmp_path)
    (folder / "decoder.onnx").unlink()
    os.mkfifo(folder / "decoder.onnx")
    assert refused(_sample(native, folder, tmp_path)).endswith("decoder.onnx is not a regular file")


def test_a_decoder_that_is_a_symlink_to_dev_zero_is_refused(native, tiny_export, tmp_path):
    folder = _stranger(tiny_export, tmp_path)
    (folder / "decoder.onnx").unlink()
    (folder / "decoder.onnx").symlink_to("/dev/zero")
    assert refused(_sample(native, folder, tmp_path)).endswith("decoder.onnx resolves outside the model folder")


def test_a_decoder_symlinked_inside_the_folder_loads(native, tiny_export, tmp_path):
    folder = _stranger(tiny_export, tmp_path)
    (folder / "real").mkdir()
    (folder / "decoder.onnx").rename(folder / "real" / "decoder.onnx")
    (folder / "decoder.onnx").symlink_to(Path("real") / "decoder.onnx")
    assert _sample(native, folder, tmp_path).returncode == 0


def test_a_file_of_another_size_than_vae_json_says_is_refused(native, tiny_export, tmp_path):
    folder = _stranger(tiny_export, tmp_path)
    size = (folder / "decoder.onnx").stat().st_size
    with open(folder / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    assert refused(_sample(native, folder, tmp_path)).endswith(
        f"decoder.onnx has {size + 1} bytes; vae.json says {size}")


def test_a_file_entry_without_bytes_is_refused(native, tiny_export, tmp_path):
    folder = _stranger(tiny_export, tmp_path)
    _edit_meta(lambda m: m["files"]["decoder"].pop("bytes"))(folder, None)
    assert refused(_sample(native, folder, tmp_path)).endswith(
        "vae.json lists no decoder file (path, sha256 and bytes)")


@pytest.mark.parametrize("text,message", [
    ("[" * 33 + "]" * 33, "vae.json is nested deeper than 32 levels"),
    ('{"a": "' + "[" * 40 + '", "format": []}', "is not a vae-edge ONNX export"),  # brackets in a string: not nesting
    (" " * (1 << 20) + "{}", "vae.json is larger than 1 MiB, the limit for vae.json"),
], ids=["nested", "brackets-in-a-string", "large"])
def test_vae_json_is_held_to_its_nesting_and_size_limits(native, tiny_export, tmp_path, text, message):
    folder = _stranger(tiny_export, tmp_path)
    (folder / "vae.json").write_text(text)
    assert message in refused(_sample(native, folder, tmp_path))


def _external(model):
    """The biggest initializer stored in secret.bin beside the working directory, as onnx writes external data."""
    biggest = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    external_data_helper.set_external_data(biggest, location="secret.bin")
    biggest.data_location = onnx.TensorProto.EXTERNAL
    _external.secret = biggest.raw_data
    biggest.ClearField("raw_data")


def test_external_data_in_the_working_directory_is_never_read(native, tiny_export, tmp_path):
    """The secret holds exactly the tensor's bytes: onnxruntime, given the graph's bytes, would load it from the
    working directory and run; the closed list refuses the graph before onnxruntime sees it."""
    folder = _stranger(tiny_export, tmp_path, _external)
    (tmp_path / "secret.bin").write_bytes(_external.secret)
    line = refused(_sample(native, folder, tmp_path))
    assert line.endswith("decoder.onnx stores a tensor outside the file (external data), which a model folder may not")


def test_onnxruntimes_message_quoting_a_name_that_is_not_utf8_is_one_line_of_utf8(native, tiny_export, tmp_path):
    """Found by make fuzz: a flipped bit in a tensor's name, which onnxruntime's refusal quotes."""
    def rename(model):
        model.graph.node[1].input[0] = "made_by_no_node_\u00e1"
    folder = _stranger(tiny_export, tmp_path, rename)
    data = (folder / "decoder.onnx").read_bytes().replace("\u00e1".encode(), b"\xe1A")  # not UTF-8
    (folder / "decoder.onnx").write_bytes(data)
    rehash(folder, "decoder")
    line = refused(_sample(native, folder, tmp_path))  # text=True: strict UTF-8
    assert "decoder.onnx is not a loadable ONNX model (corrupt?)" in line and "made_by_no_node_?A" in line, line


def _node_attribute(model, attribute):
    model.graph.node[0].attribute.append(attribute)


def _sparse(model):
    values = numpy_helper.from_array(np.ones(1, np.float32), "values")
    indices = numpy_helper.from_array(np.zeros(1, np.int64), "indices")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))


def _subgraph(model):
    inner = helper.make_graph([], "inner", [], [])
    _node_attribute(model, helper.make_attribute("body", inner))


def _domain(model):
    model.graph.node[0].domain = "com.example"


def _function(model):
    model.functions.append(helper.make_function("local", "f", [], [], [], [helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("change,message", [
    (_sparse, "holds a sparse tensor, which a model folder may not"),
    (_subgraph, "holds a subgraph, which a model folder may not"),
    (_domain, "uses operator domain 'com.example', which a model folder may not"),
    (_function, "defines local functions, which a model folder may not"),
], ids=["sparse", "subgraph", "domain", "function"])
def test_a_graph_holding_what_a_model_folder_may_not_is_refused(native, tiny_export, tmp_path, change, message):
    folder = _stranger(tiny_export, tmp_path, change)
    assert refused(_sample(native, folder, tmp_path)).endswith(f"decoder.onnx {message}")


def _after_x(op, *inputs, **attributes):
    """The decoder's x passed through one more node, its declared output left as it was."""
    def change(model):
        for node in model.graph.node:
            node.output[:] = ["x_full" if o == "x" else o for o in node.output]
        names = []
        for i, value in enumerate(inputs):
            names.append(f"extra{i}")
            model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), names[-1]))
        model.graph.node.append(helper.make_node(op, ["x_full", *names], ["x"], **attributes))
        if op == "Cast":
            model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    return change


@pytest.mark.parametrize("change,returned", [
    (_after_x("Slice", [0], [1], [0]), "float32 [1, 1, 8, 8]"),  # one image, whatever the batch
    (_after_x("Cast", to=onnx.TensorProto.INT64), "int64 [2, 1, 8, 8]"),
], ids=["batch", "int64"])
def test_a_decoder_lying_about_its_output_is_refused_after_its_run(native, tiny_export, tmp_path, change, returned):
    folder = _stranger(tiny_export, tmp_path, change)
    line = refused(_sample(native, folder, tmp_path))
    assert line.endswith(f"decoder.onnx returned {returned}; expected float32 [2, 1, 8, 8]"), line
    assert not (tmp_path / "x.npy").exists()


def test_a_prior_graph_that_is_another_network_is_refused_at_load(native, vamp_export, tmp_path):
    """prior.onnx replaced, byte for byte, by the encoder (as the fuzz found in Python): refused at load."""
    folder = copy_export(vamp_export, tmp_path)
    shutil.copyfile(folder / "encoder.int8.onnx", folder / "prior.onnx")
    rehash(folder, "prior")
    line = refused(_sample(native, folder, tmp_path))
    assert line.endswith("prior.onnx is not the prior vae.json describes: it maps x float32 [batch, 1, 8, 8] -> "
                         "mu float32 [batch, 4], logvar float32 [batch, 4]; expected eps float32 [batch, 4], "
                         "u float32 [batch] -> z float32 [batch, 4]"), line


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device", "folder"])
def test_an_output_that_exists_as_anything_but_a_regular_file_is_never_replaced(native, tmp_path, kind):
    out = tmp_path / "x.npy"
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "symlink":
        (tmp_path / "kept.npy").write_bytes(b"kept")
        out.symlink_to("kept.npy")
    elif kind == "folder":
        out.mkdir()
    else:
        out = Path("/dev/null")
    r = vae_sample(native, "--model", BUNDLED, "--n", 2, "--no-image", "--npy", out, cwd=tmp_path, timeout=60)
    assert refused(r) == f"vae-sample: cannot write {out}: it exists and is not a regular file (a folder, device, " \
                         "FIFO or symlink); refusing to replace it"
    assert out.is_symlink() or not out.is_file()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_an_output_in_a_missing_folder_is_refused(native, tmp_path):
    r = vae_sample(native, "--model", BUNDLED, "--n", 2, "--out", tmp_path / "missing" / "grid.pgm", cwd=tmp_path)
    assert refused(r).endswith(f"cannot write {tmp_path}/missing/grid.pgm: its folder {tmp_path}/missing does not "
                               "exist")
    assert list(tmp_path.iterdir()) == []


def test_dash_writes_the_npy_to_standard_output(native, tmp_path):
    args = [native, "--onnxruntime", ORT_LIBRARY, "--model", BUNDLED, "--n", 3, "--seed", 4, "--no-image", "--npy",
            "-", "--save-z", tmp_path / "z.npy"]
    r = subprocess.run(list(map(str, args)), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    x = np.load(io.BytesIO(r.stdout))
    np.testing.assert_allclose(x, VAE.load(BUNDLED).decode(np.load(tmp_path / "z.npy")), rtol=0, atol=TOL)


CONFORMANCE = REPO / "tests" / "conformance"
CASES = json.loads((CONFORMANCE / "cases.json").read_text())["cases"]


def _command_line(sample: dict) -> list | None:
    """The case's sampling arguments as vae-sample options; None where a command line cannot say them (a string
    seed is text on any command line: the API cases of that kind are the Python and JavaScript readers')."""
    args = ["--n", sample.get("n", 1)]
    for key in ("seed", "temperature"):
        value = sample.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        args += [f"--{key}", repr(value) if isinstance(value, float) else value]
    return args if isinstance(args[1], int) and not isinstance(args[1], bool) else None


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_c_program_gives_each_conformance_case_its_outcome(native, tmp_path, case):
    """tests/conformance/: the C program loads the folder as the case says (--encoder, the encoder too, unless the
    case is decoder_only) and gives each case its outcome: load and sample, or a refusal in one line, with the
    case's message where the folder is at fault (a bad option is refused in the command line's own words: --seed
    ...). A case's setup (a FIFO, a symlink) is applied to a copy, and the program is given a time limit: a hang
    fails the test."""
    precision, sample = case.get("precision", "fp32"), case.get("sample") or {"n": 1}
    args = _command_line(sample)
    if args is None or not isinstance(precision, str):
        pytest.skip("not expressible on a command line")
    folder = CONFORMANCE / case["folder"]
    if "setup" in case:
        folder = tmp_path / "case" / folder.name
        shutil.copytree(CONFORMANCE / case["folder"], folder, symlinks=True)
        apply_setup(folder, case["setup"])
    out = tmp_path / "out"
    out.mkdir()
    whole = [] if case.get("decoder_only") else ["--encoder"]
    r = vae_sample(native, "--model", folder, "--precision", precision, *whole, *args, "--npy", out / "x.npy",
                   "--no-image", cwd=out, timeout=SETUP_TIMEOUT_S)
    if case["outcome"] == "accepted":
        assert r.returncode == 0, r.stderr
    else:
        line = refused(r)
        if case["error"] == "ModelFolderError":
            assert case["message"] in line, line
        assert list(out.iterdir()) == []


def test_check_passes_an_intact_folder(native):
    r = vae_sample(native, "--model", BUNDLED, "--check")
    assert r.returncode == 0 and "every file matches its sha256" in r.stdout, r.stderr


@pytest.mark.parametrize("args,message", [
    (["--n", "0"], r"--n must be an integer in \[1, "),
    (["--n", "1048577"], r"--n must be at most 1048576 per call, got 1048577$"),
    (["--seed", "-1"], r"--seed must be an integer in \[0, 9007199254740991\]"),
    (["--temperature", "nan"], r"--temperature must be a number, got 'nan'"),
    (["--precision", "fp16"], r"precision must be one of fp32, int8, got 'fp16'"),
    (["--out", "grid.png"], r"--out grid.png: this model's grid is written as .pgm"),
    (["--bogus"], r"unknown option --bogus"),
    (["--z", "missing.npy"], r"cannot read missing.npy"),
])
def test_bad_arguments_are_refused_in_one_line(native, tmp_path, args, message):
    r = vae_sample(native, "--model", BUNDLED, *args, cwd=tmp_path)
    assert re.search(message, refused(r))
    assert list(tmp_path.iterdir()) == []


def test_latents_of_the_wrong_size_are_refused(native, tmp_path):
    np.save(tmp_path / "z.npy", np.ones((3, 7), np.float32))
    r = vae_sample(native, "--model", BUNDLED, "--z", tmp_path / "z.npy", cwd=tmp_path)
    assert re.search(r"z in .*z.npy has shape \(3, 7\); expected \(N, 32\)", refused(r))


@pytest.mark.parametrize("rows", [4, 2**40, 2**61])
def test_latents_whose_header_declares_more_rows_than_the_file_holds_are_refused(native, tmp_path, rows):
    """A hostile .npy header: refused before anything is allocated for it (and before rows x 32 x 4 overflows)."""
    with open(tmp_path / "z.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, 32)})
        f.write(np.random.default_rng().standard_normal((3, 32)).astype(np.float32).tobytes())
    r = vae_sample(native, "--model", BUNDLED, "--z", tmp_path / "z.npy", "--npy", tmp_path / "x.npy", "--no-image",
                   cwd=tmp_path)
    assert refused(r).endswith("z.npy is truncated or unreadable")


def test_an_output_that_cannot_be_written_leaves_no_partial_file(native, tmp_path):
    (tmp_path / "x.npy").mkdir()  # rename onto a folder fails after the data is written
    r = vae_sample(native, "--model", BUNDLED, "--n", 3, "--npy", tmp_path / "x.npy", "--no-image", cwd=tmp_path)
    assert re.search(r"cannot write .*x.npy", refused(r))
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"] and not list((tmp_path / "x.npy").iterdir())


# -- the encoder: vae_encode and --encode ----------------------------------------------------------------------

def test_c_encodes_like_the_python_runtime(native, tmp_path):
    """1100 fresh images: two runs of the encoder (1024 images a run); mu and logvar within the fp32 tolerance."""
    x = np.random.default_rng().random((1100, 1, 28, 28), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    r = vae_sample(native, "--model", BUNDLED, "--encode", tmp_path / "x.npy", "--npy", tmp_path / "mu.npy",
                   "--logvar", tmp_path / "logvar.npy")
    assert r.returncode == 0, r.stderr
    mu, logvar = VAE.load(BUNDLED).encode(x)
    np.testing.assert_allclose(np.load(tmp_path / "mu.npy"), mu, rtol=0, atol=TOL)
    np.testing.assert_allclose(np.load(tmp_path / "logvar.npy"), logvar, rtol=0, atol=TOL)


@pytest.mark.parametrize("flag", ["--encode", "--score"])
def test_images_outside_0_1_are_refused_in_one_line_as_the_python_runtime_refuses_them(native, tmp_path, flag):
    x = np.random.default_rng().random((2, 1, 28, 28), dtype=np.float32)
    x[0, 0, 0, 0], x[1, 0, 3, 4] = 0, 1.5  # the message names the smallest and the largest value, as Python's
    np.save(tmp_path / "x.npy", x)
    r = vae_sample(native, "--model", BUNDLED, flag, tmp_path / "x.npy", "--npy", tmp_path / "out.npy")
    assert refused(r) == "vae-sample: x has values in [0, 1.5]; floats must lie in [0, 1] (or pass uint8 in [0, 255])"
    assert not (tmp_path / "out.npy").exists()


# -- scores (issue 33): vae_score and --score against the Python runtime's log_likelihood ------------------------

# log w is float32 from onnxruntime, whose kernels may differ by build and CPU: the decoders' fp32 tolerance, 1e-5,
# on each of the C H W + latent_dim terms log w sums (8.2e-3 nats for the bundled model; measured here: 0).
SCORE_TOL = 1e-5 * (28 * 28 + 32)


def _binary_images(n: int) -> np.ndarray:
    """n fresh 0/1 images of the bundled model's shape, each with its own share of ones (a binarized model's pixels)."""
    rng = np.random.default_rng()
    return (rng.random((n, 1, 28, 28)) < rng.random((n, 1, 1, 1))).astype(np.float32)


def _score(native, tmp_path, x, *args, folder=BUNDLED) -> np.ndarray:
    np.save(tmp_path / "x.npy", x)
    r = vae_sample(native, "--model", folder, "--score", tmp_path / "x.npy", *args, "--npy", tmp_path / "s.npy")
    assert r.returncode == 0, r.stderr
    return np.load(tmp_path / "s.npy")


def test_c_scores_equal_the_python_runtimes_for_the_same_images_and_noise(native, tmp_path):
    """150 images: two runs of score.onnx (100 images a run, as Python's), the second smaller."""
    x, k = _binary_images(150), 3
    eps = np.random.default_rng().standard_normal((k, len(x), 32)).astype(np.float32)
    np.save(tmp_path / "eps.npy", eps)
    got = _score(native, tmp_path, x, "--eps", tmp_path / "eps.npy")
    assert got.dtype == np.float64 and got.shape == (150,)
    np.testing.assert_allclose(got, -VAE.load(BUNDLED).log_likelihood(x, k, eps=eps), rtol=0, atol=SCORE_TOL)


def test_c_draws_the_python_runtimes_noise_for_a_seeds_scores(native, tmp_path):
    """The same seed, the noise drawn in C: the same scores, so image i's sample s is normals (i k + s) d .. in C."""
    x, k, seed = _binary_images(7), 5, fresh_seed()
    got = _score(native, tmp_path, x, "--k", k, "--seed", seed)
    np.testing.assert_allclose(got, -VAE.load(BUNDLED).log_likelihood(x, k, seed=seed), rtol=0, atol=SCORE_TOL)


def test_c_numbers_the_noise_from_start_as_the_python_runtime_does(native, tmp_path):
    """--start 5: the images are the sixth onwards of a set scored in parts, so their noise is VAE.score(start=5)'s."""
    x, k, seed = _binary_images(4), 3, fresh_seed()
    got = _score(native, tmp_path, x, "--k", k, "--seed", seed, "--start", 5)
    expected = VAE.load(BUNDLED).score(x, k=k, seed=seed, start=5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=SCORE_TOL)
    assert np.abs(got - _score(native, tmp_path, x, "--k", k, "--seed", seed)).max() > SCORE_TOL


def test_c_scores_a_grey_image_as_its_binarization_at_one_half_for_a_binarized_model(native, tmp_path):
    grey = np.random.default_rng().random((4, 1, 28, 28), dtype=np.float32)
    seed = fresh_seed()
    assert np.array_equal(_score(native, tmp_path, grey, "--k", 2, "--seed", seed),
                          _score(native, tmp_path, (grey >= 0.5).astype(np.float32), "--k", 2, "--seed", seed))


def test_a_folder_without_score_onnx_is_refused_in_one_line_saying_to_re_export(native, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(BUNDLED, folder)
    meta = json.loads((folder / "vae.json").read_text())
    del meta["files"]["score"]
    (folder / "score.onnx").unlink()
    (folder / "vae.json").write_text(json.dumps(meta))
    np.save(tmp_path / "x.npy", _binary_images(2))
    r = vae_sample(native, "--model", folder, "--score", tmp_path / "x.npy", "--npy", tmp_path / "s.npy")
    assert refused(r) == f"vae-sample: {folder} has no score.onnx (exported before vae-edge 0.2.0 wrote one); " \
                         "re-export it with vae-export to score images"
    assert not (tmp_path / "s.npy").exists()


def test_a_score_graph_that_is_another_network_is_refused_at_the_first_score(native, tmp_path):
    folder = tmp_path / "swapped"
    shutil.copytree(BUNDLED, folder)
    meta = json.loads((folder / "vae.json").read_text())
    meta["files"]["score"] = meta["files"]["prior"]  # a real, checked file with another contract
    (folder / "vae.json").write_text(json.dumps(meta))
    np.save(tmp_path / "x.npy", _binary_images(2))
    r = vae_sample(native, "--model", folder, "--score", tmp_path / "x.npy", "--npy", tmp_path / "s.npy")
    assert refused(r) == (f"vae-sample: {folder}/prior.onnx is not the score graph vae.json describes: it maps eps "
                          "float32 [batch, 32], u float32 [batch] -> z float32 [batch, 32]; expected x float32 [batch, "
                          "1, 28, 28], eps float32 [samples, batch, 32] -> log_w float32 [samples, batch]")


@pytest.mark.parametrize("args, message", [
    ([], "--score writes its scores to --npy FILE"),
    (["--npy", "s.npy", "--k", "0"], "--k must be an integer in [1, 1048576], got 0"),
    (["--npy", "s.npy", "--eps", "eps.npy"], "eps in eps.npy has shape (2, 4, 32); expected (N, 3, 32)"),
])
def test_bad_score_arguments_are_refused_in_one_line(native, tmp_path, args, message):
    np.save(tmp_path / "x.npy", _binary_images(3))
    np.save(tmp_path / "eps.npy", np.ones((2, 4, 32), np.float32))  # noise for 4 images, not 3
    r = vae_sample(native, "--model", BUNDLED, "--score", "x.npy", *args, cwd=tmp_path)
    assert message in refused(r)


def test_no_onnxruntime_is_a_one_line_error(native, tmp_path):
    r = vae_sample(native, "--model", BUNDLED, library=tmp_path / "libonnxruntime.so")
    assert re.search(r"cannot load onnxruntime .*pass --onnxruntime PATH/libonnxruntime.so", refused(r))


@pytest.mark.slow
def test_the_oldest_onnxruntime_declared_runs_the_c_program_at_parity(native, tmp_path):
    header = (REPO / "native" / "vae_edge.h").read_text()
    oldest = re.search(r"#define VAE_OLDEST_ONNXRUNTIME_MINOR (\d+)", header)[1]
    assert arm64.ONNXRUNTIME_C["lowest"] == f"onnxruntime==1.{oldest}.*"
    site = arm64.wheels([arm64.ONNXRUNTIME_C["lowest"]], X86_ONNXRUNTIME, deps=False)
    r = vae_sample(native, "--model", BUNDLED, "--n", 20, "--seed", fresh_seed(), "--save-z", tmp_path / "z.npy",
                   "--npy", tmp_path / "x.npy", "--no-image", library=arm64.onnxruntime_library(site))
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), VAE.load(BUNDLED).decode(np.load(tmp_path / "z.npy")),
                               rtol=0, atol=TOL)


# -- the C API, called directly -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api_test(native, tmp_path_factory) -> Path:
    """tests/native/api_test.c linked against build/native/libvae_edge.a, as an app links the library."""
    exe = tmp_path_factory.mktemp("api") / "api_test"
    r = subprocess.run([os.environ.get("CC", "cc"), "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Inative",
                        "tests/native/api_test.c", "build/native/libvae_edge.a", "-lcjson", "-ldl", "-lm", "-o",
                        str(exe)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return exe


def test_the_c_library_samples_with_seed_2_to_the_53_minus_1_and_refuses_2_to_the_53_in_one_line(api_test):
    """The command line refuses such seeds before the library sees them: here vae_sample itself is asked."""
    run = [str(api_test), str(BUNDLED), str(ORT_LIBRARY)]
    ok = subprocess.run([*run, str(2**53 - 1), "3"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 3 images"), ok.stderr
    r = subprocess.run([*run, str(2**53), "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"seed must be an integer in [0, 2^53), got {2**53}\n"


# -- AddressSanitizer, UndefinedBehaviorSanitizer ---------------------------------------------------------------

# The sanitized build: AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer, any finding fatal.
# No suppressions: onnxruntime's process-wide allocations stay reachable at exit (vae_free never dlcloses it), so
# LeakSanitizer reports only what is lost, ours or onnxruntime's. tests/test_fuzz.py feeds it the fuzzed folders.
SANITIZERS = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
SANITIZER_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:exitcode=99",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=98"}


def sanitized_native() -> Path:
    make("native", "NATIVE_OUT=build/native-sanitized", f"EXTRA_CFLAGS={SANITIZERS}")
    return REPO / "build" / "native-sanitized" / "vae-sample"


def sanitizers_silent(r: subprocess.CompletedProcess) -> bool:
    return not any(word in r.stderr for word in ("AddressSanitizer", "LeakSanitizer", "runtime error:"))


@pytest.mark.slow
def test_no_leak_invalid_access_or_undefined_behaviour_under_the_sanitizers(mlp, vamp_export, tmp_path):
    exe = sanitized_native()
    bad = copy_export(mlp, tmp_path)
    _flip_byte("decoder.onnx")(bad, None)
    runs = [("--model", BUNDLED, "--n", 70, "--precision", "int8", "--npy", tmp_path / "x.npy", "--out",
             tmp_path / "g.pgm"), ("--model", mlp, "--n", 3, "--no-image"), ("--model", bad, "--n", 3),
            ("--model", tmp_path / "nowhere",), ("--model", BUNDLED, "--check"),
            ("--model", vamp_export, "--n", 3, "--precision", "int8", "--no-image"),
            ("--model", BUNDLED, "--score", tmp_path / "x.npy", "--k", 50, "--npy", tmp_path / "s.npy"),
            ("--model", BUNDLED, "--encode", tmp_path / "x.npy", "--npy", tmp_path / "mu.npy")]
    np.save(tmp_path / "x.npy", _binary_images(130))  # two runs of score.onnx, the second of 30 images
    for args in runs:
        r = vae_sample(exe, *args, env=SANITIZER_ENV, cwd=tmp_path)
        assert sanitizers_silent(r), r.stderr[-4000:]
        assert r.returncode in (0, 2), r.stderr[-2000:]


# -- ARM64, cross-compiled, run by qemu -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def native_arm64() -> Path:
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        arm64.missing("aarch64-linux-gnu-gcc is not installed: apt-get install gcc-aarch64-linux-gnu")
    arm64.provision()
    make("native-arm64")
    return REPO / "build" / "native-arm64" / "vae-sample"


@pytest.mark.slow
@pytest.mark.emulated
@pytest.mark.parametrize("onnxruntime_release", ["lowest", "newest"])
@pytest.mark.parametrize("cpu", list(arm64.CPUS))
def test_arm64_c_samples_equal_the_python_runtime_on_x86(native_arm64, mlp, tmp_path, cpu, onnxruntime_release):
    site = arm64.wheels([arm64.ONNXRUNTIME_C[onnxruntime_release]], deps=False)
    library = arm64.onnxruntime_library(site)
    for folder, precision in [(BUNDLED, "fp32"), (BUNDLED, "int8"), (mlp, "int8")]:
        r = vae_sample(native_arm64, "--model", folder, "--n", 64, "--seed", fresh_seed(), "--precision", precision,
                       "--save-z", tmp_path / "z.npy", "--npy", tmp_path / "x.npy", "--no-image", library=library,
                       runner=lambda argv, **kw: arm64.run(cpu, *argv, timeout=kw["timeout"]))
        assert r.returncode == 0, r.stderr[-2000:]
        z, x = np.load(tmp_path / "z.npy"), np.load(tmp_path / "x.npy")
        x86 = VAE.load(folder, precision=precision).decode(z)
        if precision == "fp32":
            np.testing.assert_allclose(x, x86, rtol=0, atol=TOL)
        else:  # ARM's int8 kernels are not x86's: they may move pixels from x86's int8 by no more than the export
            # lets int8 move them from fp32 (the C program against the Python runtime on the same ARM64 CPU, within
            # 1e-5, is tests/test_arm64.py's)
            bound = json.loads((folder / "vae.json").read_text())["int8"]["bound"]["x_mean_abs"]
            assert np.abs(x - x86).mean() <= bound
    bad = copy_export(mlp, tmp_path)
    _flip_byte("decoder.int8.onnx")(bad, None)
    r = vae_sample(native_arm64, "--model", bad, "--precision", "int8", library=library,
                   runner=lambda argv, **kw: arm64.run(cpu, *argv, timeout=kw["timeout"]))
    assert "decoder.int8.onnx does not match the sha256 in vae.json" in refused(r)

"""vae-export: ONNX files with a symbolic batch, parity with PyTorch, safe loading, atomic writes, int8."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from conftest import trained
from vae_edge.export import ExportError, ParityError, export_checkpoint, export_model, load_model
from vae_edge.runtime import outputs
from vae_edge.export import graphs, parity
from vae_edge.export.cli import app
from vae_edge.export.int8_reference import reference_run
from vae_edge.runtime import VAE as RuntimeVAE
from vae_edge.train import checkpoint
from vae_edge.train.config import Config
from vae_edge.train.model import VAE
from vae_edge.train.train import final_checkpoint

TOL = 1e-5
FILES = ("encoder.onnx", "decoder.onnx")
INT8_FILES = ("encoder.int8.onnx", "decoder.int8.onnx")
SCORE_FILE = "score.onnx"  # every export's IWAE log-weights graph (a format-1 folder's since 0.2.0)


# -----------------------------------------------------------------------------
# helpers

def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def fresh_x(model: VAE, n: int, rng=None) -> np.ndarray:
    return (rng or np.random.default_rng()).random((n, *model.input_shape), dtype=np.float32)


def fresh_z(model: VAE, n: int, rng=None) -> np.ndarray:
    return (rng or np.random.default_rng()).standard_normal((n, model.latent_dim), dtype=np.float32)


@torch.no_grad()
def max_diffs(model: VAE, folder: Path, n: int) -> dict:
    """Max abs difference PyTorch vs onnxruntime, read back from the written files, at batch size n."""
    x, z = fresh_x(model, n), fresh_z(model, n)
    mu, logvar = session(folder / "encoder.onnx").run(["mu", "logvar"], {"x": x})
    (px,) = session(folder / "decoder.onnx").run(["x"], {"z": z})
    ref_mu, ref_logvar = model.encode(torch.from_numpy(x))
    ref_px = model.probs(torch.from_numpy(z))
    assert mu.shape == (n, model.latent_dim) and px.shape == (n, *model.input_shape)
    return {"mu": float(np.abs(mu - ref_mu.numpy()).max()),
            "logvar": float(np.abs(logvar - ref_logvar.numpy()).max()),
            "x": float(np.abs(px - ref_px.numpy()).max())}


def metadata(path: Path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def leftovers(parent: Path) -> list[str]:
    """Temporary folders an export might have left beside its target."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


class ReferenceVAE(nn.Module):
    """The reference network (pytorch/examples vae), as users have it: fc1, fc21, fc22, fc3, fc4."""

    def __init__(self, d=784, hidden=400, latent=20):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, d)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))


class Payload:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -----------------------------------------------------------------------------
# fixtures: one export per (arch, weights), shared by the module

CASES = [("mlp", "init"), ("mlp", "trained"), ("conv", "init"), ("conv", "trained")]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """(arch, weights) -> (model, folder, vae.json); the trained ones are also exported as int8."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("exports")
    done = {}
    for arch, weights in CASES:
        model = VAE(arch, hidden_dim=64, latent_dim=8).eval()
        if weights == "trained":
            model = trained(model)
        folder = root / f"{arch}-{weights}"
        info = export_model(model, folder, quantize="int8" if weights == "trained" else None)
        done[arch, weights] = (model, folder, info)
    return done


@pytest.fixture
def ref_pt(tmp_path) -> tuple[ReferenceVAE, Path]:
    torch.manual_seed(1)
    ref = ReferenceVAE().eval()
    path = tmp_path / "model.pt"
    torch.save(ref.state_dict(), path)
    return ref, path


# -----------------------------------------------------------------------------
# parity and the graphs

@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_export_matches_pytorch_within_1e_5(exports, case):
    model, folder, info = exports[case]
    recorded = info["parity"]
    assert recorded["tolerance"] == TOL and recorded["batch_sizes"] == [1, 2, 7, 64]
    assert all(0 <= recorded[k] <= TOL for k in ("mu", "logvar", "x"))
    for n in (1, 2, 7, 64):
        assert all(d <= TOL for d in max_diffs(model, folder, n).values())


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_batch_is_truly_dynamic_at_sizes_never_seen(exports, arch):
    model, folder, _ = exports[arch, "trained"]
    for n in (1, 3, 1000):
        assert all(d <= TOL for d in max_diffs(model, folder, n).values())


SHAPES = [(1, 28, 28), (3, 28, 28), (1, 12, 20), (3, 12, 20), (3, 4, 8), (3, 64, 64), (1, 16, 64)]


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_conv_decoder_rewritten_without_conv_transpose_equals_the_vae_within_1e_5(shape):
    model = trained(VAE("conv", shape, hidden_dim=32, latent_dim=4), seed=sum(shape))
    torch.manual_seed(sum(shape))
    with torch.no_grad():
        for layer in model.dec_conv:  # larger than init, so every weight's placement shows in the logits
            if isinstance(layer, nn.ConvTranspose2d):
                layer.weight.normal_(0.0, 0.2)
                layer.bias.normal_(0.0, 0.2)
        decoder = graphs.Decoder(model).eval()
        assert decoder.up is not None
        z = torch.from_numpy(fresh_z(model, 9))
        ref, got = model.decode(z), decoder.logits(z)
        probs, got_probs = model.probs(z), decoder(z)
    assert got.shape == ref.shape and ref.abs().max() > 0.5
    assert (got - ref).abs().max() <= TOL
    assert (got_probs - probs).abs().max() <= TOL


def test_a_64x64_rgb_conv_decoder_at_todays_width_is_at_most_8_mb_in_fp32_in_the_phase_form_it_is_exported_in():
    """The phase form holds some zero taps, so its weights outnumber the network's (docs/training.md)."""
    model = VAE.from_config(Config(arch="conv", input_shape=(3, 64, 64)).architecture())  # hidden 400, latent 20
    tensors = [*model.fc3.state_dict().values(), *model.fc4.state_dict().values(),
               *graphs.Decoder(model).up.state_dict().values()]
    assert 4 * sum(t.numel() for t in tensors) <= 8_000_000


def test_a_64x64_rgb_conv_exports_without_conv_transpose_within_1e_5_and_the_python_runtime_samples_it(
        conv64_export):
    model, folder, info = conv64_export
    assert model.stages == 3 and all(0 <= info["parity"][k] <= TOL for k in ("mu", "logvar", "x"))
    for n in (1, 7):
        assert all(d <= TOL for d in max_diffs(model, folder, n).values())
    ops = [n.op_type for n in onnx.load(str(folder / "decoder.onnx")).graph.node]
    assert "ConvTranspose" not in ops and ops.count("DepthToSpace") == 2  # the first stage's, the last two's
    vae, seed = RuntimeVAE.load(folder), int(np.random.default_rng().integers(0, 2**53))
    eps, _ = vae.noise(9, seed=seed)
    with torch.no_grad():
        want = model.probs(torch.from_numpy(eps)).numpy()
    np.testing.assert_allclose(vae.sample(9, seed=seed), want, rtol=0, atol=TOL)


@pytest.mark.parametrize("size", [(1, 1), (5, 3)])
def test_an_earlier_stage_of_a_deeper_conv_decoder_is_a_3x3_conv_and_a_pixel_shuffle_within_1e_5(size):
    """Each stage before the last two (64x64 has one, 128x128 two) becomes Conv2d 3x3 + DepthToSpace(2)."""
    torch.manual_seed(sum(size))
    t = nn.ConvTranspose2d(6, 5, 4, 2, 1)
    with torch.no_grad():
        t.weight.normal_(0.0, 0.5)
        t.bias.normal_(0.0, 0.5)
        x = torch.randn(3, 6, *size)
        got, want = F.pixel_shuffle(graphs._stage_conv(t)(x), 2), t(x)
    assert got.shape == want.shape and want.abs().max() > 0.5
    assert (got - want).abs().max() <= TOL


def test_conv_decoder_graph_has_no_conv_transpose(exports):
    ops = {n.op_type for n in onnx.load(str(exports["conv", "trained"][1] / "decoder.onnx")).graph.node}
    assert "ConvTranspose" not in ops and {"Conv", "DepthToSpace"} <= ops


def test_conv_export_of_an_odd_shape_matches_pytorch_within_1e_5(tmp_path):
    torch.manual_seed(3)
    model = trained(VAE("conv", (3, 12, 20), hidden_dim=32, latent_dim=4))
    export_model(model, tmp_path / "out")
    for n in (1, 5):
        assert all(d <= TOL for d in max_diffs(model, tmp_path / "out", n).values())


@pytest.mark.parametrize("name", FILES + INT8_FILES)
def test_batch_axis_is_symbolic_and_named_batch(exports, name):
    g = onnx.load(str(exports["conv", "trained"][1] / name)).graph
    for v in [*g.input, *g.output]:
        dims = v.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and not dims[0].HasField("dim_value")
        assert all(d.dim_value > 0 for d in dims[1:])


def test_graph_inputs_and_outputs_follow_the_contract(exports):
    model, folder, _ = exports["mlp", "trained"]
    enc, dec = (onnx.load(str(folder / f)).graph for f in FILES)
    shape = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [(v.name, shape(v)) for v in enc.input] == [("x", ["batch", 1, 28, 28])]
    assert [(v.name, shape(v)) for v in enc.output] == [("mu", ["batch", 8]), ("logvar", ["batch", 8])]
    assert [(v.name, shape(v)) for v in dec.input] == [("z", ["batch", 8])]
    assert [(v.name, shape(v)) for v in dec.output] == [("x", ["batch", 1, 28, 28])]
    for v in [*enc.input, *enc.output, *dec.input, *dec.output]:
        assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_encoder_outputs_parameters_not_a_sample(exports):
    _, folder, _ = exports["mlp", "trained"]
    g = onnx.load(str(folder / "encoder.onnx")).graph
    assert not [n.op_type for n in g.node if n.op_type.startswith("Random")]
    x = fresh_x(exports["mlp", "trained"][0], 4)
    s = session(folder / "encoder.onnx")
    first, again = s.run(None, {"x": x}), s.run(None, {"x": x})
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_decoder_outputs_probabilities(exports):
    model, folder, _ = exports["conv", "trained"]
    (px,) = session(folder / "decoder.onnx").run(["x"], {"z": 5 * fresh_z(model, 64)})
    assert px.min() >= 0.0 and px.max() <= 1.0


@pytest.mark.parametrize("name", FILES + INT8_FILES + (SCORE_FILE,))
def test_each_file_is_self_contained_and_passes_the_checker(exports, name):
    folder = exports["conv", "trained"][1]
    onnx.checker.check_model(str(folder / name), full_check=True)
    proto = onnx.load(str(folder / name), load_external_data=False)
    assert proto.graph.initializer
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["vae.json", *FILES, *INT8_FILES, SCORE_FILE])


# -----------------------------------------------------------------------------
# vae.json and metadata

def test_vae_json_is_what_export_model_returned(exports):
    _, folder, info = exports["mlp", "init"]
    assert json.loads((folder / "vae.json").read_text()) == info
    assert info["format"] == "vae-edge-onnx" and info["format_version"] == 1
    assert info["model"] == {"arch": "mlp", "input_shape": [1, 28, 28], "hidden_dim": 64, "latent_dim": 8,
                             "likelihood": "bernoulli"}
    assert info["opset"] == onnx.load(str(folder / "encoder.onnx")).opset_import[0].version
    assert info["versions"]["torch"] == torch.__version__
    assert info["versions"]["onnx"] == onnx.__version__
    assert info["versions"]["onnxruntime"] == ort.__version__
    assert info["int8"] is None and set(info["files"]) == {"encoder", "decoder", "score"}


@pytest.mark.parametrize("case", [("mlp", "init"), ("conv", "trained")], ids=["fp32", "int8"])
def test_vae_json_records_the_sha256_and_size_of_each_file(exports, case):
    import hashlib
    folder, info = exports[case][1], exports[case][2]
    for entry in info["files"].values():
        data = (folder / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)


@pytest.mark.parametrize("case", [("mlp", "init"), ("conv", "trained")], ids=["fp32", "int8"])
def test_metadata_in_each_file_equals_vae_json(exports, case):
    folder, info = exports[case][1], exports[case][2]
    expected = {k: json.dumps(v, sort_keys=True) for k, v in info.items() if k != "files"}
    for role, entry in info["files"].items():
        meta = metadata(folder / entry["path"])
        assert meta.pop("role") == role.split("_")[0]
        assert meta == expected
        assert json.loads(meta["parity"]) == info["parity"] and json.loads(meta["model"]) == info["model"]


def test_the_runs_training_time_travels_into_the_export_as_its_epochs_summed(tmp_path):
    cfg = Config(arch="mlp", hidden_dim=32, latent_dim=4, dataset="fashion-mnist")
    model = trained(VAE.from_config(cfg.architecture()), steps=2)
    metrics = [{"epoch": 1, "test_loss": 290.0, "seconds": 31.5}, {"epoch": 2, "test_loss": 275.25, "seconds": 29.25}]
    checkpoint.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "config": cfg.to_dict(),
                     "state_dict": model.state_dict(), "metrics": metrics}, tmp_path / "model.pt")
    info = export_checkpoint(tmp_path / "model.pt", tmp_path / "out")
    assert info["metrics"] == {**metrics[-1], "training_seconds": 60.75}


def test_checkpoint_dataset_and_final_metrics_travel_into_the_export(tmp_path):
    cfg = Config(arch="mlp", hidden_dim=32, latent_dim=4, dataset="fashion-mnist")
    model = trained(VAE.from_config(cfg.architecture()), steps=2)
    metrics = [{"epoch": 1, "train_loss": 300.0, "test_loss": 290.0},
               {"epoch": 2, "train_loss": 280.5, "test_loss": 275.25, "test_iwae": -270.0}]
    checkpoint.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "config": cfg.to_dict(),
                     "state_dict": model.state_dict(), "metrics": metrics}, tmp_path / "model.pt")
    info = export_checkpoint(tmp_path / "model.pt", tmp_path / "out")
    assert info["dataset"] == "fashion-mnist" and info["metrics"] == metrics[-1]
    assert info["model"] == cfg.architecture()
    assert json.loads(metadata(tmp_path / "out" / "decoder.onnx")["metrics"]) == metrics[-1]
    assert all(d <= TOL for d in max_diffs(model, tmp_path / "out", 5).values())


def test_load_model_returns_the_checkpoint_model_in_eval_mode(tmp_path):
    cfg = Config(arch="conv", hidden_dim=32, latent_dim=4, input_shape=(3, 16, 16), dataset="folder")
    model = VAE.from_config(cfg.architecture())
    checkpoint.save({"format": checkpoint.FORMAT, "version": 1, "config": cfg.to_dict(),
                     "state_dict": model.state_dict(), "metrics": []}, tmp_path / "model.pt")
    loaded, facts = load_model(tmp_path / "model.pt")
    assert not loaded.training and loaded.input_shape == (3, 16, 16) and loaded.arch == "conv"
    assert facts["dataset"] == "folder" and facts["metrics"] is None
    assert facts["recipe"] == {k: v for k, v in cfg.to_dict().items() if k not in ("out_dir", "name")}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


# -----------------------------------------------------------------------------
# the reference state_dict

@torch.no_grad()
def test_reference_state_dict_exports_and_matches_the_reference_network(ref_pt, tmp_path):
    ref, path = ref_pt
    info = export_checkpoint(path, tmp_path / "out")
    assert info["model"]["hidden_dim"] == 400 and info["model"]["latent_dim"] == 20
    assert info["dataset"] is None and info["metrics"] is None
    rng = np.random.default_rng()
    x, z = rng.random((7, 1, 28, 28), dtype=np.float32), rng.standard_normal((7, 20), dtype=np.float32)
    mu, logvar = session(tmp_path / "out" / "encoder.onnx").run(["mu", "logvar"], {"x": x})
    (px,) = session(tmp_path / "out" / "decoder.onnx").run(["x"], {"z": z})
    ref_mu, ref_logvar = ref.encode(torch.from_numpy(x).view(-1, 784))
    assert np.abs(mu - ref_mu.numpy()).max() <= TOL
    assert np.abs(logvar - ref_logvar.numpy()).max() <= TOL
    assert np.abs(px - ref.decode(torch.from_numpy(z)).view(-1, 1, 28, 28).numpy()).max() <= TOL


def test_reference_dimensions_are_inferred_from_the_weights(tmp_path):
    torch.save(ReferenceVAE(d=3 * 32 * 32, hidden=50, latent=6).state_dict(), tmp_path / "m.pt")
    model, _ = load_model(tmp_path / "m.pt", input_shape=(3, 32, 32))
    assert (model.arch, model.input_shape, model.hidden_dim, model.latent_dim) == ("mlp", (3, 32, 32), 50, 6)


def test_input_shape_that_does_not_match_fc1_is_refused(ref_pt):
    with pytest.raises(ExportError, match="784"):
        load_model(ref_pt[1], input_shape=(3, 28, 28))


# -----------------------------------------------------------------------------
# bad input files

def test_malicious_pickle_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    state = ReferenceVAE().state_dict()
    state["fc1.weight"] = Payload(marker)
    torch.save(state, tmp_path / "evil.pt")
    assert not marker.exists()
    result = CliRunner().invoke(app, [str(tmp_path / "evil.pt"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "refusing" in result.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()
    # the payload is live: an unsafe load would have run it
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_truncated_file_gives_a_one_line_error(ref_pt, tmp_path):
    data = ref_pt[1].read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    result = CliRunner().invoke(app, [str(tmp_path / "cut.pt"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "truncated or corrupt" in result.stderr and not (tmp_path / "out").exists()


def test_a_two_stage_conv_checkpoint_at_64x64_from_before_the_stage_rule_is_refused_in_one_line(tmp_path):
    """0.1.0 gave every size two stages; the rule gives 64x64 three (docs/training.md)."""
    cfg = Config(arch="conv", hidden_dim=8, latent_dim=2, input_shape=(3, 64, 64))
    saved = final_checkpoint(VAE("conv", (3, 64, 64), 8, 2), cfg, [])
    two_stages = VAE("conv", (3, 32, 32), 8, 2).state_dict()  # enc_conv.0 and .2, dec_conv.0 and .2
    saved["state_dict"] = {k: v for k, v in saved["state_dict"].items() if "_conv." not in k} | {
        k: v for k, v in two_stages.items() if "_conv." in k}
    checkpoint.save(saved, tmp_path / "old.pt")
    result = CliRunner().invoke(app, [str(tmp_path / "old.pt"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "a conv checkpoint of 2 stride-2 stages at 64x64, where this version builds 3" in result.stderr
    assert not (tmp_path / "out").exists()


def _drop(sd, key):
    sd.pop(key)
    return sd


BAD_STATE_DICTS = {
    "unknown key": (lambda sd: {**sd, "fc5.weight": torch.zeros(3)}, "unknown keys fc5.weight"),
    "missing key": (lambda sd: _drop(sd, "fc22.bias"), "missing keys fc22.bias"),
    "wrong shape": (lambda sd: {**sd, "fc22.weight": torch.zeros(20, 300)}, r"fc22.weight has shape \[20, 300\]"),
    "not a tensor": (lambda sd: {**sd, "fc3.bias": [0.0] * 400}, "only tensors"),
    "integer weights": (lambda sd: {**sd, "fc3.bias": torch.zeros(400, dtype=torch.long)}, "floating-point"),
    "NaN weights": (lambda sd: {**sd, "fc4.bias": torch.full((784,), float("nan"))}, "NaN"),
    "not a dict": (lambda sd: list(sd.values()), "not a checkpoint"),
}


@pytest.mark.parametrize("name", list(BAD_STATE_DICTS))
def test_bad_state_dict_is_refused_with_one_line(tmp_path, name):
    change, message = BAD_STATE_DICTS[name]
    torch.save(change(ReferenceVAE().state_dict()), tmp_path / "bad.pt")
    with pytest.raises(ExportError, match=message) as e:
        load_model(tmp_path / "bad.pt")
    assert "\n" not in str(e.value)


def test_checkpoint_with_a_mismatched_state_dict_is_refused(tmp_path):
    cfg = Config(hidden_dim=32, latent_dim=4)
    state = VAE.from_config({**cfg.architecture(), "latent_dim": 5}).state_dict()
    checkpoint.save({"format": checkpoint.FORMAT, "version": 1, "config": cfg.to_dict(),
                     "state_dict": state, "metrics": []}, tmp_path / "model.pt")
    with pytest.raises(ExportError, match=r"fc21.weight has shape \[5, 32\], expected \[4, 32\]"):
        load_model(tmp_path / "model.pt")


def test_missing_file_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="no such checkpoint"):
        load_model(tmp_path / "nope.pt")


# -----------------------------------------------------------------------------
# writing

def test_existing_output_folder_is_kept_without_force(ref_pt, tmp_path):
    out = tmp_path / "vae-onnx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, [str(ref_pt[1]), "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and leftovers(tmp_path) == []


def test_force_replaces_an_earlier_export_and_leaves_no_temporary_folders(tmp_path):
    out = tmp_path / "vae-onnx"
    first = export_model(VAE(hidden_dim=16, latent_dim=2), out)
    (out / "stale.txt").write_text("from before")
    second = export_model(VAE(hidden_dim=16, latent_dim=3), out, force=True)
    assert json.loads((out / "vae.json").read_text()) == second != first
    assert not (out / "stale.txt").exists() and leftovers(tmp_path) == []


def test_force_never_replaces_a_folder_that_is_not_an_export(tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(ExportError, match="not a vae-edge export"):
        export_model(VAE(hidden_dim=16, latent_dim=2), tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize("kind", ["a FIFO", "a symlink", "a regular file"])
def test_force_never_replaces_anything_but_a_folder(tmp_path, kind):
    out, theirs = tmp_path / "vae-onnx", tmp_path / "theirs"
    theirs.mkdir()
    {"a FIFO": lambda: os.mkfifo(out), "a symlink": lambda: out.symlink_to(theirs),
     "a regular file": lambda: out.write_text("mine")}[kind]()
    with pytest.raises(ExportError, match=f"exists and is {kind}, not a folder; refusing to replace it"):
        export_model(VAE(hidden_dim=16, latent_dim=2), out, force=True)
    assert os.path.lexists(out) and list(theirs.iterdir()) == [] and leftovers(tmp_path) == []


def test_cli_refuses_an_out_whose_folder_is_missing_in_one_line(ref_pt, tmp_path):
    result = CliRunner().invoke(app, [str(ref_pt[1]), "--out", str(tmp_path / "gone" / "vae-onnx")])
    assert result.exit_code == 2 and result.stderr == (f"error: --out {tmp_path / 'gone' / 'vae-onnx'}: there is no "
                                                       f"folder {tmp_path / 'gone'}; make it first\n")
    assert not (tmp_path / "gone").exists()


def test_parity_failure_writes_nothing_and_reports_the_figures(monkeypatch, ref_pt, tmp_path):
    monkeypatch.setattr(parity, "TOLERANCE", -1.0)  # any real difference, even 0, now fails
    with pytest.raises(ParityError, match=r"mu .*logvar .*x "):
        export_model(VAE(hidden_dim=16, latent_dim=2), tmp_path / "out")
    assert list(tmp_path.iterdir()) == [ref_pt[1]]
    result = CliRunner().invoke(app, [str(ref_pt[1]), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "beyond" in result.stderr and "mu " in result.stderr
    assert list(tmp_path.iterdir()) == [ref_pt[1]]


def _decoder_off_at_one_batch_size(model: VAE, n: int, by: float) -> bytes:
    """The model's decoder graph with `by` added to every pixel when the batch holds n latents, exact otherwise."""
    proto = graphs.decoder_graph(model)
    g, out = proto.graph, proto.graph.output[0].name
    for node in g.node:
        node.output[:] = [f"{out}_exact" if o == out else o for o in node.output]
    g.initializer.extend([onnx.numpy_helper.from_array(np.array(0, np.int64), "axis0"),
                          onnx.numpy_helper.from_array(np.array(n, np.int64), "n"),
                          onnx.numpy_helper.from_array(np.array(by, np.float32), "by")])
    g.node.extend([onnx.helper.make_node("Shape", [g.input[0].name], ["shape"]),
                   onnx.helper.make_node("Gather", ["shape", "axis0"], ["batch"]),
                   onnx.helper.make_node("Equal", ["batch", "n"], ["at_n"]),
                   onnx.helper.make_node("Cast", ["at_n"], ["at_n_float"], to=onnx.TensorProto.FLOAT),
                   onnx.helper.make_node("Mul", ["at_n_float", "by"], ["offset"]),
                   onnx.helper.make_node("Add", [f"{out}_exact", "offset"], [out])])
    return proto.SerializeToString()


@pytest.mark.parametrize("n", parity.PARITY_BATCH_SIZES)
def test_a_decoder_off_by_1e_3_at_one_listed_batch_size_only_fails_the_parity_check(n):
    model = VAE(hidden_dim=16, latent_dim=2).eval()
    encoder = graphs.encoder_graph(model).SerializeToString()
    unlisted = max(parity.PARITY_BATCH_SIZES) + 1  # the graph is exact at every other size
    assert parity.check_parity(model, encoder, _decoder_off_at_one_batch_size(model, unlisted, 1e-3))["x"] <= 1e-5
    with pytest.raises(ParityError, match=r", x 0\.001\)"):
        parity.check_parity(model, encoder, _decoder_off_at_one_batch_size(model, n, 1e-3))


def test_export_leaves_the_callers_model_as_it_was(tmp_path):
    model = VAE(hidden_dim=16, latent_dim=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_model(model, tmp_path / "out")
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_opset_can_be_chosen_and_an_impossible_one_is_refused(tmp_path):
    model = VAE(hidden_dim=16, latent_dim=2)
    info = export_model(model, tmp_path / "o17", opset=17)
    assert info["opset"] == 17
    assert onnx.load(str(tmp_path / "o17" / "decoder.onnx")).opset_import[0].version == 17
    with pytest.raises(ExportError, match="opset 9"):
        export_model(model, tmp_path / "o9", opset=9)
    assert not (tmp_path / "o9").exists()


# -----------------------------------------------------------------------------
# int8

@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_int8_files_hold_the_bound_against_pytorch_on_fresh_inputs(exports, arch):
    """What the int8 files mean (the exact reference, the same on every CPU) against PyTorch, on 256 fresh inputs
    of the kind the export checked (no dataset: uniform images, N(0, I) latents): within the bound itself. These
    models sit at 3-24% of it, and over 20 draws of 256 the mean moved at most 12% from the export's figure."""
    model, folder, info = exports[arch, "trained"]
    q = info["int8"]
    assert 0 < q["mu_mean_abs"] <= q["mu_max_abs"] < 0.05 and 0 < q["x_mean_abs"] <= q["x_max_abs"] < 0.05
    x, z = fresh_x(model, 256), fresh_z(model, 256)
    expected = parity.torch_outputs(model, x, z)
    mu8 = reference_run(onnx.load(str(folder / "encoder.int8.onnx")), "mu", {"x": x})
    px8 = reference_run(onnx.load(str(folder / "decoder.int8.onnx")), "x", {"z": z})
    assert np.abs(mu8 - expected["mu"]).mean() <= q["bound"]["mu_mean_abs"]
    assert np.abs(px8 - expected["x"]).mean() <= q["bound"]["x_mean_abs"]


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_int8_files_are_quantized_and_smaller(exports, arch):
    folder, info = exports[arch, "trained"][1:]
    files = info["files"]
    for role in ("encoder", "decoder"):
        # the conv decoder's Convs stay float (ConvInteger is slower); at hidden_dim 64 they weigh 16% of the file
        limit = 0.45 if (arch, role) == ("conv", "decoder") else 0.4
        assert files[f"{role}_int8"]["bytes"] < limit * files[role]["bytes"]
        ops = {n.op_type for n in onnx.load(str(folder / files[f"{role}_int8"]["path"])).graph.node}
        assert "MatMulInteger" in ops


def test_unknown_quantization_is_refused(tmp_path):
    with pytest.raises(ExportError, match="int8"):
        export_model(VAE(hidden_dim=16, latent_dim=2), tmp_path / "out", quantize="int4")


# -----------------------------------------------------------------------------
# the command line

def test_cli_writes_vae_onnx_here_and_prints_files_sizes_parity_and_sample_command(ref_pt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [str(ref_pt[1]), "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "vae-onnx" / "vae.json").read_text())
    for entry in info["files"].values():
        assert entry["path"] in result.stdout and f"{entry['bytes']:,} bytes" in result.stdout
    assert "parity" in result.stdout and f"mu {info['parity']['mu']:.2g}" in result.stdout
    assert "int8" in result.stdout and f"{info['int8']['x_max_abs']:.2g}" in result.stdout
    assert "vae-sample --model vae-onnx --n 64" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--input-shape", "1,28"], "C,H,W"),
    (["--quantize", "fp16"], "int8"),
])
def test_cli_refuses_bad_options_with_one_line(ref_pt, tmp_path, args, message):
    result = CliRunner().invoke(app, [str(ref_pt[1]), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_help_documents_every_option():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("MODEL_PT", "--out", "--input-shape", "--opset", "--quantize", "--force"):
        assert option in result.stdout


def test_any_failure_inside_torch_load_becomes_an_export_error(monkeypatch, tmp_path):
    def corrupt(path):  # what torch.load raises on some damaged legacy files
        raise KeyError(190)
    monkeypatch.setattr(checkpoint, "load", corrupt)
    with pytest.raises(ExportError, match="truncated or corrupt"):
        load_model(tmp_path / "model.pt")


@pytest.mark.parametrize("failing", [2, 3], ids=["moving-the-earlier-aside", "moving-the-new-in"])
def test_a_failed_swap_under_force_puts_the_earlier_export_back(monkeypatch, tmp_path, failing):
    out = tmp_path / "vae-onnx"
    first = export_model(VAE(hidden_dim=16, latent_dim=2), out)
    real_rename, calls = os.rename, []

    def flaky_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == failing:  # 1: the finished folder beside out, 2: the earlier export aside, 3: the new one in
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(outputs, "exchange", lambda a, b: False)  # folders that cannot be swapped in one step
    monkeypatch.setattr(os, "rename", flaky_rename)
    with pytest.raises(ExportError, match="No space left"):
        export_model(VAE(hidden_dim=16, latent_dim=3), out, force=True)
    assert json.loads((out / "vae.json").read_text()) == first and leftovers(tmp_path) == []


def test_force_swaps_the_folders_in_one_step_where_the_system_can(monkeypatch, tmp_path):
    out = tmp_path / "vae-onnx"
    export_model(VAE(hidden_dim=16, latent_dim=2), out)
    renames = []
    monkeypatch.setattr(os, "rename", lambda src, dst, rename=os.rename: renames.append(dst) or rename(src, dst))
    second = export_model(VAE(hidden_dim=16, latent_dim=3), out, force=True)
    assert json.loads((out / "vae.json").read_text()) == second and leftovers(tmp_path) == []
    assert renames == [tmp_path / ".vae-onnx.vae-export.new"]  # then renameat2 exchanged it with out


# A real `vae-export --force` process, SIGKILLed just before or after the Nth call of one of the steps of the swap.
KILLED_EXPORT = """
import os, shutil, signal, sys
import vae_edge.runtime.outputs as outputs
step, nth, when, swap = sys.argv[1].split(":")
owner, name = {"rename": (os, "rename"), "fsync": (os, "fsync"), "exchange": (outputs, "exchange")}[step]
real, calls = getattr(owner, name), []
def killed(*args):
    calls.append(args)
    if len(calls) == int(nth) and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(*args)
    if len(calls) == int(nth) and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(owner, name, killed)
if swap == "renames":
    outputs.exchange = lambda a, b: False
from vae_edge.export.cli import app
sys.argv = ["vae-export", *sys.argv[2:]]
app()
"""


@pytest.fixture(scope="module")
def swap_checkpoints(tmp_path_factory):
    """The checkpoints of the earlier export (latent_dim 2) and the new one (latent_dim 3), and the earlier export."""
    d = tmp_path_factory.mktemp("swap")
    for latent_dim in (2, 3):
        cfg = Config(arch="mlp", hidden_dim=16, latent_dim=latent_dim)
        state = VAE.from_config(cfg.architecture()).state_dict()
        checkpoint.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "config": cfg.to_dict(),
                         "state_dict": state, "metrics": []}, d / f"z{latent_dim}.pt")
    export_checkpoint(d / "z2.pt", d / "earlier")
    return d


def which_export(folder: Path) -> str | None:
    """"earlier" or "new" where folder holds that export, whole (every file there, its sha256 checked), else None."""
    from vae_edge.runtime import VAE as RuntimeVAE
    if not folder.exists():
        return None
    return {2: "earlier", 3: "new"}[RuntimeVAE.load(folder).latent_dim]


SLOW = pytest.mark.slow  # a process that imports torch each: the window the issue found runs by default


@pytest.mark.parametrize("kill,at_kill,after", [
    pytest.param("fsync:2:before:exchange", "earlier", "earlier", id="writing", marks=SLOW),
    pytest.param("rename:1:after:exchange", "earlier", "earlier", id="finished-beside", marks=SLOW),
    pytest.param("exchange:1:after:exchange", "new", "new", id="swapped", marks=SLOW),
    # without renameat2: the earlier export aside, the new one not yet in; then the new one in, the earlier aside
    pytest.param("rename:2:after:renames", None, "new", id="between-the-renames"),
    pytest.param("rename:3:after:renames", "new", "new", id="renamed-in", marks=SLOW),
])
def test_a_killed_export_force_leaves_the_earlier_or_the_new_export_and_the_next_run_cleans_up(
        swap_checkpoints, tmp_path, kill, at_kill, after):
    d, out = swap_checkpoints, tmp_path / "vae-onnx"
    shutil.copytree(d / "earlier", out)
    r = subprocess.run([sys.executable, "-c", KILLED_EXPORT, kill, str(d / "z3.pt"), "--out", str(out), "--force"],
                       capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert which_export(out) == at_kill
    assert leftovers(tmp_path), "the kill left nothing for the next run to clean"
    with pytest.raises(ExportError, match="pass --force"):  # the next run, which stops once it has recovered
        export_checkpoint(d / "z3.pt", out)
    assert which_export(out) == after and leftovers(tmp_path) == []



"""The range pyproject.toml promises, proven in fresh virtual environments built with uv.

- runtime, lowest: the oldest Python we support, and the lowest versions of the runtime's dependencies
  (`uv pip install --resolution lowest-direct`, read from pyproject.toml): numpy 1.x, the oldest onnxruntime;
- runtime, newest: the newest Python here, and the newest releases: numpy 2.x;
- train, lowest: every dependency of [train] and of the runtime at its floor, torch's a CPU build that this
  machine's pip finds (PyPI's Linux wheels of torch are CUDA builds with 2.5 GB of dependencies): it trains,
  exports with int8 and runs at parity there (the newest are what the main environment holds, which
  tests/test_export.py runs).

Each runs tests/compat_check.py against outputs PyTorch computed here and saved to .npy. The venvs are
cached in .cache/compat/, keyed by everything that decides their contents; the package itself is rebuilt
and reinstalled each run. Each environment's figures are written to .cache/compat/report-<env>.json.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
import torch

from conftest import REPO, UV_ENV, rehash, trained, uv
from vae_edge.export import export_checkpoint
from vae_edge.export.int8_reference import reference_run
from vae_edge.export.quantize import BOUND
from vae_edge.runtime import random
from vae_edge.train import checkpoint
from vae_edge.train.config import Config
from vae_edge.train.model import VAE
from vae_edge.train.train import final_checkpoint

pytestmark = pytest.mark.slow
CACHE = REPO / ".cache" / "compat"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME_DEPS = PYPROJECT["project"]["dependencies"]
TRAIN_DEPS = PYPROJECT["project"]["optional-dependencies"]["train"]
SEED = 3  # compat_check.py samples with this seed
ROWS = 200


def python(version: str) -> str | None:
    """An interpreter of this minor version: pyenv's (not its shims, which answer for one version), or on PATH."""
    for root in sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob(f"{version}.*"), reverse=True):
        if (root / "bin" / "python").is_file():
            return str(root / "bin" / "python")
    found = shutil.which(f"python{version}")
    return found if found and "/shims/" not in found else None


def need_python(version: str) -> str:
    exe = python(version)
    if exe is None:
        msg = f"Python {version} is not installed (pyenv install {version}); the matrix needs it"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def venv(name: str, interpreter: str, requirements: list[str], resolution: str) -> Path:
    """A cached venv holding exactly `requirements`, resolved by uv at `resolution` (lowest-direct or highest)."""
    key = json.dumps([interpreter, requirements, resolution], sort_keys=True)
    env = CACHE / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (env / ".complete").is_file():
        return env
    shutil.rmtree(env, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run([uv(), *a], capture_output=True, text=True, env=UV_ENV)  # noqa: E731
    made = run("venv", "-q", "--python", interpreter, str(env))
    assert made.returncode == 0, made.stderr
    got = run("pip", "install", "-q", "--python", str(env / "bin" / "python"), "--resolution", resolution,
              *requirements)
    assert got.returncode == 0, got.stderr[-2000:]
    (env / ".complete").write_text(key)
    return env


def release(v: str) -> tuple[int, ...]:
    """'1.24' and '1.24.0' -> (1, 24, 0)."""
    parts = tuple(int(p) for p in v.split("."))
    return parts + (0,) * (3 - len(parts))


def floors(requirements: list[str]) -> dict:
    """{'numpy': (1, 24, 0), ...} from ["numpy>=1.24", ...]."""
    return {r.split(">=")[0]: release(r.split(">=")[1].split(",")[0]) for r in requirements if ">=" in r}


def versions(env: Path, *names: str) -> dict:
    code = ("import json, sys; from importlib.metadata import version; "
            "print(json.dumps({n: version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([str(env / "bin" / "python"), "-c", code, *names], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _checkpoint(arch: str, path: Path, **kw) -> VAE:
    cfg = Config(arch=arch, hidden_dim=64, **kw)
    torch.manual_seed(len(arch))
    model = trained(VAE.from_config(cfg.architecture()))
    checkpoint.save(final_checkpoint(model, cfg, []), path)
    return model


@torch.no_grad()
def _save_reference(model: VAE, prefix: Path) -> list[str]:
    """PyTorch's outputs on fresh random inputs, and on the z that the runtime's sample(seed=SEED) draws. 200 rows:
    int8's "at most 1% of the values off" needs a few hundred values (9 rows of 6 latents failed on 2 values)."""
    rng = np.random.default_rng()
    x = rng.random((ROWS, *model.input_shape), dtype=np.float32)
    z = rng.standard_normal((ROWS, model.latent_dim), dtype=np.float32)
    zs = random.gaussian(6 * model.latent_dim, SEED).reshape(6, model.latent_dim)
    mu, logvar = model.encode(torch.from_numpy(x))
    arrays = {"x": x, "z": z, "mu": mu.numpy(), "logvar": logvar.numpy(),
              "probs": model.probs(torch.from_numpy(z)).numpy(), "sample": model.probs(torch.from_numpy(zs)).numpy()}
    for k, v in arrays.items():
        np.save(f"{prefix}.{k}.npy", v)
    return list(arrays)


def _save_int8_reference(folder: Path, info: dict) -> list[str]:
    """What the int8 files give on the saved x and z by onnx's reference evaluator: the same on every CPU."""
    if not info["int8"]:
        return []
    x, z = (np.load(f"{folder}.{k}.npy") for k in ("x", "z"))
    np.save(f"{folder}.int8_mu.npy", reference_run(onnx.load(str(folder / "encoder.int8.onnx")), "mu", {"x": x}))
    np.save(f"{folder}.int8_probs.npy", reference_run(onnx.load(str(folder / "decoder.int8.onnx")), "x", {"z": z}))
    return ["int8_mu", "int8_probs"]


def _external_data(folder: Path, out: Path) -> dict:
    """A copy of folder whose decoder's largest initializer is stored at ../../secret (outside the folder), its
    sha256 and bytes rewritten in vae.json; the initializer's bytes beside it, which compat_check.py puts there."""
    shutil.copytree(folder, out)
    proto = onnx.load(str(out / "decoder.onnx"))
    tensor = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).nbytes)
    data = numpy_helper.to_array(tensor).tobytes()
    (out.parent / f"{out.name}.secret").write_bytes(data)
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../../secret"), ("offset", "0"), ("length", str(len(data)))):
        tensor.external_data.add(key=key, value=value)
    (out / "decoder.onnx").write_bytes(proto.SerializeToString())
    rehash(out, "decoder")
    return {"folder": out.name, "secret": f"{out.name}.secret"}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    """Checkpoints, their exports at the default opset (with int8), one export at opset 21, and PyTorch's outputs."""
    d = tmp_path_factory.mktemp("compat") / "fixtures"
    d.mkdir()
    models = {"mlp": _checkpoint("mlp", d / "mlp.pt", latent_dim=8),
              "conv": _checkpoint("conv", d / "conv.pt", latent_dim=6)}
    spec = {"models": {}, "too_new": "mlp-opset21", "cli": "mlp",
            "int8_bound": {"x": BOUND["x_mean_abs"], "mu": BOUND["mu_mean_abs"]}}
    for name, model in models.items():
        info = export_checkpoint(d / f"{name}.pt", d / name, quantize="int8")
        spec["models"][name] = {"arrays": _save_reference(model, d / name), "int8": info["int8"]}
        spec["models"][name]["arrays"] += _save_int8_reference(d / name, info)
    export_checkpoint(d / "mlp.pt", d / "mlp-opset21", opset=21)
    spec["external_data"] = _external_data(d / "mlp", d / "mlp-external")
    (d / "spec.json").write_text(json.dumps(spec))
    return d


def check(env: Path, fixtures: Path, name: str, *args: str) -> dict:
    r = subprocess.run([str(env / "bin" / "python"), str(REPO / "tests" / "compat_check.py"), str(fixtures), *args],
                       capture_output=True, text=True, cwd=fixtures.parent, timeout=300)
    assert r.stdout.strip(), r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    (CACHE / f"report-{name}.json").write_text(json.dumps(report, indent=2))
    assert r.returncode == 0 and not report["failures"], report["failures"]
    return report


def install(env: Path, wheel: Path) -> None:
    r = subprocess.run([uv(), "pip", "install", "-q", "--python", str(env / "bin" / "python"), "--no-deps",
                        "--reinstall", str(wheel)], capture_output=True, text=True,
                       env=UV_ENV)
    assert r.returncode == 0, r.stderr


def test_lowest_supported_versions_run_the_runtime_at_parity(wheel, fixtures):
    env = venv("runtime-lowest", need_python("3.10"), RUNTIME_DEPS, "lowest-direct")
    install(env, wheel)
    got = versions(env, "numpy", "onnxruntime", "pillow")
    assert {k: release(v) for k, v in got.items()} == floors(RUNTIME_DEPS), "pyproject.toml's floors are tested"
    assert got["numpy"].startswith("1.")
    report = check(env, fixtures, "runtime-lowest")
    assert report["too_new"].endswith(
        f"needs onnxruntime >= 1.18 (installed: {got['onnxruntime']}): it is ONNX IR version 10, opset 21; "
        f"upgrade onnxruntime, or re-export with vae-export --opset 17")
    # onnxruntime 1.12 alone reads a tensor from ../../secret; the runtime refused the folder (compat_check.py)
    assert report["external_data_onnxruntime_alone"].startswith("loaded")


def test_newest_versions_run_the_runtime_at_parity(wheel, fixtures):
    newest = next(filter(None, map(python, ("3.13", "3.12"))), sys.executable)
    env = venv("runtime-newest", newest, RUNTIME_DEPS, "highest")
    install(env, wheel)
    assert versions(env, "numpy")["numpy"].startswith("2.")
    report = check(env, fixtures, "runtime-newest")
    assert report["too_new"] == "loaded"


def cpu_torch(requirement: str) -> str:
    """The URL of the wheel that this machine's pip (its own indexes and find-links) installs for `requirement`,
    which must be a CPU build: PyPI's Linux wheels of torch are CUDA builds with 2.5 GB of dependencies."""
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "-q",
                        "--report", "-", requirement], capture_output=True, text=True)
    found = json.loads(r.stdout)["install"][0] if r.returncode == 0 and r.stdout.strip() else None
    if found is None or not found["metadata"]["version"].endswith("+cpu"):
        msg = f"pip finds no CPU build of {requirement} here ({found and found['download_info']['url']})"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return found["download_info"]["url"]


def test_lowest_train_dependencies_train_export_and_run_at_parity(wheel, fixtures, tmp_path):
    """torchvision is installed at its floor beside torch's, but not imported: PyPI's build of it is made for
    torch's CUDA build (its operators do not load on the CPU build), and nothing here needs it: it only
    downloads named datasets that are not on the machine."""
    lowest = floors(TRAIN_DEPS)  # the runtime's own floors: test_lowest_supported_versions_run_the_runtime_...
    torch_floor = ".".join(map(str, lowest["torch"]))
    requirements = [f"torch @ {cpu_torch(f'torch=={torch_floor}')}",
                    *[r for r in TRAIN_DEPS + RUNTIME_DEPS if not r.startswith("torch>")]]
    env = venv("train-lowest", sys.executable, requirements, "lowest-direct")
    install(env, wheel)
    got = versions(env, *lowest)
    assert {k: release(v.split("+")[0]) for k, v in got.items()} == lowest, "pyproject.toml's floors are tested"

    bin_dir = env / "bin"
    np.save(tmp_path / "images.npy", np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8))
    r = subprocess.run([bin_dir / "vae-train", "--dataset", tmp_path / "images.npy", "--epochs", "1", "--hidden-dim",
                        "16", "--latent-dim", "3", "--out-dir", tmp_path / "runs", "--name", "tiny"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "fixtures"
    shutil.copytree(fixtures, out)
    spec = json.loads((out / "spec.json").read_text())
    for name in spec["models"]:
        shutil.rmtree(out / name)
    # The run and the fixtures' checkpoints exported there, in one process: what vae-export does, less its command
    # line (typer at its floor runs vae-train above), as each process of torch
    # 2.13 spends about 10 s importing the exporter and building its operator table before the first graph
    exports = {tmp_path / "runs" / "tiny" / "model.pt": out / "tiny",
               **{out / f"{name}.pt": out / name for name in spec["models"]}}
    code = ("import sys; from vae_edge.export import export_checkpoint\n"
            "for pt, folder in zip(sys.argv[1::2], sys.argv[2::2]): export_checkpoint(pt, folder, quantize='int8')")
    r = subprocess.run([bin_dir / "python", "-c", code, *[str(p) for pair in exports.items() for p in pair]],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "tiny" / "vae.json").is_file()
    for name in spec["models"]:
        info = json.loads((out / name / "vae.json").read_text())
        spec["models"][name]["int8"] = info["int8"]
        _save_int8_reference(out / name, info)  # these int8 files were made by the lowest quantizer
    (out / "spec.json").write_text(json.dumps(spec))
    # The runtime in the same environment: the export's own parity check ran there; this is the runtime's.
    # onnxruntime 1.15's graph optimizer merges two QDQ pairs of different scales (DoubleQDQPairsRemover, around
    # the Reshape of a static int8 encoder that its own quantizer writes), so its mu strays from the file's
    # meaning: a mean 2.8e-4 measured here (1.4% of the 0.02 bound); onnxruntime 1.32 runs the same file
    # exactly, and 1.15 runs the files of newer quantizers exactly.
    report = check(env, out, "train-lowest", "--int8-mu-allowance=0.001")
    assert report["onnxruntime"] == got["onnxruntime"]

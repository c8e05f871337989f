"""The package as an ARM64 user gets it: the wheel, with ARM64 wheels of its dependencies from PyPI, run by Debian's
arm64 Python 3.11 under qemu, on two CPU generations (without and with the dot-product instructions that
onnxruntime's int8 kernels use) and at the lowest and newest onnxruntime with ARM64 wheels for that Python.

tests/arm64_check.py runs there against outputs saved here on x86; the C program (native/, cross-compiled) is
compared with the ARM64 Python runtime on the same CPU. Each run's figures go to .cache/arm64/report-*.json.
Correctness only: nothing under emulation is timed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import arm64
from conftest import REPO
from vae_edge.export import export_model
from vae_edge.runtime import VAE
from vae_edge.train.model import VAE as TorchVAE

pytestmark = [pytest.mark.slow, pytest.mark.emulated]
TOL = 1e-5
BUNDLED = "fashion-mnist"


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """Fixed inputs and the outputs computed here on x86, for the bundled model and an mlp export (int8 and .ort)."""
    d = tmp_path_factory.mktemp("arm64") / "fixtures"
    d.mkdir()
    torch.manual_seed(0)
    mlp = TorchVAE(arch="mlp").eval()
    export_model(mlp, d / "mlp", quantize="int8", ort_format=True)
    rng = np.random.default_rng()
    spec, x86 = {"models": {}}, {}
    for name, folder, model in [(BUNDLED, None, None), ("mlp", "mlp", mlp)]:
        fp32, int8 = VAE.load(folder and d / folder or name), VAE.load(folder and d / folder or name, precision="int8")
        x = rng.random((64, *fp32.input_shape), dtype=np.float32)
        z = rng.standard_normal((512, fp32.latent_dim), dtype=np.float32)
        if model is None:  # no checkpoint ships: the x86 runtime's fp32 stands for PyTorch (vae.json: parity)
            ref_probs, ref_mu = fp32.decode(z), fp32.encode(x)[0]
        else:
            with torch.no_grad():
                ref_probs = model.probs(torch.from_numpy(z)).numpy()
                ref_mu = model.encode(torch.from_numpy(x))[0].numpy()
        arrays = {"x": x, "z": z, "ref_probs": ref_probs, "ref_mu": ref_mu, "x86_int8_probs": int8.decode(z),
                  "x86_int8_mu": int8.encode(x)[0]}
        for k, v in arrays.items():
            np.save(d / f"{name}.{k}.npy", v)
        spec["models"][name] = {"folder": folder, "bound": fp32.meta["int8"]["bound"]}
        x86[name] = {"fp32_decode_max": float(np.abs(fp32.decode(z) - ref_probs).max()),
                     "int8_decode_mean": float(np.abs(arrays["x86_int8_probs"] - ref_probs).mean()),
                     "int8_decode_max": float(np.abs(arrays["x86_int8_probs"] - ref_probs).max()),
                     "int8_mu_mean": float(np.abs(arrays["x86_int8_mu"] - ref_mu).mean())}
    (d / "spec.json").write_text(json.dumps(spec))
    arm64.CACHE.mkdir(parents=True, exist_ok=True)
    (arm64.CACHE / "report-x86.json").write_text(json.dumps({"cpu": cpu_name(), **x86}, indent=2))
    return d


def cpu_name() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@pytest.fixture(scope="module")
def package(wheel, tmp_path_factory):  # noqa: F811
    """The wheel, installed (no dependencies: they are the ARM64 wheels) into a folder for PYTHONPATH."""
    arm64.provision()
    target = tmp_path_factory.mktemp("package")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return target


@pytest.mark.parametrize("onnxruntime_release", list(arm64.ONNXRUNTIME))
@pytest.mark.parametrize("cpu", list(arm64.CPUS))
def test_the_wheel_samples_and_agrees_with_x86_on_arm64(package, fixtures, tmp_path, cpu, onnxruntime_release):
    site = arm64.wheels([*arm64.ONNXRUNTIME[onnxruntime_release], "pillow"])
    env = {"PYTHONPATH": f"{package}:{site}", "PYTHONNOUSERSITE": "1"}
    (tmp_path / "run").mkdir()
    (tmp_path / "out").mkdir()
    # vae-sample --n 64 in an empty folder (the bundled model), vae-info verifying its files: run through
    # python -m, as an ARM64 program cannot start another here (no binfmt: each goes through qemu)
    r = arm64.run(cpu, arm64.PYTHON, "-m", "vae_edge.runtime", "sample", "--n", 64, "--out", "samples.png", env=env,
                  cwd=tmp_path / "run")
    assert r.returncode == 0 and (tmp_path / "run" / "samples.png").is_file(), r.stderr[-2000:]
    r = arm64.run(cpu, arm64.PYTHON, "-m", "vae_edge.runtime", "info", env=env, cwd=tmp_path / "run")
    files = len(json.loads((REPO / "runtime" / "models" / BUNDLED / "vae.json").read_text())["files"])
    assert r.returncode == 0 and f"ok: {files} files verified" in r.stdout, r.stderr[-2000:]
    r = arm64.run(cpu, arm64.PYTHON, REPO / "tests" / "arm64_check.py", fixtures, tmp_path / "out", env=env)
    assert r.stdout.strip(), r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    report["cpu"] = f"{cpu}: {arm64.CPUS[cpu]}"
    (arm64.CACHE / f"report-{cpu}-{onnxruntime_release}.json").write_text(json.dumps(report, indent=2))
    assert r.returncode == 0 and not report["failures"], report["failures"]
    assert report["onnxruntime"].startswith("1.15.") == (onnxruntime_release == "lowest")
    if onnxruntime_release == "newest":
        assert "ort_vs_onnx" in report["mlp"]["int8"], "the .ort files were loaded"
        c_program_agrees(cpu, site, fixtures, tmp_path / "out")


def c_program_agrees(cpu: str, site, fixtures, out) -> None:
    """The C program, on the same CPU with the same onnxruntime, decodes z as the ARM64 Python runtime did."""
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        arm64.missing("aarch64-linux-gnu-gcc is not installed: apt-get install gcc-aarch64-linux-gnu")
    made = subprocess.run(["make", "-s", "native-arm64"], cwd=REPO, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    exe = REPO / "build" / "native-arm64" / "vae-sample"
    for name, folder in [(BUNDLED, REPO / "runtime" / "models" / BUNDLED), ("mlp", fixtures / "mlp")]:
        for precision in ("fp32", "int8"):
            r = arm64.run(cpu, exe, "--onnxruntime", arm64.onnxruntime_library(site), "--model", folder,
                          "--precision", precision, "--z", fixtures / f"{name}.z.npy", "--npy", out / "c.npy",
                          "--no-image")
            assert r.returncode == 0, r.stderr[-2000:]
            np.testing.assert_allclose(np.load(out / "c.npy"), np.load(out / f"{name}.{precision}.npy"), rtol=0,
                                       atol=TOL)

"""ARM64 on this x86 machine, for the tests: qemu-aarch64 and Debian's arm64 root (`make arm64`, which unpacks
them into .cache/arm64), and ARM64 wheels from PyPI installed with pip --target (cached there too, keyed by the
requirements). Nothing is compiled under emulation, and nothing here is timed: emulation says nothing of speed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CACHE = REPO / ".cache" / "arm64"
ROOT = CACHE / "root"
QEMU = CACHE / "qemu" / "usr" / "bin" / "qemu-aarch64"
PYTHON = ROOT / "usr" / "bin" / "python3.11"  # Debian bookworm's arm64 Python
PYTHON_VERSION = "3.11"
PLATFORMS = ["manylinux_2_28_aarch64", "manylinux2014_aarch64"]  # glibc 2.36 runs both
# The two CPU generations: qemu's model names, and what they stand for.
CPUS = {
    "cortex-a72": "Cortex-A72 (Raspberry Pi 4), ARMv8.0: no dot product",
    "max": "qemu's max (ARMv9 features): dot product (SDOT/UDOT) and i8mm",
}
# The lowest and newest onnxruntime with ARM64 wheels for Python 3.11 (none below 1.15), with their numpy; and for
# the C program, the lowest whose wheel ships libonnxruntime.so (1.19: before, the Python module holds it all).
ONNXRUNTIME = {"lowest": ["onnxruntime==1.15.*", "numpy<2"], "newest": ["onnxruntime", "numpy"]}
ONNXRUNTIME_C = {"lowest": "onnxruntime==1.19.*", "newest": "onnxruntime"}


def missing(what: str) -> None:
    """Skip, with the reason; in CI (which installs everything) fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(what)
    pytest.skip(what)


def provision() -> None:
    """qemu and the arm64 root, fetched with apt by `make arm64` (a no-op once cached)."""
    for tool in ("apt-get", "dpkg-deb", "make"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed: the ARM64 tests unpack Debian's arm64 packages with apt")
    r = subprocess.run(["make", "-s", "arm64"], cwd=REPO, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        missing(f"make arm64 failed (no Debian mirror reachable?): {r.stderr.strip().splitlines()[-1:]}")


def wheels(requirements: list[str], platforms: list[str] = PLATFORMS, deps: bool = True) -> Path:
    """A folder (for PYTHONPATH) holding wheels of these requirements (and their dependencies, unless deps=False)
    for Python 3.11 on these platforms: ARM64 by default."""
    key = json.dumps([requirements, platforms, deps, PYTHON_VERSION])
    target = CACHE / f"wheels-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (target / ".complete").is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    tags = [a for p in platforms for a in ("--platform", p)]
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), *tags,
                        *([] if deps else ["--no-deps"]),
                        "--only-binary=:all:", "--python-version", PYTHON_VERSION, *requirements],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        missing(f"pip could not fetch ARM64 wheels of {requirements}: {r.stderr.strip().splitlines()[-1:]}")
    (target / ".complete").write_text(key)
    return target


def onnxruntime_library(site: Path) -> Path:
    return next((site / "onnxruntime" / "capi").glob("libonnxruntime.so.*"))


def run(cpu: str, *argv, env: dict | None = None, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """An ARM64 program run by qemu on the CPU model `cpu`, its libraries from the arm64 root."""
    return subprocess.run([str(QEMU), "-L", str(ROOT), "-cpu", cpu, *map(str, argv)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)

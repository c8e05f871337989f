"""The noise a seed draws (docs/noise.md), the same bits in Python, JavaScript and C: the known answers of
tests/conformance/noise.json in each language (C on x86-64 and, under qemu, ARM64), numpy's scalar and SIMD
paths alike, the draw's properties, and the same pictures for a seed from Python, Node.js and C.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import arm64
from conftest import REPO
from vae_edge.export import export_model
from vae_edge.runtime import VAE, random
from vae_edge.train.model import VAE as TorchVAE

CONFORMANCE = REPO / "tests" / "conformance"
KNOWN = json.loads((CONFORMANCE / "noise.json").read_text())
BUNDLED = REPO / "runtime" / "models" / "fashion-mnist"  # a VampPrior's folder (format 2)
TOL = 1e-5  # the decoders' fp32 tolerance: what the export's parity check holds ONNX to against PyTorch
CFLAGS = re.search(r"^NATIVE_CFLAGS \?= (.*)$", (REPO / "Makefile").read_text(), re.M)[1].split()  # the library's


def bits(x: np.ndarray) -> list[str]:
    return [f"{w:08x}" for w in np.asarray(x, np.float32).view(np.uint32).ravel()]


def fresh_seed() -> int:
    return int(np.random.default_rng().integers(0, 2**53))


# -- the known answers ------------------------------------------------------------------------------------

def test_philox_gives_random123s_known_answers():
    for row in KNOWN["philox4x32_10"]:
        key, counter = (int(w, 16) for w in row["key"]), [int(w, 16) for w in row["counter"]]
        k0, k1 = key
        assert [f"{int(w[0]):08x}" for w in random.philox(k0 | k1 << 32, *counter)] == row["block"]


@pytest.mark.parametrize("seed", [row["seed"] for row in KNOWN["seeds"]])
def test_each_seed_draws_the_known_numbers_of_each_stream_bit_for_bit(seed):
    row = next(r for r in KNOWN["seeds"] if r["seed"] == seed)
    assert bits(random.gaussian(len(row["eps"]), seed)) == row["eps"]
    assert bits(random.uniform(len(row["u"]), seed)) == row["u"]


def test_the_known_answers_are_what_make_noise_writes(tmp_path):
    """make_noise.py computes them one number at a time from the spec, without runtime/random.py."""
    shutil.copy(CONFORMANCE / "make_noise.py", tmp_path)
    subprocess.run([sys.executable, tmp_path / "make_noise.py"], check=True, capture_output=True, timeout=60)
    assert (tmp_path / "noise.json").read_bytes() == (CONFORMANCE / "noise.json").read_bytes(), "run make_noise.py"


def test_numpys_scalar_path_draws_what_its_simd_path_draws():
    """A batch of 1 runs numpy's scalar loops, a batch of 1024 its SIMD ones: the same IEEE results."""
    seed = fresh_seed()
    batch = random.gaussian(1024, seed)
    one = [random.gaussian(1, seed, j)[0] for j in range(0, 1024, 37)]
    assert bits(one) == bits(batch[::37])


# -- the draw's properties ---------------------------------------------------------------------------------

def test_any_range_of_a_stream_is_the_slice_of_one_long_draw():
    seed = fresh_seed()
    long, long_u = random.gaussian(1000, seed), random.uniform(100, seed)
    for start, n in [(0, 1), (1, 2), (3, 7), (5, 500), (998, 2)]:
        assert bits(random.gaussian(n, seed, start)) == bits(long[start:start + n])
    for start, n in [(0, 1), (2, 5), (7, 93)]:
        assert bits(random.uniform(n, seed, start)) == bits(long_u[start:start + n])
    runs = random.gaussian_runs(seed, [0, 5, 998], 2)
    assert bits(runs) == bits(np.stack([long[0:2], long[5:7], long[998:1000]]))


def test_the_streams_and_the_seeds_draw_apart():
    assert not np.array_equal(random.gaussian(20, 2**32), random.gaussian(20, 0))
    assert not np.array_equal(random.uniform(20, 2**40 + 5), random.uniform(20, 5))


def test_log_exact_is_within_2_ulp_of_the_true_log():
    rng = np.random.default_rng()
    m, e = rng.uniform(0.5, 1, 100_000), rng.integers(-60, 1, 100_000).astype(np.float64)
    want = np.array([math.log(a) + b * math.log(2) for a, b in zip(m, e)])
    got = random.log_exact(m.copy(), e.copy())  # it works in place
    assert np.all(np.abs(got - want) <= 2 * np.spacing(np.abs(want)) + np.abs(e) * 2.0**-53)


def test_the_normals_are_standard_normal_and_the_pairs_independent():
    x = random.gaussian(400_000, fresh_seed()).astype(np.float64)
    assert abs(x.mean()) < 0.01 and abs(x.var() - 1) < 0.01
    assert abs(np.mean(np.abs(x) > 2) - 0.0455) < 0.002  # P(|x| > 2) of N(0, 1)
    a, b = x[0::2], x[1::2]
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01 and abs(np.corrcoef(a * a, b * b)[0, 1]) < 0.01


def test_the_uniforms_are_24_bit_multiples_in_0_1_evenly_spread():
    u = random.uniform(100_000, fresh_seed()).astype(np.float64)
    assert u.min() >= 0 and u.max() < 1 and np.all(u * 2**24 == np.floor(u * 2**24))
    assert np.all(np.abs(np.bincount((u * 10).astype(int), minlength=10) - 10_000) < 500)


# -- C: the known answers, on x86-64 and ARM64 --------------------------------------------------------------

def _c_noise(compiler: str, out, *extra: str):
    if shutil.which(compiler) is None:
        arm64.missing(f"{compiler} is not installed: it compiles tests/noise.c")
    r = subprocess.run([compiler, *CFLAGS, *extra, f"-I{REPO / 'native'}", str(REPO / "tests" / "noise.c"), "-lm",
                        "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def _check_c(run) -> None:
    for row in KNOWN["philox4x32_10"]:
        assert run("philox", *row["key"], *row["counter"]).decode().split() == row["block"]
    for row in KNOWN["seeds"]:
        for stream in ("eps", "u"):
            got = np.frombuffer(run(stream, row["seed"], len(row[stream])), np.float32)
            assert bits(got) == row[stream], f"{stream} of seed {row['seed']}"


def test_the_c_library_is_compiled_without_fused_multiply_adds():
    """A fused a * b + c rounds once where Python and JavaScript round twice (docs/noise.md); GCC's -std=c99
    implies -ffp-contract=off, clang's does not."""
    assert "-ffp-contract=off" in CFLAGS


def test_c_draws_the_known_numbers_bit_for_bit(tmp_path):
    exe = _c_noise("cc", tmp_path / "noise")
    _check_c(lambda *a: subprocess.run([exe, *map(str, a)], check=True, capture_output=True).stdout)


@pytest.mark.emulated
@pytest.mark.parametrize("cpu", list(arm64.CPUS))
def test_c_on_arm64_draws_the_known_numbers_bit_for_bit(tmp_path, cpu):
    """A static ARM64 build under qemu: its own libm, and a CPU whose compilers like to fuse multiply-adds."""
    qemu = next((q for q in (str(arm64.QEMU), shutil.which("qemu-aarch64-static"), shutil.which("qemu-aarch64"))
                 if q and shutil.which(q)), None)
    if qemu is None:
        arm64.missing("no qemu-aarch64: make arm64, or apt-get install qemu-user-static")
    exe = _c_noise("aarch64-linux-gnu-gcc", tmp_path / "noise-arm64", "-static")
    _check_c(lambda *a: subprocess.run([qemu, "-cpu", cpu, exe, *map(str, a)], check=True, capture_output=True,
                                       timeout=120).stdout)


# -- the same pictures --------------------------------------------------------------------------------------

NODE_SAMPLES = """
import {VAE} from './src/node.js';
const [folder, ...runs] = process.argv.slice(1);
const vae = await VAE.load(folder, {decoderOnly: true});
for (const run of runs) {
  const [n, seed, temperature] = run.split(',').map(Number);
  const x = await vae.sample(n, {seed, temperature});
  process.stdout.write(Buffer.from(x.buffer, x.byteOffset, x.byteLength));
}
"""


@pytest.fixture(scope="module")
def mlp_folder(tmp_path_factory):
    torch.manual_seed(5)
    folder = tmp_path_factory.mktemp("noise-mlp") / "vae-onnx"
    export_model(TorchVAE(arch="mlp", hidden_dim=64, latent_dim=6).eval(), folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "bundled"])
def test_a_seed_gives_the_same_pictures_in_python_node_and_c(model, mlp_folder, tmp_path):
    """sample(64, seed, temperature) of one folder (a format-1 mlp, the bundled VampPrior) from the three readers:
    the same noise bits, so the images agree within the decoders' fp32 tolerance."""
    from test_native import make, vae_sample  # the C build and its runner, as test_native.py uses them

    folder = mlp_folder if model == "mlp" else BUNDLED
    runs = [(64, fresh_seed(), 1.0), (64, fresh_seed(), 0.6), (64, 2**53 - 1, 1.4)]
    python = [VAE.load(folder).sample(n, seed=s, temperature=t) for n, s, t in runs]
    if shutil.which("node") is None:
        arm64.missing("Node.js is not installed")
    js = subprocess.run(["node", "--input-type=module", "-e", NODE_SAMPLES, str(folder),
                         *(f"{n},{s},{t!r}" for n, s, t in runs)], cwd=REPO / "web", capture_output=True, timeout=300)
    assert js.returncode == 0, js.stderr.decode()[-2000:]
    node = np.frombuffer(js.stdout, np.float32).reshape(len(runs), *python[0].shape)
    make("native")
    for i, (n, s, t) in enumerate(runs):
        np.testing.assert_allclose(node[i], python[i], rtol=0, atol=TOL, err_msg=f"Node, seed {s}, t {t}")
        r = vae_sample(REPO / "build" / "native" / "vae-sample", "--model", folder, "--n", n, "--seed", s,
                       "--temperature", repr(t), "--npy", tmp_path / "x.npy", "--no-image")
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(np.load(tmp_path / "x.npy"), python[i], rtol=0, atol=TOL, err_msg=f"C, seed {s}")

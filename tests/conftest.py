"""Shared fixtures: small synthetic data, the real Fashion-MNIST where present, and CLI runners."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

# Under make test's pytest-xdist workers, each worker's torch (and the commands it starts) takes its share of the
# cores, not all of them: two workers of two threads each on two cores would stall each other's parallel loops.
# An OMP_NUM_THREADS already set wins. Set before torch is first imported (no test module has been yet).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

BIN = Path(sys.executable).parent  # the venv's console scripts sit beside its python
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# The files that take longest (the slowest tests of a full run), run first: make test's workers take whole files
# from a queue in collection order (--no-loadscope-reorder), so that no worker is left with a long file at the end
# while the other waits. The rest follow in alphabetical order.
LONGEST_FIRST = ("test_likelihood.py", "test_compat.py", "test_train.py", "test_web.py", "test_runtime_cli.py",
                 "test_distributed.py", "test_prior_folder.py", "test_export.py", "test_int8.py", "test_native.py")


def pytest_collection_modifyitems(config, items):
    """The longest files first; tests marked gpu skipped, with the reason, where torch sees no CUDA device."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order is kept
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        why = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False here")
        for item in gpu:
            item.add_marker(why)


def pytest_collection_finish(session):
    """Where the tests import torch, torch.onnx.export reads its graphs from .cache/exported/ (tests/exported.py)."""
    if "torch" in sys.modules:
        import exported

        exported.install()


@pytest.fixture
def opened(monkeypatch) -> Counter:
    """How many times each file of a model folder is opened (by name), from here on in this test."""
    from vae_edge.runtime import folder as runtime_folder

    count, real = Counter(), runtime_folder.open_inside

    def counting(folder, path):
        count[Path(path).name] += 1
        return real(folder, path)
    monkeypatch.setattr(runtime_folder, "open_inside", counting)
    return count
@pytest.fixture(scope="session", autouse=True)
def image_cache(tmp_path_factory):
    """Image folders decode into a cache (train/image_cache.py): the tests' own, never the user's ~/.cache."""
    os.environ["VAE_EDGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("image-cache"))
    yield
    os.environ.pop("VAE_EDGE_CACHE_DIR", None)


@pytest.fixture(autouse=True)
def fresh_graphs(request):
    """Tests marked fresh_graphs, which are about the exporter itself, export with torch.onnx.export each time."""
    exported = sys.modules.get("exported")
    if exported is None or not request.node.get_closest_marker("fresh_graphs"):
        yield
        return
    exported.fresh = True
    yield
    exported.fresh = False


def blobs(n: int = 96, size: int = 8, channels: int = 1, seed: int = 0) -> np.ndarray:
    """n uint8 images [n, C, size, size] of soft random blobs: learnable, unlike noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(1, size - 1, (2, n, 1, 1))
    r = rng.uniform(1, size / 3, (n, 1, 1))
    img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2))
    return np.repeat((img * 255).astype(np.uint8)[:, None], channels, axis=1)


@pytest.fixture
def tiny_npy(tmp_path) -> Path:
    """An .npy file of 96 8x8 grayscale images."""
    path = tmp_path / "tiny.npy"
    np.save(path, blobs())
    return path


@pytest.fixture
def fashion_mnist() -> Path:
    """Debian's Fashion-MNIST; a test that needs it fails in CI instead of skipping."""
    if (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        return FASHION_MNIST
    msg = f"Fashion-MNIST is not installed in {FASHION_MNIST} (apt-get install dataset-fashion-mnist)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def need(ok: bool, msg: str) -> None:
    """A missing tool fails the test in CI (which installs everything) and skips it elsewhere."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def run_cli(cmd: str, *args, cwd=None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run one of our console scripts and capture its output."""
    return subprocess.run([str(BIN / cmd), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


@dataclass
class Ran:
    """What a console script's entry function did when run in this process: its exit code, stdout and stderr."""
    exit_code: int
    stdout_bytes: bytes
    stderr: str

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode()


def invoke(main: Callable[[], None], *args) -> Ran:
    """Run a console script's entry function (cli.sample_main, ...) on args here, capturing what it writes: text
    and binary stdout (sys.stdout.buffer) alike."""
    out, err = io.BytesIO(), io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    argv, sys.argv = sys.argv, [main.__name__, *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    finally:
        sys.argv = argv
        stdout.flush()
    return Ran(code, out.getvalue(), err.getvalue())


def write_png_file(path: Path, image: np.ndarray) -> None:
    """A uint8 (C, H, W) image as a PNG file, its folders made."""
    from vae_edge.runtime.png import write_png

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        write_png(f, image.transpose(1, 2, 0))


def image_folder(root: Path) -> list[Path]:
    """a0..a3.png at the top, sub/b0..b2.png below (8 x 8 blobs), a .txt that no image walk takes, a hidden file;
    returns the image paths in walk order."""
    images = blobs(7)
    paths = [root / f"a{i}.png" for i in range(4)] + [root / "sub" / f"b{i}.png" for i in range(3)]
    for path, image in zip(paths, images):
        write_png_file(path, image)
    (root / "notes.txt").write_text("not an image")
    write_png_file(root / ".hidden.png", images[0])
    return paths


# A command's main run in this process, its peak resident memory (KiB) printed last on stderr.
PEAK = ("import importlib, resource, sys; module, main = sys.argv.pop(1).split(':')\n"
        "try:\n    getattr(importlib.import_module(module), main)()\n"
        "finally:\n    print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")


def peak_kib(main: str, *args) -> int:
    """The peak resident memory in KiB of one run of main ('vae_edge.runtime.cli:encode_main') on args."""
    r = subprocess.run([sys.executable, "-c", PEAK, main, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return int(r.stderr.split("peak ")[-1])


def copy_export(folder: Path, tmp_path: Path) -> Path:
    """A scratch copy of an export folder, to tamper with."""
    dst = tmp_path / "model-copy"
    shutil.copytree(folder, dst)
    return dst


def rehash(folder: Path, key: str) -> None:
    """Make vae.json's sha256 and bytes for files[key] match whatever is on disk now."""
    meta = json.loads((folder / "vae.json").read_text())
    data = (folder / meta["files"][key]["path"]).read_bytes()
    meta["files"][key].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (folder / "vae.json").write_text(json.dumps(meta))


def trained(model, steps: int = 5, seed: int = 0):
    """A few Adam steps on the negative ELBO of random data, so weights are no longer at init."""
    import torch

    from vae_edge.train.model import elbo_terms

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        x = torch.rand((32, *model.input_shape), generator=g)
        eps = torch.randn((32, model.latent_dim), generator=g)
        rec, kl = elbo_terms(model, x, eps)
        loss = (rec + kl).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def learned_prior_model(prior="vamp", layers=2, latent=4, shape=(1, 8, 8), seed=0, components=5):
    """A small MLP VAE with a learned prior (format 2 when exported): its VampPrior's components apart from one
    another, so that u (which component) changes a sample."""
    import torch

    from vae_edge.train.model import VAE

    torch.manual_seed(seed)
    m = VAE("mlp", shape, 32, latent, prior=prior, prior_components=components, latent_layers=layers)
    with torch.no_grad():
        if prior == "vamp":
            m.vamp.pseudo_inputs.copy_(torch.rand_like(m.vamp.pseudo_inputs))
        m.fc21.weight.mul_(4)  # components apart from one another
    return trained(m, steps=3).eval()


@pytest.fixture(scope="session")
def vamp_export(tmp_path_factory) -> Path:
    """learned_prior_model() (a VampPrior of 5 components, two latent layers, latent_dim 4, 1 x 8 x 8 images)
    exported with int8 files: a format-2 folder (prior.onnx, score.onnx). Read-only: copy it before changing it."""
    from vae_edge.export import export_model

    folder = tmp_path_factory.mktemp("vamp") / "vae-onnx"
    export_model(learned_prior_model(), folder, quantize="int8", force_int8=True)
    return folder


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """A small MLP VAE (1 x 8 x 8 images, latent_dim 3) exported with int8 files: fast to load, to copy and to
    tamper with. Read-only: copy it before changing anything."""
    import torch

    from vae_edge.export import export_model
    from vae_edge.train.model import VAE

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny") / "vae-onnx"
    export_model(trained(VAE("mlp", (1, 8, 8), 16, 3)), folder, quantize="int8", force_int8=True)
    return folder


@pytest.fixture(scope="session")
def conv64_export(tmp_path_factory) -> tuple:
    """(torch model, export folder, vae.json) of a 64x64 RGB conv (three stride-2 stages: train/model.py's rule)
    at a small hidden size, trained a few steps, exported with int8 calibrated on 64x64 colour blobs and kept
    only within the bound (not forced). Read-only: copy it before changing anything."""
    import torch

    from vae_edge.export import export_model
    from vae_edge.train.model import VAE

    torch.manual_seed(64)
    model = trained(VAE("conv", (3, 64, 64), hidden_dim=16, latent_dim=4), steps=3)
    root = tmp_path_factory.mktemp("conv64")
    np.save(root / "images.npy", blobs(64, size=64, channels=3))
    folder = root / "vae-onnx"
    return model, folder, export_model(model, folder, quantize="int8", calibration=str(root / "images.npy"))


# -- the package as users get it: built once a run, shared by test_bundled, test_compat and test_torch_free ------

# Left out of the copy that gets built: environments, build output, data, caches (hypothesis's too, which the other
# worker may be writing while this copy is made), the web library's modules.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".cache", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".hypothesis", "data", "runs", "vae-onnx", "*.pt", "*.npy",
                                    "node_modules", "site")
UV_ENV = {**os.environ, "UV_CACHE_DIR": str(REPO / ".cache" / "uv")}


def uv() -> str:
    exe = shutil.which("uv", path=str(BIN)) or shutil.which("uv")
    if exe is None:
        pytest.fail("uv is not installed: pip install -e '.[dev]'")
    return exe


def once_per_run(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder that make(folder) fills once per pytest run, shared by pytest-xdist's workers (make test runs two):
    the first worker to ask makes it in place (a venv cannot move) while the others wait on a lock, then all read
    it. A make that fails is not marked done, so each worker that asks tries again and fails with make's message."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Path:
    """`uv build` of a copy of this checkout (the build writes nothing here): a wheel and an sdist, as `make dist`."""
    def build(out: Path) -> None:
        src = tmp_path_factory.mktemp("src") / "vae-edge"
        shutil.copytree(REPO, src, ignore=NOT_SOURCE)
        r = subprocess.run([uv(), "build", "-q", "--out-dir", str(out), str(src)], capture_output=True, text=True,
                           env=UV_ENV)
        assert r.returncode == 0, r.stderr[-2000:]

    return once_per_run(tmp_path_factory, "dist", build)


@pytest.fixture(scope="session")
def wheel(dist) -> Path:
    return next(dist.glob("*.whl"))


@pytest.fixture(scope="session")
def base_install(wheel, tmp_path_factory) -> tuple[Path, dict]:
    """(bin folder, environment) of a fresh venv holding `pip install vae-edge`: the wheel and the runtime's
    dependencies, never torch. One a run, shared by the workers. Read-only: tests run its commands in folders of
    their own."""
    env = {k: v for k, v in UV_ENV.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}

    def install(folder: Path) -> None:
        venv = folder / "venv"
        subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
        r = subprocess.run([uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-2000:]

    return once_per_run(tmp_path_factory, "base-install", install) / "venv" / "bin", env


@pytest.fixture(scope="session")
def mlp_int8(tmp_path_factory):
    """(torch model, export folder) of the reference MLP (28 x 28, hidden 400, latent 20) at init, exported with
    int8 files once a run; shared by test_runtime, test_torch_free and test_native. Read-only: copy_export it to
    tamper with it."""
    import torch

    from vae_edge.export import export_model
    from vae_edge.train.model import VAE

    torch.manual_seed(sum(map(ord, "mlp")))
    model = VAE(arch="mlp").eval()  # the same weights in every worker: the seed decides them
    folder = once_per_run(tmp_path_factory, "mlp", lambda out: export_model(model, out / "vae-onnx", quantize="int8"))
    return model, folder / "vae-onnx"

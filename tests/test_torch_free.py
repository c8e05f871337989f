"""vae_edge.runtime needs no torch: its imports are checked, and a fresh venv runs vae-sample without torch."""
import ast
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "runtime"
ALLOWED = {"numpy", "onnxruntime", "typer", "PIL"}
# Left out of the copy that gets installed: environments, build output, data, caches.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    "data", "runs", "vae-onnx", "*.pt", "*.npy", ".whl", ".gl")


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_imports_only_numpy_onnxruntime_typer_pillow_and_the_standard_library():
    files = sorted(RUNTIME.glob("*.py"))
    assert files
    for path in files:
        bad = _imported_modules(path) - ALLOWED - set(sys.stdlib_module_names) - {"__future__"}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_importing_the_runtime_loads_neither_torch_nor_pillow():
    code = ("import sys, vae_edge.runtime, vae_edge.runtime.cli; "
            "print(sorted(m for m in ('torch', 'PIL', 'vae_edge.train', 'vae_edge.export') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from vae_edge.export import export_model
    from vae_edge.train.model import VAE

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("torch-free") / "vae-onnx"
    export_model(VAE("mlp"), folder)
    return folder


@pytest.mark.slow
def test_a_fresh_venv_with_the_base_install_samples_without_torch(exported, tmp_path):
    # Install a copy of the source tree, so the build writes nothing into the checkout.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False, clear=True)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    pip = subprocess.run([bin_dir / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q", str(src)],
                         capture_output=True, text=True, env=env)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]

    no_torch = subprocess.run([bin_dir / "python", "-c", "import torch"], capture_output=True, text=True, env=env)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr

    out = tmp_path / "samples.png"
    r = subprocess.run([bin_dir / "vae-sample", "--n", "64", "--model", str(exported), "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    check = ("import sys; from PIL import Image; im = Image.open(sys.argv[1]); "
             "print(im.format, im.mode, im.size[0], im.size[1])")
    png = subprocess.run([bin_dir / "python", "-c", check, str(out)], capture_output=True, text=True, env=env)
    assert png.stdout.split() == ["PNG", "L", "242", "242"], png.stderr

    api = ("import sys; from vae_edge.runtime import VAE; x = VAE.load(sys.argv[1]).sample(3, seed=0); "
           "print(x.shape, 'torch' in sys.modules)")
    r = subprocess.run([bin_dir / "python", "-c", api, str(exported)], capture_output=True, text=True, env=env)
    assert r.stdout.split("\n")[0] == "(3, 1, 28, 28) False", r.stderr

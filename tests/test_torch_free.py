"""vae_edge.runtime needs no torch: its imports are checked, plain runs load nothing they do not use, and a fresh
venv with the base install runs every runtime command without torch."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUNTIME = REPO / "runtime"
ALLOWED = {"numpy", "onnxruntime", "typer", "PIL"}


PACKAGE = "vae_edge.runtime"
VERSION = "vae_edge.__version__"  # `from .. import __version__`: version/__init__.py, which imports nothing
DYNAMIC = {"import_module", "__import__"}  # importlib.import_module(name), __import__(name)


def _resolve(name: str, level: int) -> str:
    """The absolute name of an import written in a module of vae_edge.runtime ("..train" -> vae_edge.train)."""
    if level == 0:
        return name
    base = PACKAGE.rsplit(".", level - 1)[0] if level > 1 else PACKAGE
    return f"{base}.{name}" if name else base


def _imported_modules(source: str, filename: str = "<runtime>") -> set[str]:
    """Every module a runtime source file imports, wherever the import sits (functions included).

    Absolute imports give their top-level name (numpy); relative ones and vae_edge's own give the full
    name (vae_edge.train), so a `from ..train import x` is seen. Dynamic imports count too:
    importlib.import_module("x") and __import__("x") with a literal name; with a computed name the
    check cannot know the module, so it reports "<computed>".
    """
    names = set()

    def add(name: str, level: int = 0) -> None:
        full = _resolve(name, level)
        names.add(full if full.startswith("vae_edge") else full.split(".")[0])

    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.module is None:  # from . import x, from .. import train: x and train are modules
                for a in node.names:
                    add(a.name, node.level)
            else:
                add(node.module, node.level)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in DYNAMIC and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    literal = arg.value
                    dots = len(literal) - len(literal.lstrip("."))
                    add(literal[dots:], dots)
                else:
                    names.add("<computed>")
    return names


def _not_allowed(names: set[str]) -> set[str]:
    return {n for n in names if not (n in ALLOWED or n in sys.stdlib_module_names or n == "__future__"
                                     or n == PACKAGE or n.startswith(PACKAGE + ".") or n == VERSION)}


def test_runtime_imports_only_numpy_onnxruntime_typer_pillow_and_the_standard_library():
    files = sorted(RUNTIME.glob("*.py"))
    assert files
    for path in files:
        bad = _not_allowed(_imported_modules(path.read_text(), str(path)))
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_package_root_that_holds_the_version_imports_nothing():
    assert _imported_modules((REPO / "version" / "__init__.py").read_text()) == set()


@pytest.mark.parametrize("source,caught", [
    ("import torch", "torch"),
    ("def f():\n    from torch.nn import functional", "torch"),
    ("def f():\n    from ..train import checkpoint", "vae_edge.train"),
    ("from .. import export", "vae_edge.export"),
    ("from ..export.export import export_model", "vae_edge.export.export"),
    ("import vae_edge.train.model", "vae_edge.train.model"),
    ("import importlib\nm = importlib.import_module('torch')", "torch"),
    ("from importlib import import_module\nm = import_module('..export', __package__)", "vae_edge.export"),
    ("m = __import__('torchvision.utils')", "torchvision"),
    ("import importlib\nm = importlib.import_module(name)", "<computed>"),
])
def test_the_import_check_sees_relative_function_level_and_dynamic_imports(source, caught):
    assert caught in _not_allowed(_imported_modules(source))


@pytest.mark.parametrize("source", ["from .model import VAE", "from . import images", "import numpy as np",
                                    "from PIL import Image", "import importlib\nm = importlib.import_module('json')"])
def test_the_import_check_allows_the_runtime_itself_its_dependencies_and_the_standard_library(source):
    assert not _not_allowed(_imported_modules(source))


@pytest.fixture(scope="module")
def exported(mlp_int8):
    return mlp_int8[1]


# What a run of a runtime command must not load: the training side and torch, a CLI stack (the runtime parses
# with argparse; typer is the training side's) and Pillow, whose imports cost more than the rest of the run
# (bench/cold_start.py).
NOT_ON_A_PLAIN_RUN = ["torch", "torchvision", "onnx", "typer", "click", "rich", "pydantic", "pydantic_core",
                      "shellingham", "PIL", "vae_edge.train", "vae_edge.export"]


def _modules_loaded(args: list, cwd: Path) -> set[str]:
    """Every module a console script's run imports, from `python -X importtime`."""
    r = subprocess.run([sys.executable, "-X", "importtime", str(BIN / args[0]), *map(str, args[1:])],
                       capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}


def _listed(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == x or m.startswith(x + ".") for x in NOT_ON_A_PLAIN_RUN))


@pytest.mark.parametrize("command", [
    ["vae-sample", "--n", "64", "--out", "s.png"],
    ["vae-sample", "--n", "10", "--npy", "s.npy", "--precision", "int8", "--threads", "1"],
    ["vae-decode", "z.npy", "--out", "grid.png", "--nrow", "4"],
    ["vae-encode", "x.npy", "--out", "mu.npy", "--sample", "--seed", "3"],
    ["vae-info", "--json"],
])
def test_a_plain_run_loads_no_cli_stack_pillow_or_training_code(exported, tmp_path, command):
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "z.npy", np.random.default_rng().standard_normal((8, 20)).astype(np.float32))
    np.save(tmp_path / "x.npy", np.random.default_rng().random((5, 784), dtype=np.float32))
    loaded = _modules_loaded([*command, "--model", exported], tmp_path)
    assert "onnxruntime" in loaded and "vae_edge.runtime.cli" in loaded
    assert _listed(loaded) == []


def test_a_plain_run_of_the_bundled_model_loads_no_cli_stack_pillow_or_training_code(tmp_path):
    loaded = _modules_loaded(["vae-sample", "--n", "64"], tmp_path)  # no ./vae-onnx here: the bundled model
    assert (tmp_path / "samples.png").is_file() and "vae_edge.runtime.bundled" in loaded
    assert _listed(loaded) == []


@pytest.mark.parametrize("command", ["vae-sample", "vae-encode", "vae-decode", "vae-info", "vae-score"])
def test_help_loads_no_cli_stack_pillow_or_training_code(tmp_path, command):
    loaded = _modules_loaded([command, "--help"], tmp_path)
    assert "argparse" in loaded and _listed(loaded) == []


def test_a_usage_error_is_one_line_and_exit_code_2(tmp_path):
    r = subprocess.run([BIN / "vae-sample", "--n", "abc"], capture_output=True, text=True, cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "vae-sample: error: argument --n/-n: invalid int value: "
                                                         "'abc'\n")


@pytest.mark.slow
def test_a_fresh_venv_with_the_base_install_runs_every_runtime_command_without_torch(base_install, exported, tmp_path):
    import numpy as np
    from PIL import Image

    bin_dir, env = base_install
    no_torch = subprocess.run([bin_dir / "python", "-c", "import torch"], capture_output=True, text=True, env=env)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr

    def run(*args) -> str:
        r = subprocess.run([bin_dir / args[0], *map(str, args[1:])], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr[-2000:])
        return r.stdout

    run("vae-sample", "--n", "64", "--model", exported, "--out", "samples.png")
    run("vae-sample", "--n", "16", "--model", exported, "--precision", "int8", "--npy", "int8.npy")
    run("vae-encode", "samples.png", "--model", exported, "--out", "mu_png.npy")  # Pillow reads the image
    run("vae-encode", "int8.npy", "--model", exported, "--precision", "int8", "--out", "mu.npy")
    run("vae-decode", "mu.npy", "--model", exported, "--out", "decoded.png", "--npy", "decoded.npy")
    files = len(json.loads((exported / "vae.json").read_text())["files"])
    assert f"ok: {files} files verified" in run("vae-info", "--model", exported)
    assert "--temperature" in run("vae-sample", "--help")
    no_typer = subprocess.run([bin_dir / "python", "-c", "import typer"], capture_output=True, text=True, env=env)
    assert no_typer.returncode != 0, "the base install pulls in typer; the runtime parses with argparse"
    for name, size in (("samples.png", (242, 242)), ("decoded.png", (242, 62))):
        with Image.open(tmp_path / name) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "L", size)
    assert [np.load(tmp_path / f).shape for f in ("int8.npy", "mu_png.npy", "mu.npy", "decoded.npy")] == [
        (16, 1, 28, 28), (1, 20), (16, 20), (16, 1, 28, 28)]

    api = ("import sys; from vae_edge.runtime import VAE; x = VAE.load(sys.argv[1]).sample(3, seed=0); "
           "y = VAE.load(sys.argv[1], precision='int8').sample(3, seed=0); "
           "print(x.shape, y.shape, 'torch' in sys.modules)")
    r = subprocess.run([bin_dir / "python", "-c", api, str(exported)], capture_output=True, text=True, env=env)
    assert r.stdout.split("\n")[0] == "(3, 1, 28, 28) (3, 1, 28, 28) False", r.stderr

"""The packages form layers (runtime, then train, then export: each imports only packages below it), and so do the
runtime's modules: following a call never comes back."""
import ast

from conftest import REPO

RUNTIME = REPO / "runtime"
PACKAGES = ("runtime", "train", "export")  # bottom to top; the version number (vae_edge itself) is below them all


def _imports(path) -> set[str]:
    """The runtime modules that path imports (relative imports, at the top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vae_edge.runtime."):
            found.add(node.module.split(".")[2])
    return found


def _cycle(graph: dict) -> list | None:
    """One import cycle of graph (module -> modules it imports) as a path, or None."""
    state = {}

    def visit(m, path):
        state[m] = "open"
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return path + [m, n]
            if n not in state and (found := visit(n, path + [m])):
                return found
        state[m] = "done"
        return None

    return next((c for m in sorted(graph) if m not in state and (c := visit(m, []))), None)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"model": {"bundled"}, "bundled": {"model"}}) == ["bundled", "model", "bundled"]
    assert _cycle({"model": {"bundled", "folder"}, "bundled": {"errors"}, "folder": {"errors"}}) is None


def test_no_module_of_the_runtime_imports_one_that_imports_it_back():
    graph = {p.stem: _imports(p) for p in RUNTIME.glob("*.py") if p.name != "__init__.py"}
    assert {"errors", "folder", "sessions", "graph", "inputs", "model"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def _packages(path, package: str) -> set[str]:
    """The vae_edge packages that a module of `package` imports (absolute or relative, at the top or in a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            elif node.level == 1:
                names = [f"vae_edge.{package}"]
            else:  # from .. import x, from ..x import y
                names = [f"vae_edge.{node.module}"] if node.module else [f"vae_edge.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("vae_edge.") and n.split(".")[1] in PACKAGES}
    return found


def _upward_imports(root) -> list[str]:
    """'train/x.py imports export' for each module that imports a package above its own."""
    bad = []
    for package in PACKAGES:
        below = set(PACKAGES[:PACKAGES.index(package) + 1])
        for path in sorted((root / package).rglob("*.py")):
            bad += [f"{path.relative_to(root)} imports {p}" for p in sorted(_packages(path, package) - below)]
    return bad


def test_the_direction_finder_finds_an_upward_import(tmp_path):
    modules = {"runtime": "def f():\n    from ..train import data\n", "train": "import vae_edge.export.cpu\n",
               "export": "from vae_edge.runtime import VAE\nfrom vae_edge.train.model import VAE\n"}
    for package, text in modules.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "m.py").write_text(text)
    assert _upward_imports(tmp_path) == ["runtime/m.py imports train", "train/m.py imports export"]


def test_runtime_imports_neither_train_nor_export_and_train_does_not_import_export():
    assert _upward_imports(REPO) == []


def test_png_writing_needs_neither_onnxruntime_nor_pillow():
    """Training writes its PNGs with runtime/png.py: importing it must not import onnxruntime."""
    import subprocess
    import sys

    probe = "import sys, vae_edge.runtime.png; print(sorted({'onnxruntime', 'PIL'} & set(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"

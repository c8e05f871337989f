"""The runtime's modules form layers: each imports only modules below it, so following a call never comes back."""
import ast

from conftest import REPO

RUNTIME = REPO / "runtime"


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


def test_png_writing_needs_neither_onnxruntime_nor_pillow():
    """Training writes its PNGs with runtime/png.py: importing it must not import onnxruntime."""
    import subprocess
    import sys

    probe = "import sys, vae_edge.runtime.png; print(sorted({'onnxruntime', 'PIL'} & set(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"

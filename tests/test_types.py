"""Type checks: mypy on the Python runtime (pyproject.toml's [tool.mypy] says which flags, and why not --strict),
and tsc on the JavaScript package's declarations (web/types/)."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys

from conftest import REPO, need


def test_the_runtime_passes_mypy(tmp_path):
    """Checked as the installed package is laid out (vae_edge/runtime/), which the source tree is not."""
    need(importlib.util.find_spec("mypy") is not None, "mypy is not installed (pip install -e '.[dev]')")
    package = tmp_path / "vae_edge"
    package.mkdir()
    shutil.copy(REPO / "version" / "__init__.py", package)
    (package / "runtime").symlink_to(REPO / "runtime")
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                        "--cache-dir", str(tmp_path / ".mypy_cache"), "-p", "vae_edge.runtime"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr



WEB = REPO / "web"


def test_the_javascript_declarations_pass_tsc():
    """web/types/: the declarations, and check.ts, which uses every part of them as an app would."""
    tsc = WEB / "node_modules" / ".bin" / "tsc"
    need(tsc.is_file(), "typescript is not installed in web/node_modules (make web-deps)")
    r = subprocess.run([str(tsc), "-p", "types"], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_declarations_name_what_the_modules_export():
    """Every export of src/node.js and every public member of its VAE is declared, and nothing more."""
    need(shutil.which("node") is not None and (WEB / "node_modules" / "onnxruntime-node").is_dir(),
         "node or web/node_modules is missing (make web-deps)")
    script = ("const m = await import('vae-edge'); const p = Object.getPrototypeOf(m.VAE.prototype);"
              "console.log(JSON.stringify({exports: Object.keys(m), load: typeof m.VAE.load,"
              "methods: Object.getOwnPropertyNames(p).filter((n) => !n.startsWith('_') && n !== 'constructor')}))")
    r = subprocess.run(["node", "--input-type=module", "-e", script], cwd=WEB, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    node_types, vae_types = (WEB / "types" / "node.d.ts").read_text(), (WEB / "types" / "vae.d.ts").read_text()
    exported = {n.strip() for group in re.findall(r"^export \{([^}]*)\}", node_types, re.M) for n in group.split(",")}
    exported |= set(re.findall(r"^export declare class (\w+)", node_types, re.M))
    assert set(got["exports"]) == exported
    assert got["load"] == "function"
    body = vae_types[vae_types.index("export declare class VAE"):]
    members = set(re.findall(r"^  (?:static |get |readonly )?(\w+)[(:]", body, re.M))
    fields = {"precision", "batchSize"}  # set by the constructor
    assert all(f"this.{f} =" in (WEB / "src" / "vae.js").read_text() for f in fields)
    assert set(got["methods"]) | {"load"} == members - fields

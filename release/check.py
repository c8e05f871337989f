"""make release: check the wheel, the sdist and the npm tarball in dist/ as their users will get them.

The Makefile builds them (`make release`); this script checks, in order, and stops at the first failure with one
line and exit code 1:

1. `twine check --strict`: the metadata and the long description that PyPI will render.
2. Each artifact carries LICENSE, and its file list equals the kept one (release/files.txt): a stray file or a
   missing one fails. File counts and sizes are printed.
3. The sdist builds a wheel with the same files, byte for byte.
4. The wheel installs into a fresh virtual environment (its dependencies from the registry) that has no torch,
   `vae-sample --n 64` writes a PNG there, and mypy reads the installed runtime's types (py.typed).
5. The npm tarball installs into a fresh Node project beside onnxruntime-node from the registry (its install
   script skipped), and decodes the bundled model's folder, as the wheel installed it, within 1e-5 of the Python
   runtime on fresh random latents, fp32 and int8. A browser app's install (beside onnxruntime-web) resolves no
   onnxruntime-node.

    python release/check.py [dist]
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEPT = REPO / "release" / "files.txt"
TOLERANCE = 1e-5
N_LATENTS = 64

# The Python side of check 5, run in the fresh environment: the bundled model decodes fresh random z.
PYTHON_DECODE = """
import sys
import numpy as np
from vae_edge.runtime import VAE
out, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for precision in ("fp32", "int8"):
    vae = VAE.load("fashion-mnist", precision=precision)
    z = np.random.default_rng(seed).standard_normal((n, vae.latent_dim)).astype(np.float32)
    z.tofile(f"{out}/z.f32")
    vae.decode(z).tofile(f"{out}/python-{precision}.f32")
print(vae.folder)
"""

# What an app that imports the installed runtime writes; mypy must find its types (py.typed) to pass it.
TYPED_APP = """
import numpy as np
from vae_edge.runtime import VAE, ModelFolderError

vae: VAE = VAE.load("fashion-mnist", precision="int8")
images: np.ndarray = vae.sample(4, seed=0, temperature=0.5)
latent_dim: int = vae.latent_dim
error: type[ValueError] = ModelFolderError
"""


class Failed(Exception):
    pass


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(*cmd, cwd: Path | None = None, env: dict | None = None) -> str:
    """Run a command; its stdout, or Failed with the end of its output."""
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                       text=True)
    if r.returncode != 0:
        tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
        raise Failed(f"{' '.join(map(str, cmd))} exited with {r.returncode}:\n  " + "\n  ".join(tail))
    return r.stdout


# -- the artifacts and their files ------------------------------------------------------------------------------
def artifacts(dist: Path, version: str) -> dict[str, Path]:
    paths = {"wheel": dist / f"vae_edge-{version}-py3-none-any.whl", "sdist": dist / f"vae_edge-{version}.tar.gz",
             "npm": dist / f"vae-edge-{version}.tgz"}
    for kind, path in paths.items():
        if not path.is_file():
            raise Failed(f"no {kind} at {path} (make release builds it)")
    stray = sorted(set(p.name for p in dist.iterdir()) - {p.name for p in paths.values()} - {".gitignore"})
    if stray:
        raise Failed(f"{dist} holds files that are not the three artifacts: {', '.join(stray)}")
    return paths


def files(kind: str, path: Path) -> dict[str, bytes]:
    """An artifact's files: path inside it (without the sdist's and npm's top folder) -> contents."""
    if kind == "wheel":
        with zipfile.ZipFile(path) as z:
            return {name: z.read(name) for name in z.namelist() if not name.endswith("/")}
    with tarfile.open(path) as t:
        return {m.name.split("/", 1)[1]: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def kept_lists(version: str) -> dict[str, list[str]]:
    """release/files.txt: a [kind] line, then that artifact's files, `{version}` standing for the version."""
    lists: dict[str, list[str]] = {}
    kind = None
    for line in KEPT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            kind = line[1:-1]
            lists[kind] = []
        elif kind is None:
            raise Failed(f"{KEPT}: {line!r} comes before any [wheel], [sdist] or [npm] line")
        else:
            lists[kind].append(line.replace("{version}", version))
    return lists


def show_files(kind: str, path: Path, contents: dict[str, bytes]) -> None:
    unpacked = sum(map(len, contents.values()))
    print(f"{path.name}: {len(contents)} files, {path.stat().st_size / 1e6:.2f} MB packed, "
          f"{unpacked / 1e6:.2f} MB unpacked")
    for name in sorted(contents):
        print(f"  {len(contents[name]):>10,}  {name}")


def check_files(kind: str, contents: dict[str, bytes], kept: list[str]) -> None:
    license_at = {"wheel": [n for n in contents if n.endswith(".dist-info/licenses/LICENSE")],
                  "sdist": ["LICENSE"], "npm": ["LICENSE"]}[kind]
    if not license_at or contents.get(license_at[0]) != (REPO / "LICENSE").read_bytes():
        raise Failed(f"the {kind} does not carry LICENSE")
    stray, missing = sorted(set(contents) - set(kept)), sorted(set(kept) - set(contents))
    if stray or missing:
        raise Failed(f"the {kind}'s files differ from {KEPT.relative_to(REPO)}: "
                     f"not in the list {stray or 'none'}; missing {missing or 'none'}")


# -- the checks ---------------------------------------------------------------------------------------------------
def check_twine(paths: dict[str, Path]) -> None:
    step("twine check --strict (metadata, and the description PyPI renders)")
    print(run(sys.executable, "-m", "twine", "check", "--strict", paths["wheel"], paths["sdist"]).strip())


def check_sdist_builds_the_wheel(paths: dict[str, Path], wheel: dict[str, bytes], tmp: Path) -> None:
    step("the sdist builds a wheel with the same files")
    out = tmp / "from-sdist"
    run(sys.executable, "-m", "uv", "build", "--wheel", "--out-dir", out, paths["sdist"])
    rebuilt = files("wheel", next(out.glob("*.whl")))
    differ = sorted(n for n in set(wheel) | set(rebuilt) if wheel.get(n) != rebuilt.get(n))
    if differ:
        raise Failed(f"the wheel built from the sdist differs in {len(differ)} files: {', '.join(differ[:8])}")
    print(f"ok: {len(rebuilt)} files, each the same bytes")


def check_wheel_installs_without_torch(paths: dict[str, Path], tmp: Path) -> Path:
    """The fresh environment's python."""
    step("the wheel in a fresh virtual environment, without torch")
    venv = tmp / "venv"
    run(sys.executable, "-m", "uv", "venv", "-q", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "uv", "pip", "install", "-q", "--python", python, paths["wheel"])
    torch = subprocess.run([python, "-c", "import torch"], capture_output=True)
    if torch.returncode == 0:
        raise Failed("torch is importable in the fresh environment: the wheel pulled it in")
    work = tmp / "work"
    work.mkdir()
    run(venv / "bin" / "vae-sample", "--n", "64", cwd=work)
    png = (work / "samples.png").read_bytes()
    if not png.startswith(b"\x89PNG"):
        raise Failed("vae-sample --n 64 wrote no PNG")
    print(f"ok: no torch; vae-sample --n 64 wrote samples.png ({len(png):,} bytes); "
          f"{run(venv / 'bin' / 'vae-info', '--version').strip()}")
    app = tmp / "typed_app.py"
    app.write_text(TYPED_APP)
    print(run(sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", python, app,
              cwd=tmp).strip(), "(mypy --strict on an app using the installed runtime)")
    return python


def check_npm_package(paths: dict[str, Path], python: Path, tmp: Path) -> None:
    step("the npm tarball in a fresh Node project, against the Python runtime")
    app = tmp / "node-app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    skip = {"ONNXRUNTIME_NODE_INSTALL": "skip"}
    run("npm", "install", "--no-audit", "--no-fund", paths["npm"].resolve(), "onnxruntime-node", cwd=app, env=skip)
    installed = {name: json.loads((app / "node_modules" / name / "package.json").read_text())["version"]
                 for name in ("vae-edge", "onnxruntime-node")}
    seed = secrets.randbits(32)
    folder = run(python, "-c", PYTHON_DECODE, tmp, seed, N_LATENTS, cwd=tmp).strip()  # not the checkout's
    shutil.copy(REPO / "release" / "decode.mjs", app)
    run("node", "decode.mjs", folder, tmp / "z.f32", tmp, cwd=app)
    for precision in ("fp32", "int8"):
        want = _floats(tmp / f"python-{precision}.f32")
        got = _floats(tmp / f"node-{precision}.f32")
        if len(got) != len(want):
            raise Failed(f"{precision}: Node decoded {len(got)} numbers, Python {len(want)}")
        worst = max(abs(a - b) for a, b in zip(got, want))
        if worst > TOLERANCE:
            raise Failed(f"{precision}: Node and Python differ by {worst:.3g} (> {TOLERANCE}) on the bundled model")
        print(f"ok: {precision}, {N_LATENTS} latents (seed {seed}): max abs difference {worst:.3g}")
    print(f"installed: {', '.join(f'{k} {v}' for k, v in installed.items())}; model folder {folder}")

    browser = tmp / "browser-app"
    browser.mkdir()
    (browser / "package.json").write_text(json.dumps({"name": "browser-app", "private": True, "type": "module"}))
    run("npm", "install", "--package-lock-only", "--no-audit", "--no-fund", paths["npm"].resolve(),
        "onnxruntime-web", cwd=browser)
    resolved = json.loads((browser / "package-lock.json").read_text())["packages"]
    if any(name.endswith("node_modules/onnxruntime-node") for name in resolved):
        raise Failed("a browser app that installs vae-edge and onnxruntime-web also gets onnxruntime-node")
    print(f"ok: a browser app's install resolves {len(resolved) - 1} packages, onnxruntime-node not among them")


def _floats(path: Path) -> list[float]:
    import array

    values = array.array("f")
    values.frombytes(path.read_bytes())
    return values.tolist()


def checkout_version() -> str:
    """vae_edge.__version__ as this checkout has it (version/__init__.py), whichever vae_edge is installed."""
    spec = importlib.util.spec_from_file_location("version", REPO / "version" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.__version__


def main(dist: Path) -> None:
    version = checkout_version()
    paths = artifacts(dist, version)
    contents = {kind: files(kind, path) for kind, path in paths.items()}
    check_twine(paths)
    step(f"the files of each artifact, against {KEPT.relative_to(REPO)}")
    kept = kept_lists(version)
    for kind, path in paths.items():
        show_files(kind, path, contents[kind])
        check_files(kind, contents[kind], kept.get(kind, []))
    print("ok: each carries LICENSE, and no file more or less than the kept lists")
    with tempfile.TemporaryDirectory(prefix="vae-edge-release-") as tmp:
        check_sdist_builds_the_wheel(paths, contents["wheel"], Path(tmp))
        python = check_wheel_installs_without_torch(paths, Path(tmp))
        check_npm_package(paths, python, Path(tmp))
    step("release checks passed")
    for kind, path in paths.items():
        print(f"  {path.name}: {path.stat().st_size / 1e6:.2f} MB, {len(contents[kind])} files")


if __name__ == "__main__":
    if len(sys.argv) > 2 or any(a.startswith("-") for a in sys.argv[1:]):
        print(__doc__)
        raise SystemExit(0 if {"-h", "--help"} & set(sys.argv) else 2)
    try:
        main(Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "dist"))
    except Failed as e:
        print(f"\nrelease check failed: {e}", file=sys.stderr)
        raise SystemExit(1)

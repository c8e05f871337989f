"""Run inside a matrix venv (no torch, no pytest): the runtime's parity suite against PyTorch's saved outputs.

    python compat_check.py FIXTURES [--no-cli]   -> one JSON line: versions and the max abs error of each check

FIXTURES holds, per model folder NAME/ (exported in the main environment), NAME.<what>.npy written there by
PyTorch: x, z, mu, logvar, probs (decode of z), sample (decode of default_rng(SEED) z). Exit code 1 if any check
is beyond its bound; the JSON says which.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime

from vae_edge.runtime import VAE, ModelFolderError

TOL = 1e-5
SEED = 3


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def main(fixtures: Path, cli: bool = True) -> int:
    report = {"python": sys.version.split()[0], "numpy": np.__version__, "onnxruntime": onnxruntime.__version__}
    failures = []
    spec = json.loads((fixtures / "spec.json").read_text())
    for name, facts in spec["models"].items():
        folder, ref = fixtures / name, {k: np.load(fixtures / f"{name}.{k}.npy") for k in facts["arrays"]}
        vae = VAE.load(folder)
        mu, logvar = vae.encode(ref["x"])
        got = {"decode": max_abs(vae.decode(ref["z"]), ref["probs"]), "encode_mu": max_abs(mu, ref["mu"]),
               "encode_logvar": max_abs(logvar, ref["logvar"]),
               "sample": max_abs(vae.sample(len(ref["sample"]), seed=SEED), ref["sample"])}
        failures += [f"{name} {k} {v:.3g}" for k, v in got.items() if not v <= TOL]
        if facts["int8"]:  # int8 against PyTorch's fp32, within twice the error the export measured
            q8 = VAE.load(folder, precision="int8")
            got["int8_decode"] = max_abs(q8.decode(ref["z"]), ref["probs"])
            got["int8_encode_mu"] = max_abs(q8.encode(ref["x"])[0], ref["mu"])
            bound = facts["int8"]
            failures += [f"{name} int8 decode {got['int8_decode']:.3g}"] * (got["int8_decode"] > 2 * bound["x_max_abs"])
            failures += [f"{name} int8 mu {got['int8_encode_mu']:.3g}"] * (got["int8_encode_mu"] > 2 * bound["mu_max_abs"])
        report[name] = got
    # a file at a newer opset than this onnxruntime reads is refused in one line, naming both versions
    try:
        VAE.load(fixtures / spec["too_new"])
        report["too_new"] = "loaded"
    except ModelFolderError as e:
        report["too_new"] = str(e)
    if cli:
        failures += check_cli(fixtures, spec, report)
    report["failures"] = failures
    print(json.dumps(report))
    return 1 if failures else 0


def check_cli(fixtures: Path, spec: dict, report: dict) -> list[str]:
    """vae-sample through the console script this venv installed (typer and click at their versions)."""
    out = fixtures.parent / f"samples-{onnxruntime.__version__}.png"
    cli = subprocess.run([str(Path(sys.executable).parent / "vae-sample"), "--model", str(fixtures / spec["cli"]),
                          "--n", "16", "--out", str(out)], capture_output=True, text=True)
    report["cli"] = {"returncode": cli.returncode, "stderr": cli.stderr.strip()[-300:], "png": out.is_file()}
    return [] if cli.returncode == 0 and out.is_file() else [f"vae-sample: {cli.stderr.strip()[-300:]}"]


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), cli="--no-cli" not in sys.argv[2:]))

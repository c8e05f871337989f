"""Run by an emulated ARM64 Python (no torch, no pytest): the installed wheel against outputs saved on x86.

    python arm64_check.py FIXTURES OUT   -> one JSON line: versions, errors, failures

FIXTURES/spec.json names each model (a bundled name, or a folder in FIXTURES) and its int8 bound; FIXTURES holds
NAME.<what>.npy: x and z (fixed inputs), ref_probs and ref_mu (PyTorch's, or for the bundled model, whose
checkpoint is not shipped, the x86 runtime's fp32, within 1e-6 of PyTorch by its vae.json), and x86_int8_probs and
x86_int8_mu (the x86 runtime's int8). This Python's decodes of z are written to OUT/NAME.<precision>.npy, for the C
program to be compared with. Exit code 1 if any check fails; the JSON says which.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime

from vae_edge.runtime import VAE, compat

TOL = 1e-5


def errors(a, b) -> dict:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return {"max": float(d.max()), "mean": float(d.mean())}


def check_model(fixtures: Path, out: Path, name: str, facts: dict, failures: list) -> dict:
    folder = facts["folder"] and str(fixtures / facts["folder"]) or name
    a = {k: np.load(fixtures / f"{name}.{k}.npy") for k in ("x", "z", "ref_probs", "ref_mu", "x86_int8_probs",
                                                              "x86_int8_mu")}
    got = {}
    for precision in ("fp32", "int8"):
        vae = VAE.load(folder, precision=precision)
        probs, mu = vae.decode(a["z"]), vae.encode(a["x"])[0]
        np.save(out / f"{name}.{precision}.npy", probs)
        got[precision] = {"decode": errors(probs, a["ref_probs"]), "mu": errors(mu, a["ref_mu"])}
        if precision == "fp32":
            failures += [f"{name} fp32 {k} {v['max']:.3g}" for k, v in got["fp32"].items() if not v["max"] <= TOL]
        else:  # other kernels than x86's may move int8 results from x86's int8 by no more than the export's bound
            got["int8"]["decode_vs_x86_int8"] = errors(probs, a["x86_int8_probs"])
            got["int8"]["mu_vs_x86_int8"] = errors(mu, a["x86_int8_mu"])
            bound = facts["bound"]
            if not got["int8"]["decode_vs_x86_int8"]["mean"] <= bound["x_mean_abs"]:
                failures.append(f"{name} int8 decode moved from x86's by {got['int8']['decode_vs_x86_int8']}")
            if not got["int8"]["mu_vs_x86_int8"]["mean"] <= bound["mu_mean_abs"]:
                failures.append(f"{name} int8 mu moved from x86's by {got['int8']['mu_vs_x86_int8']}")
        made = (vae.meta.get("ort_format") or {}).get("made_by_onnxruntime")
        if made and compat.parse_version(onnxruntime.__version__) >= compat.parse_version(made):
            ort = VAE.load(folder, precision=precision, ort_format=True)
            got[precision]["ort_vs_onnx"] = {"decode": errors(ort.decode(a["z"]), probs),
                                             "mu": errors(ort.encode(a["x"])[0], mu)}
            failures += [f"{name} {precision} .ort {k} {v['max']:.3g}" for k, v in got[precision]["ort_vs_onnx"].items()
                         if not v["max"] <= TOL]
    return got


def main(fixtures: Path, out: Path) -> int:
    report = {"python": sys.version.split()[0], "numpy": np.__version__, "onnxruntime": onnxruntime.__version__}
    failures = []
    for name, facts in json.loads((fixtures / "spec.json").read_text())["models"].items():
        report[name] = check_model(fixtures, out, name, facts, failures)
    report["failures"] = failures
    print(json.dumps(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))

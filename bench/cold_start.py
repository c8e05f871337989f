"""Cold start: `vae-sample --n 64` and `VAE.load(...).sample(64)` as fresh processes, against the import floor.

The floor is what any torch-free sampler pays before its own first line: `python -c "import numpy,
onnxruntime"`. Three fresh processes per model, run in alternating rounds so a burst of load elsewhere
hits all three (medians reported, with min and max):
- floor: python -c "import numpy, onnxruntime"
- CLI:   vae-sample --model M --n 64 --out samples.png
- API:   python -c "from vae_edge.runtime import VAE; VAE.load(M).sample(64)"
Wall times are reported as ratios to the floor's median in the same run; peak RSS comes from os.wait4
(the child's own rusage). The page cache is warm (each command runs once first), as on a machine that
has run the command before, and bytecode is cached (children run without PYTHONDONTWRITEBYTECODE). Then where the time goes: fresh processes doing part of the work, and
`python -X importtime` of a vae-sample run, summed by top-level package.

Models: the reference mlp (built in a child with torch, random weights: speed does not depend on their
values), the model the package bundles (runtime/models/fashion-mnist/) when there is one, and any
export folder given with --model. The targets (issue 15) apply to the bundled model, else to the mlp.

A child's peak RSS counts its parent's memory at the fork (Linux keeps the high-water mark across
exec), so this process stays small: it never imports torch or numpy.
    python bench/cold_start.py [--runs 10] [--model DIR ...]
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OtherLoad, cores, header, load_before, mib, ratio, table, verdict  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "runtime" / "models" / "fashion-mnist"
TARGET_CLI, TARGET_API, TARGET_RSS_MIB = 1.5, 1.15, 60.0
FLOOR = "import numpy, onnxruntime"
API = "import sys; from vae_edge.runtime import VAE; VAE.load(sys.argv[1]).sample(64)"
# Children may write .pyc files (the warm-up run does), as on a machine that has run the command before.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(cmd: list[str], png: Path | None = None) -> tuple[float, float]:
    """Run cmd as a fresh process; return (wall seconds, peak RSS in KiB); check the PNG, if any, appeared."""
    if png is not None:
        png.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0 or (png is not None and not png.is_file()):
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return wall, float(usage.ru_maxrss)  # KiB on Linux


def prepare(d: Path) -> None:
    """An export (vae-onnx/) of the reference mlp VAE."""
    import torch

    from vae_edge.export import export_model
    from vae_edge.train.config import Config
    from vae_edge.train.model import VAE

    torch.manual_seed(0)
    cfg = Config()
    export_model(VAE.from_config(cfg.model()).eval(), d / "vae-onnx", facts={"dataset": cfg.dataset})


def rounds(commands: dict[str, tuple[list[str], Path | None]], runs: int) -> tuple[dict, dict]:
    """Median wall seconds and peak RSS KiB of each command, over `runs` alternating rounds after a warm-up."""
    for cmd, png in commands.values():
        run_once(cmd, png)
    wall, rss = defaultdict(list), defaultdict(list)
    for _ in range(runs):
        for name, (cmd, png) in commands.items():
            w, r = run_once(cmd, png)
            wall[name].append(w)
            rss[name].append(r)
    return wall, rss


def importtime(cmd: list[str], runs: int) -> dict[str, float]:
    """Median self import time (ms) of each top-level package in `python -X importtime` runs of cmd."""
    per_run = []
    for _ in range(runs):
        err = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True,
                             check=True, env=ENV).stderr
        totals = defaultdict(float)
        for m in re.finditer(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)", err):
            totals[m.group(2).split(".")[0]] += int(m.group(1)) / 1e3
        per_run.append(totals)
    names = {k for t in per_run for k in t}
    return {k: statistics.median(t.get(k, 0.0) for t in per_run) for k in names}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="alternating rounds (medians reported)")
    p.add_argument("--model", type=Path, action="append", default=[], help="also measure this export folder")
    p.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # internal: write the mlp export here
    args = p.parse_args()
    if args.prepare is not None:
        prepare(args.prepare)
        return
    t_start = time.perf_counter()
    print(header("bench/cold_start.py", "onnxruntime", "numpy", "typer", "pillow"))
    print(load_before())
    during = OtherLoad()
    py, sample = sys.executable, str(Path(sys.executable).parent / "vae-sample")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        subprocess.run([py, __file__, "--prepare", str(d)], check=True)
        models = {"mlp": d / "vae-onnx"}
        if (BUNDLED / "vae.json").is_file():
            models["bundled fashion-mnist"] = BUNDLED
        models.update({str(m): m for m in args.model})
        png = d / "samples.png"
        commands = {("floor", None): ([py, "-c", FLOOR], None)}
        for name, folder in models.items():
            commands[(name, "CLI")] = ([sample, "--model", str(folder), "--n", "64", "--out", str(png)], png)
            commands[(name, "API")] = ([py, "-c", API, str(folder)], None)
        wall, rss = rounds(commands, args.runs)
        # Where the time goes: the same interpreter doing more and more of the job, on the last model.
        folder = list(models.values())[-1]
        steps = {
            "python -c pass": [py, "-c", "pass"],
            "+ import numpy": [py, "-c", "import numpy"],
            "+ import onnxruntime (the floor)": [py, "-c", FLOOR],
            "+ import vae_edge.runtime.cli": [py, "-c", "import vae_edge.runtime.cli"],
            "+ VAE.load(decoder_only=True)": [py, "-c", "import sys, vae_edge.runtime.cli as c; "
                                              "c.VAE.load(sys.argv[1], decoder_only=True)", str(folder)],
            "+ sample(64) + save_grid (all of vae-sample's work)": [
                py, "-c", "import sys, vae_edge.runtime.cli as c; "
                "c.save_grid(c.VAE.load(sys.argv[1], decoder_only=True).sample(64), sys.argv[2])",
                str(folder), str(d / "steps.png")],
            "for scale: floor + import typer": [py, "-c", FLOOR + ", typer"],
            "for scale: floor + import PIL.Image": [py, "-c", FLOOR + ", PIL.Image"],
        }
        step_wall, step_rss = rounds({k: (v, None) for k, v in steps.items()}, args.runs)
        imports = importtime([sample, "--model", str(folder), "--n", "64", "--out", str(png)], args.runs)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    med = {k: statistics.median(v) for k, v in wall.items()}
    med_rss = {k: statistics.median(v) for k, v in rss.items()}
    floor = med[("floor", None)]
    rows = []
    for (name, kind), v in wall.items():
        label = "floor: python -c \"import numpy, onnxruntime\"" if kind is None else \
            f"{name}: {'vae-sample --n 64 --out samples.png' if kind == 'CLI' else 'VAE.load(M).sample(64)'}"
        rows.append([label, f"{med[(name, kind)] * 1e3:.0f} ms", f"{min(v) * 1e3:.0f} ms", f"{max(v) * 1e3:.0f} ms",
                     mib(med_rss[(name, kind)]), ratio(med[(name, kind)] / floor)])
    print(f"\nCold start, each a fresh process, {args.runs} alternating rounds (medians; default threads).\n")
    print(table(["process", "wall (median)", "min", "max", "peak RSS (median)", "wall vs floor"], rows))

    print(f"\nWhere the time and memory go: fresh processes doing more and more of the job ({list(models)[-1]}; "
          f"medians; peak RSS cannot read below {mib(own)}, this launcher's own).\n")
    sw = {k: statistics.median(v) for k, v in step_wall.items()}
    srss = {k: statistics.median(v) for k, v in step_rss.items()}
    print(table(["process", "wall", "peak RSS"], [[k, f"{sw[k] * 1e3:.0f} ms", mib(srss[k])] for k in steps]))

    total = sum(imports.values())
    top = sorted(imports.items(), key=lambda kv: -kv[1])
    shown = [(k, v) for k, v in top if k in ("numpy", "onnxruntime", "vae_edge")] + \
            [("standard library and the rest", sum(v for k, v in top if k not in ("numpy", "onnxruntime", "vae_edge")))]
    print(f"\n`python -X importtime` of vae-sample (self times summed by top-level package, medians of "
          f"{args.runs} runs; importtime's own overhead inflates them).\n")
    print(table(["package", "import time", "share"], [[k, f"{v:.1f} ms", f"{v / total:.0%}"] for k, v in shown]
                + [["all imports", f"{total:.1f} ms", "100%"]]))

    target = "bundled fashion-mnist" if "bundled fashion-mnist" in models else "mlp"
    cli, api = med[(target, "CLI")] / floor, med[(target, "API")] / floor
    peak = med_rss[(target, "CLI")] / 1024
    print(f"\nTargets (issue 15), {target} model.\n")
    print(table(["target", "goal", "measured", ""], [
        ["vae-sample --n 64 cold: wall vs the floor", f"<= {TARGET_CLI}x", ratio(cli), verdict(cli <= TARGET_CLI)],
        ["vae-sample --n 64 cold: peak RSS", f"<= {TARGET_RSS_MIB:.0f} MiB", f"{peak:.1f} MiB",
         verdict(peak <= TARGET_RSS_MIB)],
        ["VAE.load(...).sample(64) cold: wall vs the floor", f"<= {TARGET_API}x", ratio(api),
         verdict(api <= TARGET_API)]]))
    print(f"\n({time.perf_counter() - t_start:.0f} s; other processes used {during.text()} of the "
          f"{cores()} cores meanwhile)")


if __name__ == "__main__":
    main()

"""Cold start: `vae-sample --n 64` and `VAE.load(...).sample(64)` as fresh processes, against the import floor.

The floor is what any torch-free sampler pays before its own first line: `python -c "import numpy,
onnxruntime"`. These fresh processes, run in alternating rounds so a burst of load elsewhere hits them all
(medians reported, with min and max):
- floor: python -c "import numpy, onnxruntime"
- CLI:   vae-sample --model M --n 64 --out samples.png
- API:   python -c "from vae_edge.runtime import VAE; VAE.load(M).sample(64)" (and with decoder_only=True,
         which skips the encoder's session)
- help:  vae-sample --help (the command line's parser alone: no model is read)
- import: python -c "from vae_edge.runtime import VAE" (the API's own floor: what importing it costs)
Wall and CPU times are reported as ratios to the floor's medians in the same run; peak RSS comes from
os.wait4 (the child's own rusage). The page cache is warm (each command runs once first), as on a machine
that has run the command before, and bytecode is cached (children run without PYTHONDONTWRITEBYTECODE).
Then where the time goes: fresh processes doing more and more of the job, and `python -X importtime`
of a vae-sample run with each import charged to the floor, numpy.random, vae_edge or start-up.
--before RUNTIME_DIR measures another commit's runtime in the same rounds.

Models: the reference mlp (built in a child with torch, random weights: speed does not depend on their
values), the model the package bundles (runtime/models/fashion-mnist/) when there is one, and any
export folder given with --model. The targets (issue 15) apply to the bundled model, else to the mlp.

A child's peak RSS counts its parent's memory at the fork (Linux keeps the high-water mark across
exec), so this process stays small: it never imports torch or numpy.
    python bench/cold_start.py [--runs 10] [--model DIR ...] [--before RUNTIME_DIR]
"""
from __future__ import annotations

import argparse
import json
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
# What any onnxruntime-based sampler of the model pays, with no code of ours: the floor and a default session.
ORT_ONLY = ("import sys, numpy, onnxruntime as o; "
            "s = o.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])")
API_DECODER = "import sys; from vae_edge.runtime import VAE; VAE.load(sys.argv[1], decoder_only=True).sample(64)"
IMPORT = "from vae_edge.runtime import VAE"
JOBS = {"CLI": "vae-sample --n 64 --out samples.png", "API": "VAE.load(M).sample(64)",
        "API decoder_only": "VAE.load(M, decoder_only=True).sample(64)", "help": "vae-sample --help",
        "import": f"python -c \"{IMPORT}\""}
# vae-sample's console script, for a runtime whose entry point may be the older typer app (sample_app).
BEFORE_CLI = ("import sys; sys.argv[0] = 'vae-sample'; import vae_edge.runtime.cli as c; "
              "(getattr(c, 'sample_main', None) or c.sample_app)()")
# Children may write .pyc files (the warm-up run does), as on a machine that has run the command before.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(cmd: list[str], png: Path | None = None, env: dict = ENV) -> tuple[float, float, float]:
    """Run cmd as a fresh process; return (wall seconds, peak RSS in KiB, CPU seconds); check the PNG appeared."""
    if png is not None:
        png.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0 or (png is not None and not png.is_file()):
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return wall, float(usage.ru_maxrss), usage.ru_utime + usage.ru_stime  # ru_maxrss is in KiB on Linux


def before_env(runtime: Path, d: Path) -> dict:
    """An environment whose `import vae_edge.runtime` finds the given runtime/ folder instead of ours."""
    pkg = d / "before" / "vae_edge"
    if not pkg.exists():
        pkg.mkdir(parents=True)
        (pkg / "runtime").symlink_to(runtime.resolve(), target_is_directory=True)
        (pkg / "__init__.py").symlink_to(REPO / "version" / "__init__.py")  # vae_edge.__version__, which cli imports
    return dict(ENV, PYTHONPATH=str(d / "before"))


def prepare(d: Path) -> None:
    """An export (vae-onnx/) of the reference mlp VAE."""
    import torch

    from vae_edge.export import export_model
    from vae_edge.train.config import Config
    from vae_edge.train.model import VAE

    torch.manual_seed(0)
    cfg = Config()
    export_model(VAE.from_config(cfg.architecture()).eval(), d / "vae-onnx", facts={"dataset": cfg.dataset})


def rounds(commands: dict[str, tuple[list[str], Path | None, dict]], runs: int) -> tuple[dict, dict, dict]:
    """Wall s, peak RSS KiB and CPU s of each (cmd, png, env): `runs` each, in alternating rounds, after a warm-up."""
    for cmd, png, env in commands.values():
        run_once(cmd, png, env)
    wall, rss, cpu = defaultdict(list), defaultdict(list), defaultdict(list)
    for _ in range(runs):
        for name, (cmd, png, env) in commands.items():
            w, r, c = run_once(cmd, png, env)
            wall[name].append(w)
            rss[name].append(r)
            cpu[name].append(c)
    return wall, rss, cpu


# Who an import's time is charged to: the floor if the floor imports it too; numpy.random if importing it
# imports it too; else vae_edge if one of its importers is ours; else the interpreter's start-up.
FLOOR_IMPORTS = "numpy and onnxruntime (the floor imports these too)"
RANDOM = "numpy.random (first draw of z), with what it imports"
OURS = "vae_edge.runtime, with what only it imports"
STARTUP = "interpreter start-up (site, encodings, ...)"


def _import_tree(cmd: list[str]) -> list[tuple[str, float, list]]:
    """The (name, self ms, children) roots of a `python -X importtime` run of cmd.

    importtime prints each module after the modules it imports, indented two spaces per level.
    """
    err = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True, check=True,
                         env=ENV).stderr
    pending: list[tuple[int, tuple]] = []  # (depth, node) not yet claimed by a parent
    for m in re.finditer(r"import time:\s+(\d+) \|\s+\d+ \| ( *)(\S+)", err):
        depth, name, ms = len(m.group(2)) // 2, m.group(3), int(m.group(1)) / 1e3
        children = [node for d, node in pending if d == depth + 1]
        pending = [(d, node) for d, node in pending if d <= depth] + [(depth, (name, ms, children))]
    return [node for _, node in pending]


def _modules(code: str) -> set[str]:
    """Every module `python -c code` imports."""
    names, stack = set(), _import_tree(["-c", code])
    while stack:
        name, _, children = stack.pop()
        names.add(name)
        stack += children
    return names


def importtime(cmd: list[str], runs: int) -> dict[str, float]:
    """Median import time (ms) of cmd charged to the floor, numpy.random, vae_edge and start-up."""
    floor = _modules(FLOOR)
    random = _modules(FLOOR + ", numpy.random") - floor
    per_run = []
    for _ in range(runs):
        totals = defaultdict(float)

        def charge(node, owner):
            name, ms, children = node
            owner = OURS if name.startswith("vae_edge") else owner
            totals[FLOOR_IMPORTS if name in floor and owner != STARTUP else RANDOM if name in random else owner] += ms
            for child in children:
                charge(child, owner)

        owner = STARTUP
        for root in _import_tree(cmd):  # what site imports, then the script's imports, then what runs import late
            owner = OURS if root[0].startswith("vae_edge") else owner
            charge(root, owner)
        per_run.append(totals)
    return {k: statistics.median(t.get(k, 0.0) for t in per_run) for k in (FLOOR_IMPORTS, RANDOM, OURS, STARTUP)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="alternating rounds (medians reported)")
    p.add_argument("--model", type=Path, action="append", default=[], help="also measure this export folder")
    p.add_argument("--before", type=Path, help="also measure this runtime/ folder of another commit, e.g. from "
                                               "`git archive COMMIT runtime | tar -x -C /tmp/old` (/tmp/old/runtime)")
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
        commands = {("floor", None): ([py, "-c", FLOOR], None, ENV), ("", "help"): ([sample, "--help"], None, ENV),
                    ("", "import"): ([py, "-c", IMPORT], None, ENV)}
        if args.before is not None:
            old = before_env(args.before, d)
            commands[("", "help before")] = ([py, "-c", BEFORE_CLI, "--help"], None, old)
            commands[("", "import before")] = ([py, "-c", IMPORT], None, old)
        for name, folder in models.items():
            cli_args = ["--model", str(folder), "--n", "64", "--out", str(png)]
            commands[(name, "CLI")] = ([sample, *cli_args], png, ENV)
            commands[(name, "API")] = ([py, "-c", API, str(folder)], None, ENV)
            commands[(name, "API decoder_only")] = ([py, "-c", API_DECODER, str(folder)], None, ENV)
            if args.before is not None:  # the same jobs with another commit's runtime first on the path
                old = before_env(args.before, d)
                commands[(name, "CLI before")] = ([py, "-c", BEFORE_CLI, *cli_args], png, old)
                commands[(name, "API before")] = ([py, "-c", API, str(folder)], None, old)
        wall, rss, cpu = rounds(commands, args.runs)
        # Where the time goes: the same interpreter doing more and more of the job, on the last model.
        folder = list(models.values())[-1]
        decoder = str(folder / json.loads((folder / "vae.json").read_text())["files"]["decoder"]["path"])
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
            "for scale: floor + import numpy.random": [py, "-c", FLOOR + ", numpy.random"],
            "for scale: floor + onnxruntime's session of the decoder file, no vae_edge": [py, "-c", ORT_ONLY, decoder],
            "for scale: that session decoding 64 z from numpy.random, no vae_edge": [
                py, "-c", ORT_ONLY + "; import numpy.random as r; s.run(None, {s.get_inputs()[0].name: "
                "r.default_rng(0).standard_normal((64, s.get_inputs()[0].shape[1])).astype('float32')})", decoder],
            "for scale: floor + import typer": [py, "-c", FLOOR + ", typer"],
            "for scale: floor + import argparse": [py, "-c", FLOOR + ", argparse"],
            "for scale: floor + import PIL.Image": [py, "-c", FLOOR + ", PIL.Image"],
        }
        step_wall, step_rss, _ = rounds({k: (v, None, ENV) for k, v in steps.items()}, args.runs)
        imports = importtime([sample, "--model", str(folder), "--n", "64", "--out", str(png)], args.runs)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    med = {k: statistics.median(v) for k, v in wall.items()}
    med_rss = {k: statistics.median(v) for k, v in rss.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    floor, floor_rss, floor_cpu = med[("floor", None)], med_rss[("floor", None)], med_cpu[("floor", None)]
    rows = []
    for (name, kind), v in wall.items():
        label = "floor: python -c \"import numpy, onnxruntime\"" if kind is None else \
            f"{name + ': ' if name else ''}{JOBS[kind.removesuffix(' before')]}" \
            f"{' (--before)' if kind.endswith(' before') else ''}"
        k = (name, kind)
        rows.append([label, f"{med[k] * 1e3:.0f} ms", f"{min(v) * 1e3:.0f} ms", f"{max(v) * 1e3:.0f} ms",
                     ratio(med[k] / floor), f"{med_cpu[k] * 1e3:.0f} ms", ratio(med_cpu[k] / floor_cpu),
                     mib(med_rss[k]), f"+{(med_rss[k] - floor_rss) / 1024:.1f} MiB"])
    print(f"\nCold start, each a fresh process, {args.runs} alternating rounds (medians; default threads). CPU is "
          f"user + system time, which suffers less than wall time when other work shares the cores.\n")
    print(table(["process", "wall", "min", "max", "wall vs floor", "CPU", "CPU vs floor", "peak RSS",
                 "RSS over floor"], rows))

    print(f"\nWhere the time and memory go: fresh processes doing more and more of the job ({list(models)[-1]}; "
          f"medians; peak RSS cannot read below {mib(own)}, this launcher's own).\n")
    sw = {k: statistics.median(v) for k, v in step_wall.items()}
    srss = {k: statistics.median(v) for k, v in step_rss.items()}
    print(table(["process", "wall", "peak RSS"], [[k, f"{sw[k] * 1e3:.0f} ms", mib(srss[k])] for k in steps]))

    total = sum(imports.values())
    print(f"\n`python -X importtime` of vae-sample: each module's own import time, charged to the floor when the "
          f"floor imports it too, else to numpy.random when that imports it too, else to vae_edge when one of its "
          f"importers is ours (medians of {args.runs} runs; importtime's bookkeeping inflates them).\n")
    print(table(["charged to", "import time", "share"],
                [[k, f"{v:.1f} ms", f"{v / total:.0%}"] for k, v in imports.items()]
                + [["all imports", f"{total:.1f} ms", "100%"]]))

    target = "bundled fashion-mnist" if "bundled fashion-mnist" in models else "mlp"
    cli, api = med[(target, "CLI")] / floor, med[(target, "API")] / floor
    peak = med_rss[(target, "CLI")] / 1024
    bare = "for scale: that session decoding 64 z from numpy.random, no vae_edge"
    print(f"\nNo sampler on onnxruntime can start below the last model's own session decoding 64 latents: "
          f"{sw[bare] / sw['+ import onnxruntime (the floor)']:.2f}x the floor's wall and {mib(srss[bare])} in "
          f"the table above (the same rounds), before any code of ours runs.")
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

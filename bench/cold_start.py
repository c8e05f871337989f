"""Cold start: `vae-sample --n 64` as a fresh process, up to the PNG written, against the same job in torch.

The torch side is a minimal script: import torch, torch.load(weights_only=True) the vae-train checkpoint,
build vae_edge.train.model.VAE, decode 64 latents, torchvision.utils.save_image. Both run as fresh
processes, alternately, several times; we report the median wall time and peak RSS (from os.wait4, the
child's own rusage). The page cache is warm (each command runs once before the timed runs), as it is
on a machine that has run the command before.

A child's peak RSS counts its parent's memory at the fork (Linux keeps the high-water mark across
exec), so this process stays small: it never imports torch or numpy, and builds the checkpoint and
the export in a child of its own (--prepare).
    python bench/cold_start.py [--runs 5]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OtherLoad, cores, header, load_before, mib, ratio, table, verdict  # noqa: E402

TARGET_WALL, TARGET_RSS_MIB = 0.2, 100.0

TORCH_SCRIPT = '''\
"""Sample 64 images from a vae-train checkpoint with torch: the job of `vae-sample --n 64`."""
import sys

import torch
from torchvision.utils import save_image

from vae_edge.train.model import VAE

ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
model = VAE.from_config(ckpt["config"]).eval()
model.load_state_dict(ckpt["state_dict"])
with torch.inference_mode():
    z = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(0))
    save_image(model.probs(z), sys.argv[2], nrow=8)
'''


def run_once(cmd: list[str], png: Path | None = None) -> tuple[float, float]:
    """Run cmd as a fresh process; return (wall seconds, peak RSS in KiB); check the PNG, if any, appeared."""
    if png is not None:
        png.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0 or (png is not None and not png.is_file()):
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return wall, float(usage.ru_maxrss)  # KiB on Linux


def prepare(d: Path) -> None:
    """A vae-train checkpoint (model.pt) and its export (vae-onnx/) of the reference mlp VAE."""
    import torch

    from vae_edge.export import export_model
    from vae_edge.train import checkpoint
    from vae_edge.train.config import Config
    from vae_edge.train.model import VAE
    from vae_edge.train.train import final_checkpoint

    torch.manual_seed(0)
    cfg = Config()
    model = VAE.from_config(cfg.model()).eval()  # speed does not depend on the weights' values
    checkpoint.save(final_checkpoint(model, cfg, []), d / "model.pt")
    export_model(model, d / "vae-onnx", facts={"dataset": cfg.dataset})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs of each command (medians reported)")
    p.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # internal: write the models into this folder
    args = p.parse_args()
    if args.prepare is not None:
        prepare(args.prepare)
        return
    t_start = time.perf_counter()
    print(header("bench/cold_start.py", "onnxruntime", "torch", "torchvision", "numpy", "typer", "pillow"))
    print(load_before())
    during = OtherLoad()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        subprocess.run([sys.executable, __file__, "--prepare", str(d)], check=True)
        ckpt, onnx_dir = d / "model.pt", d / "vae-onnx"
        script = d / "torch_sample.py"
        script.write_text(TORCH_SCRIPT)
        png = d / "samples.png"
        commands = {
            "vae-sample --n 64 (onnxruntime)": [str(bin_dir / "vae-sample"), "--model", str(onnx_dir), "--n", "64",
                                                "--out", str(png)],
            "torch script (torch.load + decode + save_image)": [sys.executable, str(script), str(ckpt), str(png)],
        }
        # Where vae-sample's time and memory go: the same interpreter doing less and less.
        steps = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "+ import numpy": [sys.executable, "-c", "import numpy"],
            "+ import onnxruntime": [sys.executable, "-c", "import numpy, onnxruntime"],
            "+ import vae_edge.runtime.cli (typer, ...)": [sys.executable, "-c", "import vae_edge.runtime.cli"],
            "+ import pydantic (typer imports it to parse the options)": [
                sys.executable, "-c", "import vae_edge.runtime.cli, pydantic"],
            "the job through the Python API, no CLI (VAE.load, sample, save_grid)": [
                sys.executable, "-c", "import sys; from vae_edge.runtime import VAE; "
                "from vae_edge.runtime.images import save_grid; "
                "save_grid(VAE.load(sys.argv[1], decoder_only=True).sample(64, seed=0), sys.argv[2])",
                str(onnx_dir), str(d / "api.png")],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        }
        if importlib.util.find_spec("pydantic") is None:  # older typer releases do without it
            del steps["+ import pydantic (typer imports it to parse the options)"]
        for cmd in commands.values():  # warm the page cache
            run_once(cmd, png)
        wall = {k: [] for k in commands}
        rss = {k: [] for k in commands}
        for _ in range(args.runs):  # alternate, so a burst of load elsewhere hits both
            for name, cmd in commands.items():
                w, r = run_once(cmd, png)
                wall[name].append(w)
                rss[name].append(r)
        step_wall, step_rss = {}, {}
        for name, cmd in steps.items():
            runs = [run_once(cmd) for _ in range(args.runs)]
            step_wall[name] = statistics.median(w for w, _ in runs)
            step_rss[name] = statistics.median(r for _, r in runs)
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    names = list(commands)
    ours, theirs = names
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_rss = {k: statistics.median(v) for k, v in rss.items()}
    rows = [[k, f"{med[k]:.3f} s", f"{min(wall[k]):.3f} s", f"{max(wall[k]):.3f} s", mib(med_rss[k]),
             ratio(med[k] / med[theirs])] for k in names]
    print(f"\nSampling 64 images of the mlp VAE to a PNG grid, each a fresh process, {args.runs} runs each "
          f"(medians; default threads on both sides).\n")
    print(table(["command", "wall (median)", "min", "max", "peak RSS (median)", "wall vs torch"], rows))
    print(f"\nWhere the time and memory go: fresh processes doing part of the work (medians; peak RSS "
          f"cannot read below {mib(floor)}, this launcher's own).\n")
    print(table(["process", "wall", "peak RSS"],
                [[k, f"{step_wall[k] * 1e3:.0f} ms", mib(step_rss[k])] for k in steps]
                + [[ours, f"{med[ours] * 1e3:.0f} ms", mib(med_rss[ours])]]))
    wall_ratio = med[ours] / med[theirs]
    peak = med_rss[ours] / 1024
    print("\nTargets (issue 5).\n")
    print(table(["target", "goal", "measured", ""], [
        ["vae-sample --n 64 cold: wall vs the torch script", f"<= {TARGET_WALL}x", ratio(wall_ratio),
         verdict(wall_ratio <= TARGET_WALL)],
        ["vae-sample --n 64 cold: peak RSS", f"<= {TARGET_RSS_MIB:.0f} MiB", f"{peak:.1f} MiB",
         verdict(peak <= TARGET_RSS_MIB)]]))
    print(f"\n({time.perf_counter() - t_start:.0f} s; other processes used {during.text()} of the "
          f"{cores()} cores meanwhile)")


if __name__ == "__main__":
    main()

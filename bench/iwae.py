"""IWAE speed: the torch route against the onnxruntime route (export/score_graph.py), same model, images and noise.

For each model, both routes compute the IWAE estimate of `--images` binarized Fashion-MNIST test images
with `--k` samples each, in interleaved rounds; prints decodes per second, the ratio to torch, the time
that k = 5000 on the whole 10,000-image test set would take at that rate, and how far the two estimates
differ (they must agree to float32 rounding).
    python bench/iwae.py [--model runs/x/model.pt ...] [--images 100] [--k 1000] [--rounds 2]
Without --model, an mlp and a conv (hidden 256, 32 latents) at random initialisation: speed does not
depend on the weights' values.
"""
from __future__ import annotations

import argparse
import time

import torch

from common import OtherLoad, header, load_before, rate, ratio, table
from vae_edge.export.load import load_model
from vae_edge.export.score_graph import scorer
from vae_edge.train.data import DataError, load_data, pixels
from vae_edge.train.evaluation import iwae_sum
from vae_edge.train.model import VAE

FULL = 10_000 * 5000  # decodes for k = 5000 on the whole test set


def models(paths: list[str]) -> list[tuple[str, VAE]]:
    if not paths:
        torch.manual_seed(0)
        return [("mlp 400/20 (init)", VAE("mlp")), ("conv 256/32 (init)", VAE("conv", hidden_dim=256, latent_dim=32))]
    out = []
    for p in paths:
        model, _ = load_model(p)  # the export's checkpoint reader, with its one-line errors
        out.append((f"{p} ({model.arch} {model.hidden_dim}/{model.latent_dim})", model))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[],
                    help="a model.pt (repeatable); default: mlp and conv at init")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(header("IWAE: torch vs onnxruntime", "torch", "onnxruntime"))
    print(load_before())
    try:
        x = pixels(load_data("fashion-mnist").test[:args.images], True)
        what = f"the first {args.images} Fashion-MNIST test images, binarized"
    except DataError:
        x = (torch.rand(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3).float()
        what = f"{args.images} random binary images (Fashion-MNIST not found)"
    print(f"{what}, k = {args.k}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds; "
          f"the onnxruntime time includes exporting the graph (a few seconds)\n")
    rows = []
    for name, model in models(args.model):
        times, estimates = {"torch": [], "onnxruntime": []}, {}
        load = OtherLoad()
        for _ in range(args.rounds):
            for backend in times:
                t0 = time.perf_counter()
                total, count = iwae_sum(model, x, args.k, seed=1, show_progress=False, score=scorer(model, backend))
                times[backend].append(time.perf_counter() - t0)
                estimates[backend] = total / count
        best = {b: min(t) for b, t in times.items()}
        for backend, t in best.items():
            speed = args.images * args.k / t
            rows.append([name, backend, f"{t:.2f} s", rate(speed), ratio(best["torch"] / t),
                         f"{FULL / speed / 60:.0f} min", f"{estimates[backend]:.3f}"])
        difference = abs(estimates["torch"] - estimates["onnxruntime"])
        rows.append([name, "abs difference", "", "", "", "", f"{difference:.1e}"])
        print(f"{name}: other processes' CPU use during the runs {load.text()}")
    print()
    print(table(["model", "route", "best time", "decodes/s", "vs torch", "k=5000 x 10k images", "mean log p(x)"], rows))


if __name__ == "__main__":
    main()

"""IWAE of exported models from the exported files alone (the runtime's score.onnx route) against torch, same noise.

For each checkpoint: export it (its folder beside it, <run>/onnx), then the IWAE estimate of log p(x) on the first
`--images` binarized Fashion-MNIST test images (the bits vae-train evaluated on) with `--k` samples each, by
  torch:   train/iwae.py's torch route (the checkpoint's model in PyTorch);
  runtime: vae_edge.runtime.VAE.log_likelihood (onnxruntime on score.onnx) for a learned-prior or two-layer
           folder, fed the very noise the torch route drew; for a Gaussian-prior (format 1) folder, which has no
           score.onnx, the onnxruntime route of export/score_graph.py on the same noise.
Prints one JSON line per model: NLL (= -mean log p(x)) by each route, their largest per-image difference, seconds.
    python bench/prior_iwae.py runs/a/model.pt [...] [--images 1000] [--k 1000]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vae_edge.export import export_checkpoint
from vae_edge.export.load import load_model
from vae_edge.export.score_graph import OnnxScore
from vae_edge.runtime import VAE as RuntimeVAE
from vae_edge.train.data import load_data, pixels
from vae_edge.train.evaluation import IMAGES_PER_BATCH
from vae_edge.train.iwae import iwae_log_likelihood

SEED = 3


def score(path: Path, images: int, k: int, data_dir: str) -> dict:
    model, facts = load_model(path)
    recipe = facts["recipe"]
    data = load_data(recipe["dataset"], data_dir, recipe["image_size"], recipe["channels"], recipe["test_fraction"],
                     recipe["seed"])
    x = pixels(data.test, recipe["binarize"])[:images].float()
    folder = path.parent / "onnx"
    export_checkpoint(path, folder, force=True)
    vae = RuntimeVAE.load(folder)
    chunk = 4096 // IMAGES_PER_BATCH
    result = {"model": str(path), "prior": vae.prior,
              "latent_layers": vae.meta.get("prior", {}).get("latent_layers", 1),
              "format_version": vae.meta["format_version"], "images": images, "k": k}
    routes, onnx_score = {}, None
    for route in ("torch", "runtime"):
        g = torch.Generator().manual_seed(SEED)
        t0 = time.perf_counter()
        out = []
        for i in range(0, images, IMAGES_PER_BATCH):
            xb = x[i:i + IMAGES_PER_BATCH]
            if route == "torch":
                out.append(iwae_log_likelihood(model, xb, k, g, chunk=chunk).numpy())
            elif vae.meta["format_version"] >= 2:  # the same noise as the torch route: its chunks, concatenated
                eps = torch.cat([torch.randn((min(chunk, k - j), len(xb), model.latent_dim), generator=g)
                                 for j in range(0, k, chunk)])
                out.append(vae.log_likelihood(xb.numpy(), k, eps=eps.numpy()))
            else:
                onnx_score = onnx_score or OnnxScore(model)
                out.append(iwae_log_likelihood(model, xb, k, g, chunk=chunk, score=onnx_score).numpy())
        routes[route] = np.concatenate(out)
        result[f"nll_{route}"] = float(-routes[route].mean())
        result[f"seconds_{route}"] = time.perf_counter() - t0
    result["max_abs_diff_per_image"] = float(np.abs(routes["torch"] - routes["runtime"]).max())
    result["test_elbo_at_training"] = (facts["metrics"] or {}).get("test_loss")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = p.parse_args()
    for path in args.checkpoints:
        print(json.dumps(score(path, args.images, args.k, args.data_dir)), flush=True)


if __name__ == "__main__":
    main()

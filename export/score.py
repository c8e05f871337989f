"""The IWAE estimate of log p(x) of an exported folder from its files alone (score.onnx through the runtime, no torch
model), on the test split its recipe names, and its record in vae.json's metrics: `vae-eval FOLDER [--record]`.

The noise: image batch b (BATCH images) draws its eps [k, BATCH, latent_dim] from numpy's default_rng seeded with
SeedSequence(seed).spawn(...)[b], so an image's figure depends on its batch alone, never on how many images are
scored: the first SUBSET images (whole batches) of a full run are scored as a run of SUBSET images scores them.
The record keeps their mean too, for a test to recompute on a subset (tests/test_bundled.py).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from vae_edge.runtime import VAE as RuntimeVAE, read_meta
from vae_edge.runtime.outputs import write_text
from vae_edge.train.data import load_data, pixels, select_classes
from vae_edge.train.errors import TrainError
from vae_edge.train.progress import Bar

from .cpu import cpu_name

BATCH = 100  # images per draw of noise
SUBSET = 500  # the first images, whose mean is recorded apart
SEED = 0


def test_pixels(folder: Path, data_dir: str | None = None) -> np.ndarray:
    """The folder's test images as its likelihood is defined on them (binarized once, as vae-train scored them)."""
    recipe = read_meta(folder).get("recipe")
    if not isinstance(recipe, dict) or "dataset" not in recipe:
        raise TrainError(f"{folder}/vae.json has no training recipe: its test split is unknown")
    data = load_data(recipe["dataset"], data_dir or recipe.get("data_dir", "data"), recipe.get("image_size", 28),
                     recipe.get("channels", 1), recipe.get("test_fraction", 0.1), recipe.get("seed", 1),
                     download=False, background=recipe.get("background", "white"), keep_mapped=True)
    data = select_classes(data, recipe.get("classes"), recipe.get("exclude_classes"))
    return pixels(data.test_tensor(), bool(recipe.get("binarize"))).numpy()


def log_likelihoods(vae: RuntimeVAE, x: np.ndarray, k: int, seed: int = SEED, show_progress: bool = True) -> np.ndarray:
    """Per-image IWAE estimates of log p(x) (float64, nats) with k samples, batch by batch (see the docstring)."""
    d, batches = vae.latent_dim, -(-len(x) // BATCH)
    seeds = np.random.SeedSequence(seed).spawn(batches)
    out = np.empty(len(x))
    with Bar(len(x) * k, f"IWAE k={k} (score.onnx)", show_progress, unit="decodes") as bar:
        for b in range(batches):
            xb = x[b * BATCH:(b + 1) * BATCH]
            eps = np.random.default_rng(seeds[b]).standard_normal((k, len(xb), d), dtype=np.float32)
            out[b * BATCH:b * BATCH + len(xb)] = vae.log_likelihood(xb, k, eps=eps)
            bar.advance(len(xb) * k, note=lambda: f"NLL so far {-out[:(b + 1) * BATCH].mean():.2f}")
    return out


def first_images(lls: np.ndarray) -> tuple[int, float]:
    """(how many, their NLL): the first SUBSET images' mean of the per-image figures."""
    return min(SUBSET, len(lls)), float(-lls[:SUBSET].mean())


def record(folder: Path, lls: np.ndarray, k: int, seconds: float, cpu: str, onnxruntime: str,
           test_images: int | None = None) -> dict:
    """Write metrics.iwae into the folder's vae.json (atomically; the sha256s list the .onnx files, not vae.json).
    test_images: the test set's size, where lls holds its first images alone (vae-eval --record --limit)."""
    meta = json.loads((folder / "vae.json").read_text())
    images, nll = first_images(lls)
    entry = {"nll": float(-lls.mean()), "k": k, "images": len(lls), "test_images": test_images or len(lls),
             "split": "test",
             "route": f"score.onnx in onnxruntime {onnxruntime} (vae_edge.runtime VAE.log_likelihood): the exported "
                      "files, float32 log-weights summed in float64",
             "noise": f"image batch b of {BATCH}: numpy default_rng(SeedSequence({SEED}).spawn(...)[b])",
             "subset": {"images": images, "nll": nll,
                        "what": f"the first {images} test images' mean of the same per-image figures"},
             "seconds": round(seconds, 1), "cpu": cpu}
    meta["metrics"] = {**(meta.get("metrics") or {}), "iwae": entry}
    write_text(folder / "vae.json", json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return entry


def score_folder(folder: Path, k: int, data_dir: str | None, limit: int, write: bool) -> dict:
    """`vae-eval FOLDER`: the folder's NLL at k samples an image; with write, recorded in its vae.json."""
    import onnxruntime

    vae = RuntimeVAE.load(folder)
    if "score" not in vae.meta["files"]:
        raise TrainError(f"{folder} has no score.onnx (exported before vae-edge 0.2.0 wrote one): re-export it, "
                         "or score its model.pt with vae-eval")
    x = test_pixels(folder, data_dir)
    test_images = len(x)
    x = x[:limit] if limit > 0 else x
    t0 = time.perf_counter()
    lls = log_likelihoods(vae, x, k)
    seconds = time.perf_counter() - t0
    images, nll = first_images(lls)
    result = {"model": str(folder), "examples": len(x), f"test_nll_iwae_{k}": float(-lls.mean()),
              f"test_nll_iwae_{k}_first_{images}": nll, "iwae_seconds": seconds,
              "iwae_route": "score.onnx (onnxruntime)"}
    if write:
        record(folder, lls, k, seconds, cpu_name(), onnxruntime.__version__, test_images)
    return result

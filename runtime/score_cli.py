"""vae-score: anomaly scores of images, folders or an .npy, as CSV or JSON Lines, and thresholds calibrated on
normal images (threshold.py), without torch.

The score is VAE.score: -log p(x) estimated from the folder's score.onnx (the negative ELBO at --k 1, the negative
IWAE bound above), nats per image or bits per dimension. Inputs stream in chunks of --batch-size images (walk.py),
so memory stays bounded whatever the count; rows are written as each chunk is scored, to a temporary file that
replaces --out at the end (or to standard output, `-`).
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from . import threshold as thresholds
from . import walk
from .args import Argument, Option, run
from .cli import (BATCH_OPT, GLOB_OPT, MODEL_OPT, PRECISION_OPT, PROVIDER_OPT, QUIET_OPT, STRICT_OPT, THREADS_OPT,
                  _check, _close, _echo, _errors, _load, _using)
from .inputs import check_count, check_seed
from .outputs import STDOUT, atomic_file, check_output


def score(
    inputs: List[str] = Argument(
        ..., metavar="INPUTS",
        help="Image files, folders (walked recursively; image suffixes, or --glob), or one .npy of shape (N, C, H, W) "
             "or (N, C*H*W), float in [0, 1] or uint8 (- reads it from standard input)."),
    out: str = Option(STDOUT, "--out", "-o", help="Where to write the scores (- for standard output, the default)."),
    jsonl: bool = Option(False, "--jsonl", help="Write JSON Lines instead of CSV."),
    model: Optional[str] = MODEL_OPT,
    k: int = Option(1, "--k", help="Importance samples per image: 1 scores the negative ELBO, more the negative "
                                   "IWAE bound (closer to -log p(x), k times the work)."),
    seed: int = Option(0, "--seed", help="Seed of the noise that draws z (docs/noise.md): image i's own noise."),
    bits_per_dim: bool = Option(False, "--bits-per-dim", help="Scores in bits per pixel value instead of nats per "
                                                              "image."),
    glob: Optional[str] = GLOB_OPT,
    threshold: Optional[Path] = Option(None, "--threshold", help="A threshold.json from --calibrate --save: adds a "
                                                                 "flag column, 1 where the score is above it."),
    calibrate: bool = Option(False, "--calibrate", help="INPUTS are normal images: pick the threshold at --fpr."),
    fpr: float = Option(0.01, "--fpr", help="With --calibrate: the share of normal images flagged."),
    save: Optional[Path] = Option(None, "--save", help="With --calibrate: write the threshold and what it was "
                                                       "computed on to this JSON file."),
    strict: bool = STRICT_OPT,
    quiet: bool = QUIET_OPT,
    precision: str = PRECISION_OPT,
    threads: Optional[int] = THREADS_OPT,
    provider: str = PROVIDER_OPT,
    batch_size: int = BATCH_OPT,
) -> None:
    """Score images by how badly the model explains them (-log p(x)); higher is more anomalous."""
    with _errors():
        # k and seed, checked again by VAE.score, are checked here first: the threshold's setting holds them
        k = check_count(k, "--k")
        check_seed(seed)
        _check(not (calibrate and threshold), "--calibrate picks a threshold; --threshold uses one: give one of them")
        _check(calibrate or save is None, "--save writes a threshold: use it with --calibrate")
        if calibrate:
            thresholds.allowed_false_positives(1 << 62, fpr)  # the rate itself, before any work
        for path, option in ((out, "--out"), (save, "--save")):
            if path is not None and str(path) != STDOUT:
                check_output(path, option)
        walk.is_npy(inputs)  # a mix of .npy and images refused before the model loads
        vae = _load(model, precision, threads, batch_size, provider)
        _using(vae)
        setting = {"precision": precision, "k": k, "pixel_rule": vae.pixel_rule, "seed": seed,
                   "units": thresholds.units(bits_per_dim)}
        t = thresholds.load(threshold, setting, thresholds.model_files(vae)) if threshold is not None else None
        walked = walk.Walk(inputs, glob, vae.input_shape, batch_size, strict, quiet, f"vae-score k={k}",
                           vae.background)
        scored = walked.map(lambda x, start: vae.score(x, k=k, seed=seed, bits_per_dim=bits_per_dim, start=start))
        if calibrate:
            return _calibrate(scored, fpr, setting, thresholds.model_files(vae), save, quiet, walked)
        n = _write(scored, out, "index" if walked.npy else "path", jsonl, t)
        where = "standard output" if out == STDOUT else out
        _close(f"scored {n} images ({setting['units']}, k={k}, seed {seed}) to {where}", walked, quiet, (out,))




def _write(scored, out: str, name: str, jsonl: bool, t: Optional[float]) -> int:
    """Stream the rows to out (a temporary file renamed at the end, or standard output); returns their count."""
    if out == STDOUT:
        return _rows(sys.stdout, scored, name, jsonl, t)
    with atomic_file(out) as f:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        try:
            n = _rows(text, scored, name, jsonl, t)
            text.flush()
        finally:
            text.detach()  # atomic_file closes (or removes) the file itself
    return n


def _rows(f, scored, name: str, jsonl: bool, t: Optional[float]) -> int:
    columns = [name, "score"] + (["flag"] if t is not None else [])
    writer = None if jsonl else csv.writer(f, lineterminator="\n")
    if writer:
        writer.writerow(columns)
    n = 0
    for names, scores in scored:
        for row_name, s in zip(names, scores.tolist()):
            row = [int(row_name) if name == "index" else row_name, s] + ([int(s > t)] if t is not None else [])
            if writer:
                writer.writerow([row[0], repr(s), *row[2:]])
            else:
                f.write(json.dumps(dict(zip(columns, row[:2] + [bool(x) for x in row[2:]]))) + "\n")
        n += len(names)
        f.flush()
    return n


def _calibrate(scored, fpr: float, setting: dict, files: dict, save: Optional[Path], quiet: bool,
               walked: walk.Walk) -> None:
    scores = np.concatenate([s for _, s in scored] or [np.empty(0)])
    t, flagged = thresholds.calibrate(scores, fpr)
    if save is not None:
        thresholds.save(save, thresholds.record(t, flagged, fpr, len(scores), setting, files))
    if not quiet or save is None:
        _echo(f"threshold {t!r} ({setting['units']}): flags {flagged} of {len(scores)} normal images (fpr {fpr:g})"
              f"{f'; saved to {save}' if save else ''}{walked.skips()}")


def score_main() -> None:
    run(score)

"""vae-score's thresholds: the score at a false-positive rate on normal images, saved with what it was computed on,
and refused where it would be read against other scores.

A threshold t flags a score s when s > t. Calibrated on n normal images at a rate r, it is the largest score
that leaves at most floor(n r) of them flagged (the (1 - r) empirical quantile), so at least ceil(1 / r) images
are needed: with fewer, no image may be flagged and the rate cannot be told from 0.
"""
from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import RuntimeInputError
from .folder import PRECISIONS
from .outputs import write_text

FORMAT = "vae-score-threshold"
# What a threshold must have been computed with to compare with today's scores (the seed only redraws the noise).
MATCHED = ("precision", "k", "pixel_rule", "units")


def units(bits_per_dim: bool) -> str:
    """The unit of a score, in the words a threshold file records."""
    return "bits per dimension" if bits_per_dim else "nats per image"


def allowed_false_positives(n: int, fpr: float) -> int:
    """floor(n fpr), in exact arithmetic on fpr as written (0.01 is one in a hundred, not 0.01000000000000000021)."""
    if not (isinstance(fpr, float) and 0 < fpr < 1):
        raise RuntimeInputError(f"--fpr must be a rate between 0 and 1 (exclusive), got {fpr!r}")
    rate = Fraction(repr(fpr))
    allowed = math.floor(n * rate)
    if allowed < 1:
        need = math.ceil(1 / rate)
        raise RuntimeInputError(f"{n} normal images are too few for a false-positive rate of {fpr:g}: at least "
                                f"{need} are needed, so that one image in {need} may be flagged")
    return allowed


def calibrate(scores: np.ndarray, fpr: float) -> tuple[float, int]:
    """(t, how many of scores exceed it): the largest score with at most floor(n fpr) scores above it."""
    allowed = allowed_false_positives(len(scores), fpr)
    t = float(np.sort(scores)[len(scores) - allowed - 1])
    return t, int((scores > t).sum())


def record(t: float, flagged: int, fpr: float, n: int, setting: dict, files: dict) -> dict:
    """The threshold file's contents: the threshold, the rate and count it came from, the setting its scores were
    computed with (MATCHED, the seed), and the sha256 of each file of the model that precision loads."""
    return {"format": FORMAT, "threshold": t, "fpr": fpr, "images": n, "flagged": flagged, **setting,
            "files": files}


def save(path: Path, contents: dict) -> None:
    write_text(path, json.dumps(contents, indent=2, sort_keys=True) + "\n")


def load(path: Path, setting: dict, files: dict) -> float:
    """The threshold in path, refused in one line where it was made for another model, precision, k, pixel rule
    or unit."""
    return check(read(path), path, setting, files)["threshold"]


def read(path: Path) -> dict:
    """A threshold file's contents, refused in one line where it is not one."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuntimeInputError(f"--threshold {path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RuntimeInputError(f"--threshold {path} is not JSON: {str(e)[:200]}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or not isinstance(saved.get("threshold"), float):
        raise RuntimeInputError(f"--threshold {path} is not a threshold written by vae-score --calibrate --save")
    return saved


def check(saved: dict, path: Path, setting: dict, files: dict, matched: tuple[str, ...] = MATCHED) -> dict:
    """saved, refused in one line where the setting differs on a matched key or the files' sha256 differ (vae-serve
    matches k and units per request: it passes the rest)."""
    for key in matched:
        if saved.get(key) != setting[key]:
            raise RuntimeInputError(f"--threshold {path} was made with {key} {saved.get(key)!r}, these scores with "
                                    f"{setting[key]!r}; score with the same {key} or calibrate again")
    if saved.get("files") != files:
        raise RuntimeInputError(f"--threshold {path} was made for another model (its files' sha256 differ); "
                                f"calibrate again on this one")
    return saved


def model_files(vae) -> dict:
    """The sha256 of each file the loaded precision reads, as vae.json lists (and the load checked) them."""
    meta = vae.meta
    keys = [*PRECISIONS[vae.precision], *(key for key in ("prior", "score") if key in meta["files"])]
    return {key: meta["files"][key]["sha256"] for key in keys}

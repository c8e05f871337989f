"""A folder's score.onnx in the runtime: the IWAE log-weights of images, and from them the IWAE estimate of
log p(x) (VAE.log_likelihood) and the anomaly score, its negative (VAE.score, vae-score).

score.onnx: x [batch, C, H, W] (the pixels the likelihood is defined on) and eps [samples, batch, latent_dim] ->
log_w [samples, batch] = log p(x|z) + log p(z) - log q(z|x), z drawn from q(z|x) by eps, in float32 inside the
graph, log p(x|z) from the decoder's logits (docs/priors.md). Format 2 folders always carry it; format 1 folders
since vae-edge 0.2.0 (0.1.0's have none: scoring them is refused, everything else reads).
"""
from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from . import graph, random
from .errors import ModelFolderError
from .folder import ModelFolder

IMAGES_PER_SCORE = 100  # images per score.onnx run
DECODES_PER_SCORE = 4096  # samples x images per run: as train/iwae.py
BINARY_THRESHOLD = 0.5  # a binarized model's pixel is 1 where the grey level is >= this


def pixel_rule(binarized: bool) -> str:
    """The pixels a score is computed on, in words: what a threshold file records and checks. binarized: trained
    on 0/1 pixels (vae.json's recipe.binarize, vae-train --binarize; ModelFolder.binarized)."""
    return f"binary: x >= {BINARY_THRESHOLD:g} is 1" if binarized else "grey levels in [0, 1]"


def to_pixels(x: np.ndarray, binary: bool) -> np.ndarray:
    """Checked float32 pixels in [0, 1] -> the pixels the likelihood is defined on: thresholded for a binary model."""
    return (x >= np.float32(BINARY_THRESHOLD)).astype(np.float32) if binary else x


class Scorer:
    """score.onnx's session, made on first use under a lock and held to its contract then (graph.py);
    session() opens files["score"]."""

    def __init__(self, folder: ModelFolder, session):
        self._latent, self._shape, self._session = folder.latent_dim, folder.input_shape, session
        self._lock = threading.Lock()
        self._scorer: Any = None

    def log_weights(self, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """score.onnx: x [n, C, H, W] float32, eps [m, n, latent_dim] -> log w [m, n]."""
        if self._scorer is None:
            with self._lock:
                if self._scorer is None:
                    scorer = self._session()
                    self._scorer = graph.check_score(scorer, self._shape, self._latent, scorer.name)
        eps = np.ascontiguousarray(eps, dtype=np.float32)
        return self._scorer.run(["log_w"], {"x": x, "eps": eps}, [eps.shape[:2]])[0]

    def log_likelihood(self, x: np.ndarray, k: int, seed=None, eps=None, start: int = 0) -> np.ndarray:
        """The IWAE estimate of log p(x) with k samples, per image (float64, nats); x float32 [N, C, H, W].

        eps [k, N, latent_dim] (optional) is the noise to use; else image i's sample s is normals (i k + s) d ..
        (i k + s + 1) d - 1 of the seed's stream eps (docs/noise.md), i counted from start (the index of x[0] in a
        set scored in chunks), so an image's estimate depends on its index alone. The sum over samples is a running
        logsumexp in float64, as train/iwae.py's."""
        n, d = x.shape[0], self._latent
        seed = random.fresh_seed() if seed is None and eps is None else seed
        out = np.empty(n)
        for i in range(0, n, IMAGES_PER_SCORE):
            xb = x[i:i + IMAGES_PER_SCORE]
            chunk = max(1, DECODES_PER_SCORE // len(xb))
            acc = np.full(len(xb), -np.inf)
            for j in range(0, k, chunk):
                m = min(chunk, k - j)
                e = eps[j:j + m, i:i + len(xb)] if eps is not None else random.gaussian_runs(
                    seed, (np.arange(start + i, start + i + len(xb)) * k + j) * d, m * d
                ).reshape(len(xb), m, d).transpose(1, 0, 2)
                lw = self.log_weights(xb, e).astype(np.float64)
                top = lw.max(0)
                acc = np.logaddexp(acc, top + np.log(np.exp(lw - top).sum(0)))
            out[i:i + len(xb)] = acc - math.log(k)
        return out


def missing(folder) -> ModelFolderError:
    """A format-1 folder without score.onnx (vae-export before 0.2.0): the one line that says what to do."""
    return ModelFolderError(f"{folder} has no score.onnx (exported before vae-edge 0.2.0 wrote one); re-export it "
                            f"with vae-export to score images")

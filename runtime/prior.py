"""A format-2 folder's learned prior in the runtime: prior.onnx turns noise into the decoder's z, score.onnx gives the
IWAE log-weights of images, so that sample() and log_likelihood() need nothing but the exported files.

The noise comes from runtime/random.py (docs/noise.md): eps ~ N(0, I) on stream eps, the numbers a Gaussian-prior
model's sample() decodes as they are; u ~ U[0, 1) (a mixture's component, floor(u K)) on stream u. temperature
scales eps, never u.
"""
from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from . import graph, random
from .folder import input_shape, latent_dim

IMAGES_PER_SCORE = 100  # images per score.onnx run
DECODES_PER_SCORE = 4096  # samples x images per run: as train/iwae.py


def describe(meta: dict) -> str:
    """One line for vae-info: which prior, how many latent layers."""
    p = meta.get("prior")
    if not p:
        return "gaussian: N(0, I), one latent layer"
    name = f"vamp: a mixture of the posteriors at {p['components']} pseudo-inputs" if p["name"] == "vamp" \
        else "gaussian: N(0, I)"
    layers = (f"two latent layers, z = [z1, z2] of {p['layer_sizes'][0]} + {p['layer_sizes'][1]}"
              if p["latent_layers"] == 2 else "one latent layer")
    return f"{name}, {layers} (prior.onnx: {', '.join(p['sample']['inputs'])} -> z)"


class Prior:
    """prior.onnx's session (made at load) and score.onnx's (made on first use, under a lock), each held to its
    contract when it is made (graph.py); session(key) makes the session of files[key]."""

    def __init__(self, meta: dict, session):
        self.spec = meta["prior"]
        self.inputs = list(self.spec["sample"]["inputs"])
        self._latent, self._shape, self._session = latent_dim(meta), input_shape(meta), session
        sampler = session("prior")
        self._sampler = graph.check_prior(sampler, self.inputs, self._latent, sampler.name)
        self._lock = threading.Lock()
        self._scorer: Any = None  # score.onnx's session, made on first use

    @property
    def name(self) -> str:
        return self.spec["name"]

    def _make_scorer(self):
        scorer = self._session("score")
        return graph.check_score(scorer, self._shape, self._latent, scorer.name)

    def z(self, eps: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """The decoder's z [n, latent_dim] for noise eps [n, latent_dim] (and u [n] for a mixture)."""
        feed = {"eps": np.ascontiguousarray(eps, dtype=np.float32)}
        if "u" in self.inputs:
            feed["u"] = np.ascontiguousarray(u, dtype=np.float32)
        return self._sampler.run(["z"], feed, [(len(eps), self._latent)])[0]

    def log_weights(self, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """score.onnx: x [n, C, H, W] float32, eps [m, n, latent_dim] -> log w [m, n]."""
        if self._scorer is None:
            with self._lock:
                if self._scorer is None:
                    self._scorer = self._make_scorer()
        eps = np.ascontiguousarray(eps, dtype=np.float32)
        return self._scorer.run(["log_w"], {"x": x, "eps": eps}, [eps.shape[:2]])[0]

    def log_likelihood(self, x: np.ndarray, k: int, seed=None, eps=None) -> np.ndarray:
        """The IWAE estimate of log p(x) with k samples, per image (float64, nats); x float32 [N, C, H, W].

        eps [k, N, latent_dim] (optional) is the noise to use; else image i's sample s is normals (i k + s) d ..
        (i k + s + 1) d - 1 of the seed's stream eps (docs/noise.md), so an image's estimate depends on it alone.
        The sum over samples is a running logsumexp in float64, as train/iwae.py's."""
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
                    seed, (np.arange(i, i + len(xb)) * k + j) * d, m * d).reshape(len(xb), m, d).transpose(1, 0, 2)
                lw = self.log_weights(xb, e).astype(np.float64)
                top = lw.max(0)
                acc = np.logaddexp(acc, top + np.log(np.exp(lw - top).sum(0)))
            out[i:i + len(xb)] = acc - math.log(k)
        return out

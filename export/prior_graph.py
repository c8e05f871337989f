"""The graphs of a model whose prior is not one layer of N(0, I): prior.onnx (noise -> the decoder's z) and score.onnx
(x and noise -> IWAE log-weights, score_graph.py), their parity with PyTorch, and what vae.json says about them. A
Gaussian-prior (format 1) folder carries the same score.onnx, which older readers ignore.

prior.onnx: eps [batch, latent_dim] standard normal and, for a VampPrior, u [batch] uniform in [0, 1) (the
component is floor(u K)) -> z [batch, latent_dim]. The VampPrior's components are constants of the graph.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch

from vae_edge.runtime.folder import FORMAT_VERSION_WRITTEN
from vae_edge.train.iwae import Score
from vae_edge.train.model import VAE
from vae_edge.train.prior import Gaussian, WithPrior

from .errors import ParityError
from .graphs import EXAMPLE_BATCH, export_graph, lowest_ir, rename_axes
from .parity import PARITY_BATCH_SIZES, TOLERANCE, session

MIN_VAE_EDGE = "0.2.0"  # the first vae-edge that reads format 2
SCORE_SAMPLES = 3  # samples per image in the score graph's parity check
SCORE_RTOL = 1e-5  # log-weights are sums over every pixel (hundreds of nats): compared relative to their size


def format_version(model: VAE) -> int:
    """The folder's format_version: 1 for one layer of N(0, I) (the encoder and decoder say it all), 2 for any other
    prior, whose folder carries prior.onnx and score.onnx (docs/priors.md)."""
    return FORMAT_VERSION_WRITTEN if isinstance(model.prior, Gaussian) else 2


class PriorSampler(WithPrior):
    """(eps, u) -> z: the prior's sample with the VampPrior's components computed once, as constants."""

    def forward(self, eps, u=None):
        return self.vae.prior.sample(eps, u, self.mixture())


def prior_graph(model: VAE, opset: int) -> onnx.ModelProto:
    """prior.onnx: eps [batch, latent_dim] (, u [batch]) -> z [batch, latent_dim]."""
    g = torch.Generator().manual_seed(0)
    examples = (torch.randn(EXAMPLE_BATCH, model.latent_dim, generator=g), torch.rand(EXAMPLE_BATCH, generator=g))
    names = list(model.prior.noise)
    batch = torch.export.Dim("batch")
    proto = export_graph(PriorSampler(model).eval(), examples[:len(names)], names, ["z"],
                         {name: {0: batch} for name in names}, opset)
    rename_axes(proto, {})
    return lowest_ir(proto)


@torch.no_grad()
def check_prior_parity(model: VAE, prior: bytes, score: bytes) -> dict:
    """Max abs difference of z (prior.onnx) and max relative difference of log_w (score.onnx), PyTorch vs
    onnxruntime, on fresh random noise at each parity batch size; ParityError beyond the tolerances."""
    sample = session(prior)
    rng = np.random.default_rng()  # fresh inputs at every export, never zeros
    worst = {"z": 0.0, "log_w_rel": score_gap(model, score)}
    for n in PARITY_BATCH_SIZES:
        eps = rng.standard_normal((n, model.latent_dim), dtype=np.float32)
        u = rng.random(n, dtype=np.float32)
        feed = dict(zip(model.prior.noise, (eps, u)))
        ref = model.prior.sample(torch.from_numpy(eps), torch.from_numpy(u)).numpy()
        (got,) = sample.run(["z"], feed)
        worst["z"] = max(worst["z"], _gap(ref, got))
    report = {"tolerance": TOLERANCE, "log_w_rtol": SCORE_RTOL, "batch_sizes": list(PARITY_BATCH_SIZES), **worst}
    if not (worst["z"] <= TOLERANCE and worst["log_w_rel"] <= SCORE_RTOL):
        raise ParityError(f"the prior or score graph differs from PyTorch (z max abs {worst['z']:.3g}, tolerance "
                          f"{TOLERANCE:g}; log_w max relative {worst['log_w_rel']:.3g}, tolerance {SCORE_RTOL:g}); "
                          f"nothing written")
    return report


def check_score_parity(model: VAE, score: bytes) -> dict:
    """A Gaussian-prior (format 1) folder's score.onnx against PyTorch: vae.json's parity.score."""
    gap = score_gap(model, score)
    if not gap <= SCORE_RTOL:
        raise ParityError(f"the score graph differs from PyTorch (log_w max relative {gap:.3g}, tolerance "
                          f"{SCORE_RTOL:g}); nothing written")
    return {"log_w_rtol": SCORE_RTOL, "batch_sizes": list(PARITY_BATCH_SIZES), "log_w_rel": gap}


@torch.no_grad()
def score_gap(model: VAE, score: bytes) -> float:
    """The max relative difference of log_w, score.onnx against train/iwae.py's Score, on fresh random 0/1 images
    and noise at each parity batch size (relative: log-weights are sums over every pixel)."""
    weigh, scorer = session(score), Score(model)
    rng = np.random.default_rng()  # fresh inputs at every export, never zeros
    worst = 0.0
    for n in PARITY_BATCH_SIZES:
        x = (rng.random((n, *model.input_shape)) < 0.5).astype(np.float32)
        eps = rng.standard_normal((SCORE_SAMPLES, n, model.latent_dim), dtype=np.float32)
        ref = scorer(torch.from_numpy(x), torch.from_numpy(eps)).numpy()
        (got,) = weigh.run(["log_w"], {"x": x, "eps": eps})
        worst = max(worst, _gap(ref, got) / max(1.0, float(np.abs(ref).max())))
    return worst


def _gap(ref: np.ndarray, got: np.ndarray) -> float:
    if got.shape != ref.shape:
        raise ParityError(f"onnxruntime gives shape {list(got.shape)}, PyTorch {list(ref.shape)}")
    d = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    return d if np.isfinite(d) else float("inf")


def describe(model: VAE) -> dict:
    """vae.json's "prior": the prior's description (prior.onnx's noise inputs) and the score graph's inputs."""
    return {**model.prior.describe(),
            "score": {"file": "score", "inputs": {"x": ["batch", *model.input_shape],
                                                  "eps": ["samples", "batch", model.latent_dim]},
                      "output": "log_w [samples, batch]: log p(x|z) + log p(z) - log q(z|x), nats"}}

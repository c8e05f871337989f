"""The graphs of a model whose prior is not one layer of N(0, I): prior.onnx (noise -> the decoder's z) and score.onnx
(x and noise -> IWAE log-weights), their parity with PyTorch, and what vae.json says about them. A Gaussian-prior
(format 1) folder carries the same score.onnx, which older readers ignore.

prior.onnx: eps [batch, latent_dim] standard normal and, for a VampPrior, u [batch] uniform in [0, 1) (the
component is floor(u K)) -> z [batch, latent_dim]. The VampPrior's components are constants of the graph.
score.onnx: x [batch, C, H, W] (the pixels the likelihood is defined on) and eps [samples, batch, latent_dim] ->
log_w [samples, batch] = log p(x|z) + log p(z) - log q(z|x) at z ~ q(z|x) drawn from eps, each exact, from logits
(train/iwae.py, Score); the IWAE estimate of log p(x) is logsumexp over the samples minus log k.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

from vae_edge.runtime.folder import FORMAT_VERSIONS
from vae_edge.train.iwae import log_weights_graph
from vae_edge.train.model import VAE

from .errors import ParityError
from .graphs import NATIVE_OPSET, EXAMPLE_BATCH, export_graph, lowest_ir
from .parity import PARITY_BATCH_SIZES, TOLERANCE, session

FORMAT_VERSION = FORMAT_VERSIONS[-1]  # a folder that carries prior.onnx and score.onnx: 2
MIN_VAE_EDGE = "0.2.0"  # the first vae-edge that reads format 2
SCORE_SAMPLES = 3  # samples per image in the score graph's parity check
SCORE_RTOL = 1e-5  # log-weights are sums over every pixel (hundreds of nats): compared relative to their size


def learned(model: VAE) -> bool:
    """True where the folder needs prior.onnx and score.onnx (a learned prior or two latent layers)."""
    return not model.standard


def noise_inputs(model: VAE) -> list[str]:
    """prior.onnx's inputs, in order."""
    return ["eps", "u"] if model.prior == "vamp" else ["eps"]


class PriorSampler(nn.Module):
    """(eps, u) -> z: model.prior_sample with the VampPrior's components computed once, as constants."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae
        self.components = vae.prior == "vamp"
        if self.components:
            with torch.no_grad():
                mu, logvar = vae.vamp_components()
            self.register_buffer("mu_k", mu.detach().clone())
            self.register_buffer("logvar_k", logvar.detach().clone())

    def forward(self, eps, u=None):
        return self.vae.prior_sample(eps, u, (self.mu_k, self.logvar_k) if self.components else None)


def prior_graph(model: VAE, opset: int) -> onnx.ModelProto:
    """prior.onnx: eps [batch, latent_dim] (, u [batch]) -> z [batch, latent_dim]."""
    g = torch.Generator().manual_seed(0)
    examples = (torch.randn(EXAMPLE_BATCH, model.latent_dim, generator=g), torch.rand(EXAMPLE_BATCH, generator=g))
    names = noise_inputs(model)
    batch = torch.export.Dim("batch")
    proto = export_graph(PriorSampler(model).eval(), examples[:len(names)], names, ["z"],
                         {name: {0: batch} for name in names}, opset)
    _rename_axes(proto, {})
    return lowest_ir(proto)


def score_graph(model: VAE, opset: int) -> onnx.ModelProto:
    """score.onnx: x [batch, C, H, W], eps [samples, batch, latent_dim] -> log_w [samples, batch]."""
    proto = onnx.load_from_string(log_weights_graph(model, max(opset, NATIVE_OPSET), from_images=True))
    if proto.opset_import[0].version != opset:
        proto = onnx.version_converter.convert_version(proto, opset)
    _rename_axes(proto, {"n": "batch", "m": "samples"})
    return lowest_ir(proto)


def _rename_axes(proto: onnx.ModelProto, names: dict) -> None:
    """Symbolic dims named as vae.json says (batch, samples); a lone symbol on the first axis is the batch."""
    g = proto.graph
    for v in [*g.input, *g.output, *g.value_info]:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in names:
                d.dim_param = names[d.dim_param]
            elif d.dim_param and not names:
                d.dim_param = "batch"


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
        feed = dict(zip(noise_inputs(model), (eps, u)))
        ref = model.prior_sample(torch.from_numpy(eps), torch.from_numpy(u)).numpy()
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
    from vae_edge.train.iwae import Score

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
    """vae.json's "prior": what the prior is, prior.onnx's noise inputs and the score graph's inputs."""
    d2 = model.fc21.out_features
    noise = {"eps": {"shape": ["batch", model.latent_dim], "distribution": "standard normal",
                     "temperature": "multiplies eps"}}
    if model.prior == "vamp":
        noise["u"] = {"shape": ["batch"], "distribution": "uniform on [0, 1)",
                      "use": f"the mixture component floor(u * {model.prior_components}); never scaled by temperature"}
    return {"name": model.prior, "components": model.prior_components, "latent_layers": model.latent_layers,
            "layer_sizes": [model.latent_dim - d2, d2] if model.latent_layers == 2 else [model.latent_dim],
            "z_layout": "[z1, z2]" if model.latent_layers == 2 else "z",
            "sample": {"file": "prior", "inputs": noise, "output": "z"},
            "score": {"file": "score", "inputs": {"x": ["batch", *model.input_shape],
                                                  "eps": ["samples", "batch", model.latent_dim]},
                      "output": "log_w [samples, batch]: log p(x|z) + log p(z) - log q(z|x), nats"}}

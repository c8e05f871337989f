"""Learned priors and a second layer of latents: their networks, their exact log densities, their samplers.

- gaussian: p(z) = N(0, I), the 2014 model.
- vamp: the VampPrior (Tomczak and Welling, AISTATS 2018), p(z) = (1/K) sum_k q(z | u_k), a mixture of the
  encoder's own posteriors at K learned pseudo-inputs u_k (images in [0, 1], the paper's K = 500 by default).
- two latent layers (Tomczak and Welling's HVAE): p(z2) p(z1 | z2) p(x | z1, z2), inferred as
  q(z2 | x) q(z1 | x, z2). The decoder takes z = [z1, z2] (latent_dim numbers, half each); p(z2) is the prior
  above (gaussian or vamp; a VampPrior mixes the posteriors q(z2 | u_k) of the top layer).

A sample from the prior is a function of noise: eps [.., latent_dim] standard normal (eps[..., :d1] for z1,
eps[..., d1:] for z2) and, for a mixture, u [..] uniform in [0, 1), which picks the component floor(u K).
Every density is written with ops that export to plain ONNX (MatMul, Exp, Log, ReduceLogSumExp, Gather, ...).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PRIORS = ("gaussian", "vamp")
LATENT_LAYERS = (1, 2)
DEFAULT_COMPONENTS = 500  # the VampPrior paper's K
LOG_2PI = math.log(2 * math.pi)


def check(prior: str, components: int, latent_layers: int, latent_dim: int) -> None:
    """ValueError, one line, for a combination the model cannot be built with."""
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
    if prior == "vamp" and components < 1:
        raise ValueError(f"a VampPrior needs at least 1 component, got {components}")
    if latent_layers not in LATENT_LAYERS:
        raise ValueError(f"latent_layers must be 1 or 2, got {latent_layers}")
    if latent_layers == 2 and (latent_dim < 2 or latent_dim % 2):
        raise ValueError(f"two latent layers split latent_dim in halves (z1, z2): it must be even, got {latent_dim}")


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last axis."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last axis."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


def log_mixture(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k N(z; mu_k, diag(exp(logvar_k))), z [..., D], mu and logvar [K, D] -> [...].

    The squared distances to all K components as three matrix products (sum z^2/var - 2 z.mu/var + sum mu^2/var):
    memory [..., K] instead of [..., K, D], and a MatMul for onnxruntime."""
    prec = torch.exp(-logvar)  # [K, D]
    flat = z.reshape(-1, z.shape[-1])
    sq = flat.pow(2) @ prec.T - 2 * flat @ (mu * prec).T + (mu.pow(2) * prec).sum(-1)  # [M, K]
    log_comp = -0.5 * (sq + logvar.sum(-1) + z.shape[-1] * LOG_2PI)
    # logsumexp by hand: onnx's version converter cannot take ReduceLogSumExp below opset 18
    top = log_comp.amax(-1, keepdim=True)
    lse = top.squeeze(-1) + torch.log(torch.exp(log_comp - top).sum(-1))
    return (lse - math.log(mu.shape[0])).reshape(z.shape[:-1])


def pick(u: torch.Tensor, k: int) -> torch.Tensor:
    """The mixture component of each uniform draw u in [0, 1): floor(u K), at most K - 1 (long)."""
    return torch.clamp(torch.floor(u * k), max=k - 1).long()


class VampPrior(nn.Module):
    """K learned pseudo-inputs; the prior is the mixture of the (top-layer) posteriors at them."""

    def __init__(self, components: int, input_shape):
        super().__init__()
        # As in the paper: pseudo-inputs start near grey and are kept in [0, 1] (hardtanh).
        g = torch.Generator().manual_seed(0)
        self.pseudo_inputs = nn.Parameter(0.5 + 0.05 * torch.randn((components, *input_shape), generator=g))

    def inputs(self) -> torch.Tensor:
        return F.hardtanh(self.pseudo_inputs, 0.0, 1.0)


class Ladder(nn.Module):
    """The second latent layer's networks: q(z1 | x, z2) from the encoder's features and z2, p(z1 | z2)."""

    def __init__(self, hidden_dim: int, d1: int, d2: int):
        super().__init__()
        self.q_h, self.q_z = nn.Linear(hidden_dim, hidden_dim), nn.Linear(d2, hidden_dim, bias=False)
        self.q_mu, self.q_logvar = nn.Linear(hidden_dim, d1), nn.Linear(hidden_dim, d1)
        self.p_z = nn.Linear(d2, hidden_dim)
        self.p_mu, self.p_logvar = nn.Linear(hidden_dim, d1), nn.Linear(hidden_dim, d1)

    def posterior(self, h: torch.Tensor, z2: torch.Tensor, lo: float, hi: float):
        """q(z1 | x, z2): h [N, H] (or broadcastable to z2's rows), z2 [..., N, d2] -> mu, logvar [..., N, d1]."""
        g = F.relu(self.q_h(h) + self.q_z(z2))
        return self.q_mu(g), self.q_logvar(g).clamp(lo, hi)

    def conditional(self, z2: torch.Tensor, lo: float, hi: float):
        """p(z1 | z2): mu, logvar [..., d1]."""
        g = F.relu(self.p_z(z2))
        return self.p_mu(g), self.p_logvar(g).clamp(lo, hi)

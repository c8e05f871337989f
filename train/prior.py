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

Each of Gaussian, Vamp and Hierarchy is a Prior: log_prob, sample (from noise), noise (the inputs it needs), kl (the
analytic KL where there is one), mixture (the VampPrior's components) and describe (vae.json's "prior").
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .precision import layers, widen

# exp(logvar) must neither underflow to 0 nor overflow; this range keeps training finite.
LOGVAR_MIN, LOGVAR_MAX = -20.0, 10.0
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


class Prior:
    """p(z) over the decoder's z: what every prior gives. Mixture is (mu_k, logvar_k) [K, D] where the caller computed
    the VampPrior's components once (mixture()); left out, they are computed from the model as it is.

    Gaussian and Vamp are distributions of one layer (log_prob_top, sample_top); with one latent layer they are the
    prior of all of z, and a Hierarchy puts one over z2.
    """

    name: str
    noise: tuple[str, ...] = ("eps",)  # sample's inputs, in order (prior.onnx's)
    components: int | None = None  # K of a mixture
    layer_sizes: list[int]

    def log_prob(self, z: torch.Tensor, mixture=None) -> torch.Tensor:
        """log p(z) [...] of z [..., latent_dim], exact."""
        # z = [z1, z2] with z1 empty: the no-op slices keep the node names, so the bytes, of 0.2.0's exported graphs
        return self.log_prob_top(z[..., 0:], mixture)

    def sample(self, eps: torch.Tensor, u: torch.Tensor | None = None, mixture=None) -> torch.Tensor:
        """z [N, latent_dim] from eps [N, latent_dim] ~ N(0, I) and, for a mixture, u [N] ~ U[0, 1)."""
        _, eps2 = eps[..., :0], eps[..., 0:]  # as in log_prob
        return self.sample_top(eps2, u, mixture)

    def log_prob_top(self, z: torch.Tensor, mixture=None) -> torch.Tensor:
        """log p of one layer's z [..., D]."""
        raise NotImplementedError

    def sample_top(self, eps: torch.Tensor, u: torch.Tensor | None = None, mixture=None) -> torch.Tensor:
        """One layer's z [N, D] from its eps [N, D] (and u [N])."""
        raise NotImplementedError

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor | None:
        """KL(q(z|x) || p(z)) per example for q = N(mu, exp(logvar)), analytic; None where there is no closed form."""
        return None

    def mixture(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The VampPrior's K components (mu_k, logvar_k [K, top layer's size]); None for another prior."""
        return None

    def describe(self) -> dict:
        """vae.json's "prior" (docs/priors.md), less the score graph's inputs."""
        latent_dim = sum(self.layer_sizes)
        noise = {"eps": {"shape": ["batch", latent_dim], "distribution": "standard normal",
                         "temperature": "multiplies eps"}}
        if "u" in self.noise:
            noise["u"] = {"shape": ["batch"], "distribution": "uniform on [0, 1)",
                          "use": f"the mixture component floor(u * {self.components}); never scaled by temperature"}
        layers = len(self.layer_sizes)
        return {"name": self.name, "components": self.components, "latent_layers": layers,
                "layer_sizes": list(self.layer_sizes), "z_layout": "[z1, z2]" if layers == 2 else "z",
                "sample": {"file": "prior", "inputs": noise, "output": "z"}}


class Gaussian(Prior):
    """p(z) = N(0, I)."""

    name = "gaussian"

    def __init__(self, latent_dim: int):
        self.layer_sizes = [latent_dim]

    def log_prob_top(self, z, mixture=None):
        return log_standard_normal(z)

    def sample_top(self, eps, u=None, mixture=None):
        return eps

    def kl(self, mu, logvar):
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


class Vamp(Prior):
    """The VampPrior: the mixture of the posteriors at the pseudo-inputs; posterior(x) -> (mu, logvar) is the encoder's
    (of the top layer, with two layers)."""

    name = "vamp"
    noise = ("eps", "u")

    def __init__(self, pseudo: "VampPrior", posterior, latent_dim: int):
        self.pseudo, self.posterior = pseudo, posterior
        self.components, self.layer_sizes = pseudo.pseudo_inputs.shape[0], [latent_dim]

    def mixture(self):
        return self.posterior(self.pseudo.inputs())

    def log_prob_top(self, z, mixture=None):
        return log_mixture(z, *(mixture or self.mixture()))

    def sample_top(self, eps, u=None, mixture=None):
        mu, logvar = mixture or self.mixture()
        k = pick(u, mu.shape[0])
        return mu[k] + eps * torch.exp(0.5 * logvar[k])


class Hierarchy(Prior):
    """Two latent layers: p(z2) p(z1 | z2), z = [z1, z2]; p(z2) is `top` (Gaussian or Vamp), p(z1 | z2) the Ladder's."""

    def __init__(self, top: Prior, ladder: "Ladder", d1: int):
        self.top, self.ladder, self.d1 = top, ladder, d1
        self.name, self.noise, self.components = top.name, top.noise, top.components
        self.layer_sizes = [d1, *top.layer_sizes]

    def mixture(self):
        return self.top.mixture()

    def log_prob(self, z, mixture=None):
        z2 = z[..., self.d1:]
        log_p = self.top.log_prob_top(z2, mixture)
        mu1, logvar1 = self.ladder.conditional(z2, LOGVAR_MIN, LOGVAR_MAX)
        return log_p + log_normal(z[..., :self.d1], mu1, logvar1)

    def sample(self, eps, u=None, mixture=None):
        eps1, eps2 = eps[..., :self.d1], eps[..., self.d1:]
        z2 = self.top.sample_top(eps2, u, mixture)
        mu1, logvar1 = self.ladder.conditional(z2, LOGVAR_MIN, LOGVAR_MAX)
        return torch.cat([mu1 + eps1 * torch.exp(0.5 * logvar1), z2], -1)


class WithPrior(nn.Module):
    """A module over `vae` (score.onnx's, prior.onnx's) that holds the prior's mixture, if any, as buffers mu_k and
    logvar_k: computed once, constants of an exported graph."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        with torch.no_grad():
            mixture = vae.prior.mixture()
        self.components = mixture is not None
        if self.components:
            self.register_buffer("mu_k", mixture[0].detach().clone())
            self.register_buffer("logvar_k", mixture[1].detach().clone())

    def mixture(self):
        return (self.mu_k, self.logvar_k) if self.components else None


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
    """The second latent layer's networks: q(z1 | x, z2) from the encoder's features and z2, p(z1 | z2); float32 out."""

    bf16 = False  # precision.use() sets it

    def __init__(self, hidden_dim: int, d1: int, d2: int):
        super().__init__()
        self.q_h, self.q_z = nn.Linear(hidden_dim, hidden_dim), nn.Linear(d2, hidden_dim, bias=False)
        self.q_mu, self.q_logvar = nn.Linear(hidden_dim, d1), nn.Linear(hidden_dim, d1)
        self.p_z = nn.Linear(d2, hidden_dim)
        self.p_mu, self.p_logvar = nn.Linear(hidden_dim, d1), nn.Linear(hidden_dim, d1)

    def posterior(self, h: torch.Tensor, z2: torch.Tensor, lo: float, hi: float):
        """q(z1 | x, z2): h [N, H] (or broadcastable to z2's rows), z2 [..., N, d2] -> mu, logvar [..., N, d1]."""
        with layers(self):
            g = F.relu(self.q_h(h) + self.q_z(z2))
            mu, logvar = self.q_mu(g), self.q_logvar(g)
        return widen(mu), widen(logvar).clamp(lo, hi)

    def conditional(self, z2: torch.Tensor, lo: float, hi: float):
        """p(z1 | z2): mu, logvar [..., d1]."""
        with layers(self):
            g = F.relu(self.p_z(z2))
            mu, logvar = self.p_mu(g), self.p_logvar(g)
        return widen(mu), widen(logvar).clamp(lo, hi)

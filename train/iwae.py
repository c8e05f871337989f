"""The importance-weighted estimate of log p(x) (Burda, Grosse and Salakhutdinov, ICLR 2016), and the bound as a
training objective.

With z_1..z_k drawn from q(z|x) and w_i = p(x|z_i) p(z_i) / q(z_i|x),

    log p(x) >= log (1/k) sum_i w_i,

a lower bound whose expectation rises towards log p(x) as k grows; k = 1 is a one-sample ELBO.
Published likelihoods on binarized MNIST-like data use k = 5000.

The log-weights come from Score, in torch; export/score_graph.py gives the same function as an onnxruntime session
(score.onnx), which iwae_log_likelihood takes in Score's place.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import likelihood as lik
from .model import VAE
from .prior import WithPrior


class Score(WithPrior):
    """(x [N,C,H,W], eps [m,N,D]) -> log w [m,N] for any prior and any number of latent layers: z ~ q(z|x) from
    eps, then log p(x|z) + log p(z) - log q(z|x), each exact (prior.py). The VampPrior's components are computed
    once, here (WithPrior).

    decoder: a module whose logits(z) replaces vae.decode (the export's, export/graphs.py); for_export: log p(x|z) in
    ops that onnxruntime computes exactly (likelihood.bernoulli_log_prob). With both, this is score.onnx.
    """

    def __init__(self, vae: VAE, decoder: nn.Module | None = None, for_export: bool = False):
        super().__init__(vae)
        self.for_export = for_export
        self.decoder = decoder

    def forward(self, x, eps):
        m, n = eps.shape[0], eps.shape[1]
        z, log_q, _ = self.vae.posterior_sample(self.vae.features(x), eps)
        flat = z.reshape(m * n, -1)
        logits = self.decoder.logits(flat) if self.decoder is not None else self.vae.decode(flat)
        log_p = self.vae.prior.log_prob(z, self.mixture())
        return weigh(logits, x, log_p - log_q, self.vae.likelihood, for_export=self.for_export)


def weigh(logits, x, log_ratio, likelihood: str, kl_weight: float = 1.0, for_export: bool = False) -> torch.Tensor:
    """log p(x|z) + kl_weight * log_ratio, [m, N], from logits [m, N, ...] and log_ratio = log p(z) - log q(z|x)."""
    logits = logits.float().reshape(*log_ratio.shape[:2], -1)
    x = x.reshape(log_ratio.shape[1], -1).expand_as(logits)
    log_px_z = lik.log_prob(logits, x, likelihood, for_export=for_export).sum(-1)
    return log_px_z + kl_weight * log_ratio


def iwae_objective(net, x: torch.Tensor, eps: torch.Tensor, likelihood: str, kl_weight: float = 1.0) -> torch.Tensor:
    """The importance-weighted bound with k = eps.shape[0] samples, per example [N], with gradients (training).

    net(x, eps) is the VAE (or its DDP wrapper) given eps [k, N, D]: one encoding, k decodings.
    """
    out = net(x, eps)
    lw = weigh(out.logits, x, out.log_p.float() - out.log_q.float(), likelihood, kl_weight)
    return torch.logsumexp(lw, dim=0) - math.log(eps.shape[0])


@torch.no_grad()
def iwae_log_likelihood(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator,
                        chunk: int = 64, score=None) -> torch.Tensor:
    """IWAE estimate of log p(x) with k samples, per example [N], in nats; x as the likelihood sees it.

    Samples are drawn `chunk` at a time and folded into a running logsumexp (in float64), so memory
    stays at O(N * chunk) whatever k is. score(x, eps) -> log w: Score(model) unless the caller gives another
    route to the same function (export/score_graph.py's onnxruntime session, made once for many calls).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    model.eval()
    score = score or Score(model)
    shape = (x.shape[0], model.latent_dim)
    acc = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    done = 0
    while done < k:
        m = min(chunk, k - done)
        eps = torch.randn((m, *shape), generator=generator, device=x.device)
        acc = torch.logaddexp(acc, torch.logsumexp(score(x, eps).double(), dim=0))
        done += m
    return acc - math.log(k)

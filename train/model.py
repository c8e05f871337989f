"""The VAE: an MLP (the reference network) or a small conv net, trained on logits."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# exp(logvar) must neither underflow to 0 nor overflow; this range keeps training finite.
LOGVAR_MIN, LOGVAR_MAX = -20.0, 10.0
ARCHS = ("mlp", "conv")


class VAE(nn.Module):
    """encode(x) -> (mu, logvar); decode(z) -> logits; probs(z) -> pixel probabilities."""

    def __init__(self, arch: str = "mlp", input_shape=(1, 28, 28), hidden_dim: int = 400,
                 latent_dim: int = 20, likelihood: str = "bernoulli"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
        if likelihood != "bernoulli":
            raise ValueError(f"unknown likelihood {likelihood!r}; only 'bernoulli' is supported")
        c, h, w = (int(v) for v in input_shape)
        if arch == "conv" and (h % 4 or w % 4):
            raise ValueError(f"the conv architecture needs H and W divisible by 4, got {h}x{w}")
        self.arch, self.input_shape = arch, (c, h, w)
        self.hidden_dim, self.latent_dim, self.likelihood = hidden_dim, latent_dim, likelihood
        if arch == "mlp":
            d = c * h * w
            self.fc1 = nn.Linear(d, hidden_dim)
            self.fc21 = nn.Linear(hidden_dim, latent_dim)
            self.fc22 = nn.Linear(hidden_dim, latent_dim)
            self.fc3 = nn.Linear(latent_dim, hidden_dim)
            self.fc4 = nn.Linear(hidden_dim, d)
        else:
            self.feat = (64, h // 4, w // 4)
            d = math.prod(self.feat)
            self.enc_conv = nn.Sequential(
                nn.Conv2d(c, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU())
            self.fc1 = nn.Linear(d, hidden_dim)
            self.fc21 = nn.Linear(hidden_dim, latent_dim)
            self.fc22 = nn.Linear(hidden_dim, latent_dim)
            self.fc3 = nn.Linear(latent_dim, hidden_dim)
            self.fc4 = nn.Linear(hidden_dim, d)
            self.dec_conv = nn.Sequential(
                nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, c, 4, 2, 1))

    @classmethod
    def from_config(cls, model: dict) -> "VAE":
        """Build from the model facts stored in a checkpoint (Config.model())."""
        return cls(model["arch"], tuple(model["input_shape"]), model["hidden_dim"],
                   model["latent_dim"], model.get("likelihood", "bernoulli"))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [N, C, H, W] in [0, 1] -> mu, logvar: [N, latent_dim]."""
        h = self.enc_conv(x) if self.arch == "conv" else x
        h = F.relu(self.fc1(h.flatten(1)))
        return self.fc21(h), self.fc22(h).clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: [N, latent_dim] -> Bernoulli logits [N, C, H, W]."""
        h = self.fc4(F.relu(self.fc3(z)))
        if self.arch == "conv":
            return self.dec_conv(F.relu(h).view(-1, *self.feat))
        return h.view(-1, *self.input_shape)

    def probs(self, z: torch.Tensor) -> torch.Tensor:
        """z -> pixel probabilities in [0, 1]; the exported decoder is this."""
        return torch.sigmoid(self.decode(z))

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        """One reparameterized pass with given noise: returns logits, mu, logvar."""
        mu, logvar = self.encode(x)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def recon_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-example Bernoulli negative log-likelihood (BCE summed over pixels), in nats."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-example KL(q(z|x) || N(0, I)), analytic."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def elbo_terms(model: VAE, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example reconstruction NLL and KL; the negative ELBO is rec + kl."""
    logits, mu, logvar = model(x, eps)
    return recon_nll(logits.float(), x), kl(mu.float(), logvar.float())


@torch.no_grad()
def iwae_log_likelihood(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator,
                        chunk: int = 64) -> torch.Tensor:
    """Importance-sampled estimate of log p(x) with k samples, per example, in nats.

    Samples are drawn `chunk` at a time and folded into a running logsumexp, so memory
    stays at O(batch * chunk) whatever k is.
    """
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    log2pi = math.log(2 * math.pi)
    acc = torch.full((x.shape[0],), -math.inf, device=x.device)
    done = 0
    while done < k:
        m = min(chunk, k - done)
        eps = torch.randn((m, *mu.shape), generator=generator, device=mu.device)
        z = mu + eps * std  # [m, N, D]
        logits = model.decode(z.flatten(0, 1)).float()
        xs = x.expand(m, *x.shape).flatten(0, 1)
        log_px_z = -recon_nll(logits, xs).view(m, -1)
        log_pz = -0.5 * (z.pow(2) + log2pi).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + logvar + log2pi).sum(-1)
        acc = torch.logaddexp(acc, torch.logsumexp(log_px_z + log_pz - log_qz, dim=0))
        done += m
    return acc - math.log(k)

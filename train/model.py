"""The VAE: an MLP (the reference network) or a small conv net, trained on logits."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import likelihood as lik

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
        lik.check(likelihood)
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
        """z: [N, latent_dim] -> logits [N, C, H, W] of the pixel likelihood (see likelihood.py)."""
        h = self.fc4(F.relu(self.fc3(z)))
        if self.arch == "conv":
            return self.dec_conv(F.relu(h).view(-1, *self.feat))
        return h.view(-1, *self.input_shape)

    def probs(self, z: torch.Tensor) -> torch.Tensor:
        """z -> pixels in [0, 1], the likelihood's mean (Bernoulli: the probabilities); the exported decoder is this."""
        return lik.mean(self.decode(z), self.likelihood)

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        """One reparameterized pass with given noise: returns logits, mu, logvar.

        eps [N, latent_dim] gives logits [N, C, H, W]; eps [k, N, latent_dim] decodes k samples of z for
        each image (one encoding) and gives logits [k, N, C, H, W].
        """
        mu, logvar = self.encode(x)
        z = mu + eps * torch.exp(0.5 * logvar)
        if z.dim() == 2:
            return self.decode(z), mu, logvar
        return self.decode(z.reshape(-1, z.shape[-1])).view(*z.shape[:-1], *self.input_shape), mu, logvar


def recon_nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str = "bernoulli") -> torch.Tensor:
    """Per-example -log p(x | z), summed over pixels, in nats (Bernoulli: BCE)."""
    return -lik.log_prob(logits, x, likelihood).flatten(1).sum(1)


def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-example KL(q(z|x) || N(0, I)), analytic."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def elbo_terms(model: VAE, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example reconstruction NLL and KL; the negative ELBO is rec + kl."""
    logits, mu, logvar = model(x, eps)
    likelihood = getattr(model, "module", model).likelihood  # under DDP the VAE is .module
    return recon_nll(logits.float(), x, likelihood), kl(mu.float(), logvar.float())

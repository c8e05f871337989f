"""The VAE: an MLP (the reference network) or a small conv net, trained on logits."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import likelihood as lik
from . import prior as pr
from .config import Config
from .precision import layers, widen
from .prior import LOGVAR_MAX, LOGVAR_MIN

ARCHS = ("mlp", "conv")
# The conv architecture's rule (docs/training.md): the fewest stride-2 stages, at least 2, that bring both sides to
# at most MAP_MAX, so that the fully connected layers stay small at any size (28x28: 2 stages, a 7x7 map).
MIN_STAGES, MAP_MAX = 2, 8
CONV_WIDTH = 64  # the channels of every stage from the second on; the first has 32


def conv_stages(h: int, w: int) -> int:
    """The conv architecture's number of stride-2 stages for H x W; ValueError (one line, with the nearest sizes
    that fit) unless H and W are multiples of 2^stages."""
    stages = _stages(h, w)
    if not _fits(h, w):
        step = 1 << stages
        down, up = (h // step * step, w // step * step), (-(-h // step) * step, -(-w // step) * step)
        near = [f"{a}x{b}" for a, b in (down, up) if min(a, b) > 0 and _fits(a, b)]
        hint = f"; {' and '.join(near)} {'fits' if len(near) == 1 else 'fit'}" if near else ""
        raise ValueError(f"the conv architecture cannot take {h}x{w}: its {stages} stride-2 stages (at least "
                         f"{MIN_STAGES}, enough to bring the larger side to at most {MAP_MAX}) need H and W multiples "
                         f"of {step}{hint}")
    return stages


def _stages(h: int, w: int) -> int:
    stages = MIN_STAGES
    while max(h, w) > MAP_MAX << stages:
        stages += 1
    return stages


def _fits(h: int, w: int) -> bool:
    step = 1 << _stages(h, w)
    return h % step == 0 and w % step == 0


def conv_widths(stages: int) -> list[int]:
    """Each stage's channels, the encoder's order (the decoder's reversed): 32, then CONV_WIDTH."""
    return [min(32 << i, CONV_WIDTH) for i in range(stages)]


class Pass(NamedTuple):
    """One reparameterized pass (VAE.forward): the logits of p(x | z), log q(z | x) and log p(z) at the drawn z, exact,
    and the analytic KL(q(z | x) || p(z)) where the prior has one (else None)."""

    logits: torch.Tensor
    log_q: torch.Tensor
    log_p: torch.Tensor
    kl: torch.Tensor | None


class VAE(nn.Module):
    """encode(x) -> (mu, logvar); decode(z) -> logits; probs(z) -> pixel probabilities.

    prior "gaussian" (N(0, I)) or "vamp" (prior.py), with 1 or 2 latent layers; .prior is its interface (prior.Prior).
    latent_dim is the size of the decoder's z: with two layers z = [z1, z2], latent_dim / 2 numbers each.
    The layers run under precision.layers() (bf16 autocast while training with .bf16 set); what they return is float32.
    """

    bf16 = False  # precision.use() sets it
    channels_last = False  # conv: batches turned NHWC on the way in, for weights made NHWC (the training loop's)

    def __init__(self, arch: str = "mlp", input_shape=(1, 28, 28), hidden_dim: int = 400,
                 latent_dim: int = 20, likelihood: str = "bernoulli", prior: str = "gaussian",
                 prior_components: int = pr.DEFAULT_COMPONENTS, latent_layers: int = 1):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
        lik.check(likelihood)
        pr.check(prior, prior_components, latent_layers, latent_dim)
        c, h, w = (int(v) for v in input_shape)
        self.stages = conv_stages(h, w) if arch == "conv" else 0
        self.arch, self.input_shape = arch, (c, h, w)
        self.hidden_dim, self.latent_dim, self.likelihood = hidden_dim, latent_dim, likelihood
        self.prior_name, self.latent_layers = prior, latent_layers
        self.prior_components = prior_components if prior == "vamp" else None
        top = latent_dim // latent_layers  # the size of z2 with two layers (fc21, fc22 give q(z2 | x))
        if arch == "mlp":
            d = c * h * w
            self.fc1 = nn.Linear(d, hidden_dim)
            self.fc21 = nn.Linear(hidden_dim, top)
            self.fc22 = nn.Linear(hidden_dim, top)
            self.fc3 = nn.Linear(latent_dim, hidden_dim)
            self.fc4 = nn.Linear(hidden_dim, d)
        else:
            widths = conv_widths(self.stages)
            self.feat = (widths[-1], h >> self.stages, w >> self.stages)
            d = math.prod(self.feat)
            self.enc_conv = nn.Sequential(*(layer for a, b in zip([c, *widths], widths)
                                            for layer in (nn.Conv2d(a, b, 4, 2, 1), nn.ReLU())))
            self.fc1 = nn.Linear(d, hidden_dim)
            self.fc21 = nn.Linear(hidden_dim, top)
            self.fc22 = nn.Linear(hidden_dim, top)
            self.fc3 = nn.Linear(latent_dim, hidden_dim)
            self.fc4 = nn.Linear(hidden_dim, d)
            up = [*widths[::-1], c]
            self.dec_conv = nn.Sequential(*[layer for a, b in zip(up, up[1:])
                                            for layer in (nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU())][:-1])
        if latent_layers == 2:
            self.ladder = pr.Ladder(hidden_dim, latent_dim - top, top)
        if prior == "vamp":
            self.vamp = pr.VampPrior(prior_components, self.input_shape)

    @classmethod
    def from_config(cls, architecture: dict) -> "VAE":
        """Build from the architecture facts stored in a checkpoint (Config.architecture())."""
        a = architecture
        return cls(a["arch"], tuple(a["input_shape"]), a["hidden_dim"], a["latent_dim"],
                   a.get("likelihood", "bernoulli"), a.get("prior", "gaussian"),
                   a.get("prior_components") or pr.DEFAULT_COMPONENTS, a.get("latent_layers", 1))

    def facts(self) -> dict:
        """The architecture facts, as Config.architecture() writes them (from_config's input)."""
        return Config(arch=self.arch, input_shape=self.input_shape, hidden_dim=self.hidden_dim,
                      latent_dim=self.latent_dim, likelihood=self.likelihood, prior=self.prior_name,
                      prior_components=self.prior_components or pr.DEFAULT_COMPONENTS,
                      latent_layers=self.latent_layers).architecture()

    def check_stages(self, state: dict) -> None:
        """ValueError (one line) for a conv state_dict of another stage count than this size gets: one trained
        before the rule (conv_stages), which gave every size two stages."""
        stages = sum(1 for k in state if str(k).startswith("enc_conv.") and str(k).endswith(".weight"))
        if self.arch == "conv" and stages and stages != self.stages:
            h, w = self.input_shape[1:]
            raise ValueError(f"a conv checkpoint of {stages} stride-2 stages at {h}x{w}, where this version builds "
                             f"{self.stages} (the stage rule of docs/training.md, since 0.2.0); train it again")

    @property
    def prior(self) -> pr.Prior:
        """p(z) over the decoder's z: Gaussian or Vamp over the top layer, under a Hierarchy with two layers."""
        d2 = self.fc21.out_features
        top = (pr.Gaussian(d2) if self.prior_name == "gaussian" else
               pr.Vamp(self.vamp, self.top_posterior, d2))
        return top if self.latent_layers == 1 else pr.Hierarchy(top, self.ladder, self.latent_dim - d2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's hidden layer h(x) [N, hidden_dim]."""
        with layers(self):
            h = self.enc_conv(self.nhwc(x)) if self.arch == "conv" else x
            h = F.relu(self.fc1(h.flatten(1)))
        return widen(h)

    def nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """A conv layer's input in channels-last memory where the model's are (the same values either way)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def top(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x) (one layer) or q(z2 | x) (two): mu, logvar from the features."""
        with layers(self):
            mu, logvar = self.fc21(h), self.fc22(h)
        return widen(mu), widen(logvar).clamp(LOGVAR_MIN, LOGVAR_MAX)

    def top_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x) (one layer) or q(z2 | x) (two) of images x: mu, logvar."""
        return self.top(self.features(x))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [N, C, H, W] in [0, 1] -> mu, logvar: [N, latent_dim].

        Two layers: [z1, z2]'s mean path, q(z2 | x)'s mean and variance, then q(z1 | x, z2)'s at z2 = that mean."""
        return self.encode_features(self.features(x))

    def encode_features(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """encode's second half: mu, logvar from the features h(x) [N, hidden_dim]."""
        mu, logvar = self.top(h)
        if self.latent_layers == 1:
            return mu, logvar
        mu1, logvar1 = self.ladder.posterior(h, mu, LOGVAR_MIN, LOGVAR_MAX)
        return torch.cat([mu1, mu], -1), torch.cat([logvar1, logvar], -1)

    def posterior_sample(self, h: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """z ~ q(z | x) from the features h [N, H] and eps [N, D] or [k, N, D]: z, log q(z | x) (exact) and the
        (mu, logvar) of q(z | x) with one layer, of q(z2 | x) with two."""
        mu, logvar = self.top(h)
        if self.latent_layers == 1:
            z = mu + eps * torch.exp(0.5 * logvar)
            return z, pr.log_standard_normal(eps) - 0.5 * logvar.sum(-1), (mu, logvar)
        d1 = self.latent_dim - mu.shape[-1]
        eps1, eps2 = eps[..., :d1], eps[..., d1:]
        z2 = mu + eps2 * torch.exp(0.5 * logvar)
        mu1, logvar1 = self.ladder.posterior(h, z2, LOGVAR_MIN, LOGVAR_MAX)
        z1 = mu1 + eps1 * torch.exp(0.5 * logvar1)
        log_q = pr.log_standard_normal(eps) - 0.5 * (logvar.sum(-1) + logvar1.sum(-1))
        return torch.cat([z1, z2], -1), log_q, (mu, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: [N, latent_dim] -> logits [N, C, H, W] of the pixel likelihood (see likelihood.py)."""
        with layers(self):
            h = self.fc4(F.relu(self.fc3(z)))
            if self.arch == "conv":
                return widen(self.dec_conv(self.nhwc(F.relu(h).view(-1, *self.feat))))
        return widen(h).view(-1, *self.input_shape)

    def probs(self, z: torch.Tensor) -> torch.Tensor:
        """z -> pixels in [0, 1], the likelihood's mean (Bernoulli: the probabilities); the exported decoder is this."""
        return lik.mean(self.decode(z), self.likelihood)

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> Pass:
        """One reparameterized pass with given noise (see Pass).

        eps [N, latent_dim] gives logits [N, C, H, W]; eps [k, N, latent_dim] decodes k samples of z for
        each image (one encoding) and gives logits [k, N, C, H, W].
        """
        z, log_q, (mu, logvar) = self.posterior_sample(self.features(x), eps)
        logits = self.decode(z.reshape(-1, z.shape[-1])).view(*z.shape[:-1], *self.input_shape)
        prior = self.prior
        return Pass(logits, log_q, prior.log_prob(z), prior.kl(mu.float(), logvar.float()))


def recon_nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str = "bernoulli") -> torch.Tensor:
    """Per-example -log p(x | z), summed over pixels, in nats (Bernoulli: BCE)."""
    return -lik.log_prob(logits, x, likelihood).flatten(1).sum(1)


def elbo_terms(model: VAE, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example reconstruction NLL and KL; the negative ELBO is rec + kl.

    The KL is analytic where the prior has one (N(0, I), one layer); otherwise it is the one-sample Monte Carlo
    estimate log q(z | x) - log p(z) at the drawn z, both exact log densities."""
    vae = getattr(model, "module", model)  # under DDP the VAE is .module
    out = model(x, eps)
    kld = out.kl if out.kl is not None else out.log_q.float() - out.log_p.float()
    return recon_nll(out.logits.float(), x, vae.likelihood), kld

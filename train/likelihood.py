"""The pixel likelihoods p(x | z), from the decoder's logits l (lambda = sigmoid(l)).

- bernoulli: p(x) = lambda^x (1 - lambda)^(1 - x). A normalised likelihood for 0/1 pixels (--binarize);
  on grey levels in [0, 1] it is the reference recipe's BCE, which is not a density (it integrates to less
  than 1 over [0, 1]), so its nats cannot be compared with anything published.
- continuous-bernoulli: the same expression times C(lambda), which makes it a density on [0, 1]
  (Loaiza-Ganem and Cunningham, NeurIPS 2019). In logits, C = l / tanh(l / 2), even in l, C(0) = 2.

Everything here is written with ops that export to plain ONNX (Abs, Exp, Log, Tanh, Where, ...).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "continuous-bernoulli")

# Below these |l| the closed forms lose digits to cancellation (and are 0/0 at l = 0), so a Taylor
# series is used; at the switch both agree to float32 rounding (tested).
_LOG_NORM_SERIES_BELOW = 0.5
_MEAN_SERIES_BELOW = 1.0


def check(likelihood: str) -> None:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")


def log_prob(logits: torch.Tensor, x: torch.Tensor, likelihood: str = "bernoulli",
             for_export: bool = False) -> torch.Tensor:
    """log p(x | logits) per pixel, in nats (elementwise; callers sum over pixels).

    for_export: the Bernoulli term as bernoulli_log_prob, in ops that onnxruntime computes exactly; otherwise
    torch's fused BCE, which the exporter writes as Log(Sigmoid(l)).
    """
    if for_export:
        log_p = bernoulli_log_prob(logits, x)
    else:
        log_p = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    if likelihood == "continuous-bernoulli":
        log_p = log_p + cb_log_norm(logits)
    return log_p


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x l - softplus(l), softplus(l) = max(l, 0) + log(1 + e^-|l|): finite and exact to float32 rounding for any l.

    onnxruntime's CPU Sigmoid is an approximation with an absolute error near 1e-8: it is 0 from l = -18 down
    (at some l from -15.8 on), so the Log(Sigmoid(l)) that BCE exports to gives -inf there, and is off by a
    tenth of a nat per pixel near l = -15. Exp, Log and Relu of this form are exact enough everywhere.
    """
    return x * logits - (torch.relu(logits) + torch.log1p(torch.exp(-logits.abs())))


def mean(logits: torch.Tensor, likelihood: str = "bernoulli") -> torch.Tensor:
    """E[x | logits] in [0, 1]: the picture the decoder shows (and what the exported decoder returns)."""
    if likelihood == "continuous-bernoulli":
        return cb_mean(logits)
    return torch.sigmoid(logits)


def cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C of the continuous Bernoulli: log(l / tanh(l / 2)), log 2 at l = 0, about log |l| far from it."""
    a = logits.abs()
    small = a < _LOG_NORM_SERIES_BELOW
    safe = torch.where(small, torch.ones_like(a), a)  # keeps the unused branch (and its gradient) finite
    exact = torch.log(safe) - torch.log(torch.tanh(safe / 2))
    s = a * a  # log 2 + l^2/12 - 7 l^4/1440 + 31 l^6/90720 - 127 l^8/4838400, error < 3e-9 below 0.5
    series = math.log(2.0) + s * (1 / 12 + s * (-7 / 1440 + s * (31 / 90720 - s * 127 / 4838400)))
    return torch.where(small, series, exact)


def cb_mean(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the continuous Bernoulli: 1 / (1 - e^-l) - 1 / l, 1/2 at l = 0 (not lambda: the two differ)."""
    a = logits.abs()
    small = a < _MEAN_SERIES_BELOW
    safe = torch.where(small, torch.ones_like(a), a)
    exact = 1 / (1 - torch.exp(-safe)) - 1 / safe  # the mean at +|l|, in [1/2, 1)
    s = a * a  # 1/2 + l/12 - l^3/720 + l^5/30240 - l^7/1209600, error < 3e-8 below 1
    series = 0.5 + a * (1 / 12 + s * (-1 / 720 + s * (1 / 30240 - s / 1209600)))
    m = torch.where(small, series, exact)
    return torch.where(logits >= 0, m, 1 - m)  # x -> 1 - x maps CB(l) onto CB(-l)

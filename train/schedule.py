"""The schedules of a run: the KL term's weight (warm-up) and Adam's learning rate, at each step."""
from __future__ import annotations

import math

from .config import Config

LR_SCHEDULES = ("constant", "cosine")


def kl_weight(cfg: Config, epoch: int, step: int, steps: int) -> float:
    """The KL term's weight at `step` (0-based) of `epoch` (1-based): beta, ramped linearly from 0 over kl_warmup
    epochs."""
    warm = min(1.0, (epoch - 1 + step / steps) / cfg.kl_warmup) if cfg.kl_warmup > 0 else 1.0
    return cfg.beta * warm


def learning_rate(cfg: Config, epoch: int, step: int, steps: int) -> float:
    """Adam's rate at `step` of `epoch`: lr throughout (constant), or lr * (1 + cos(pi t)) / 2 with t = 0 -> 1
    (cosine)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    t = ((epoch - 1) * steps + step) / (cfg.epochs * steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))

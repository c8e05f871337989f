"""The schedules of a run: the KL term's weight (warm-up) and Adam's learning rate at each step, and the importance
samples of each epoch's objective."""
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


def train_k_at(cfg: Config, epoch: int) -> int:
    """The importance samples per image in `epoch`'s objective: train_k, or 1 (the ELBO) before the last
    train_k_epochs epochs where those are set (IWAE fine-tuning)."""
    if cfg.train_k_epochs and epoch <= cfg.epochs - cfg.train_k_epochs:
        return 1
    return cfg.train_k

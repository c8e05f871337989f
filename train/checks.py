"""What a run refuses before it starts, each in one line: settings that do not make sense together."""
from __future__ import annotations

from pathlib import Path

from .config import Config
from .data import DATA_ACCESS, DataError, image_hw
from .errors import TrainError
from .likelihood import LIKELIHOODS
from .model import conv_stages
from .schedule import LR_SCHEDULES


def check_config(cfg: Config, world: int) -> None:
    """Refuse a Config that no run can use; world: the number of processes that share each batch."""
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise TrainError("--epochs and --batch-size must be at least 1, and --lr positive")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise TrainError(f"unknown --lr-schedule {cfg.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if cfg.likelihood not in LIKELIHOODS:
        raise TrainError(f"unknown --likelihood {cfg.likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
    if cfg.binarize and cfg.likelihood != "bernoulli":
        raise TrainError(f"--binarize makes every pixel 0 or 1, where the {cfg.likelihood} density does not "
                         f"apply; use --likelihood bernoulli with --binarize")
    if cfg.beta < 0 or cfg.kl_warmup < 0:
        raise TrainError("--beta and --kl-warmup must not be negative")
    if cfg.train_k < 1:
        raise TrainError(f"--train-k must be at least 1, got {cfg.train_k}")
    if not 0 <= cfg.ema < 1:
        raise TrainError(f"--ema is a decay in [0, 1) (0: off), got {cfg.ema}")
    if cfg.train_k_epochs < 0 or cfg.train_k_epochs > cfg.epochs:
        raise TrainError(f"--train-k-epochs must lie in 0 to --epochs ({cfg.epochs}), got {cfg.train_k_epochs}")
    if cfg.train_k_epochs and cfg.train_k == 1:
        raise TrainError("--train-k-epochs N trains the last N epochs on the IWAE bound of --train-k samples; "
                         "give --train-k above 1")
    if cfg.data_access not in DATA_ACCESS:
        raise TrainError(f"unknown --data-access {cfg.data_access!r}; choose one of {', '.join(DATA_ACCESS)}")
    if cfg.batch_size % world:
        raise TrainError(f"--batch-size {cfg.batch_size} must divide evenly across {world} processes")
    if cfg.arch == "conv" and Path(cfg.dataset).is_dir():  # an image folder's size is known before it is decoded
        try:
            conv_stages(*image_hw(cfg.image_size))
        except (ValueError, DataError) as e:
            raise TrainError(str(e)) from None

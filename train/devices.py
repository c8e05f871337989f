"""Where a run computes: the device, and this process's place in a torchrun job (DistributedDataParallel)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import TrainError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for, but no CUDA GPU is available")
    return device


@dataclass
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Ranks, torch.device]:
    """Join the torchrun job named by the environment, if any: NCCL on CUDA, gloo on the CPU."""
    if "RANK" not in os.environ:  # not started by torchrun (which may start one process: a group of one)
        return Ranks(), pick_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ranks, device


def job_sums(values: list, ranks: Ranks, device: torch.device) -> list[float]:
    """values (numbers or 0-d tensors) summed over every rank, as float64."""
    sums = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values])
    if ranks.world > 1:
        dist.all_reduce(sums)
    return sums.tolist()

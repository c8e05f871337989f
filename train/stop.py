"""Stopping a run on SIGINT or SIGTERM: the loop saves last.pt at the next step boundary, on every rank alike."""
from __future__ import annotations

import signal
from pathlib import Path

import torch
import torch.distributed as dist

from .devices import Ranks


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop saves and stops at the next step boundary."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def should_stop(self, ranks: Ranks, device: torch.device) -> bool:
        if ranks.world == 1:
            return bool(self.signum)
        # Every rank must stop at the same step, or the others would wait forever in the next all-reduce.
        flag = torch.tensor([self.signum], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not self.signum:
            self.signum = int(flag.item())
        return bool(flag.item())


class Interrupted(Exception):
    """Training stopped by a signal after saving last.pt."""

    def __init__(self, signum: int, path: Path):
        super().__init__(f"interrupted; saved {path}")
        self.signum, self.path = signum, path

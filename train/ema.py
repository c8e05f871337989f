"""Weight averaging (--ema DECAY): an exponential moving average of the weights, updated after every step.

The test figures, the pictures and model.pt (so the export) use the average; the optimizer goes on with the
trained weights. last.pt keeps both, so a resumed run ends where the uninterrupted one does. Averaging the last few
epochs' weights evens out the noise of the final steps, the way Polyak averaging does.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class Ema:
    """average <- decay * average + (1 - decay) * weights, after each step; starts as a copy of the weights."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._average = list(self.model.parameters())
        self._weights = list(model.parameters())

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._average, self._weights, 1.0 - self.decay)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)

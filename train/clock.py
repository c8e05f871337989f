"""Wall time by phase, for the closing line that says where a run's time went."""
from __future__ import annotations

import time


class Clock:
    def __init__(self, started: float | None):
        self.t = time.perf_counter()
        self.phases = {"start-up": self.t - started} if started is not None else {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.t
        self.t = now

    def summary(self) -> str:
        total = sum(self.phases.values())
        parts = ", ".join(f"{name} {sec:.2f}" for name, sec in self.phases.items())
        return f"time: {total:.2f} s: {parts}"

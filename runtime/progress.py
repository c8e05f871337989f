"""A progress line on stderr, drawn only on a terminal and erased when done: count, rate and time left. The
standard library alone (the runtime imports nothing else), redrawn at most every PERIOD seconds."""
from __future__ import annotations

import sys
import time

PERIOD = 0.2  # seconds between redraws


class Progress:
    """`with Progress(total, "vae-score", show) as p: ... p.advance(n)`; total 0 when unknown (no time left)."""

    def __init__(self, total: int, label: str, show: bool, unit: str = "images"):
        self.total, self.label, self.unit = total, label, unit
        self.show = show and sys.stderr.isatty()
        self.done, self.start, self.drawn = 0, time.perf_counter(), 0.0

    def __enter__(self) -> "Progress":
        return self

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.show and now - self.drawn >= PERIOD:
            self.drawn = now
            rate = self.done / max(now - self.start, 1e-9)
            of = f"/{self.total:,}" if self.total else ""
            left = f", {_clock((self.total - self.done) / rate)} left" if self.total and rate > 0 else ""
            sys.stderr.write(f"\r\033[K{self.label}: {self.done:,}{of} {self.unit}, {rate:,.1f}/s{left}")
            sys.stderr.flush()

    def clear(self) -> None:
        """Erase the line (before another line is written to stderr, or at the end); the next advance redraws it."""
        if self.show and self.drawn:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.drawn = 0.0

    def __exit__(self, *exc) -> None:
        self.clear()  # what stays on screen is the command's closing line


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"

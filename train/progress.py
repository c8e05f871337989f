"""A progress bar on stderr (rich's), drawn only on a terminal and gone when done: training steps, IWAE decodes."""
from __future__ import annotations

import sys


class Bar:
    """`with Bar(total, "epoch 3/10", show) as bar: ... bar.advance(1, note="loss 97.1")`"""

    def __init__(self, total: int, label: str, show: bool, unit: str = "steps"):
        self.total, self.label, self.unit = max(total, 1), label, unit
        self.show = show and sys.stderr.isatty()

    def __enter__(self):
        if self.show:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TextColumn(f"{{task.completed:,}}/{{task.total:,}} {self.unit}"),
                                TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TextColumn("left"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total, note="")
        return self

    def advance(self, n: int = 1, note=None) -> None:
        """n more done; note: a function giving a short text to show (called only when the bar is drawn)."""
        if self.show:
            self.bar.update(self.task, advance=n, **({"note": note()} if note else {}))

    def __exit__(self, *exc):
        if self.show:
            self.bar.__exit__(*exc)

"""Helpers for the benchmark scripts: the header line, timing, markdown tables and the models to measure.

Imports nothing heavy at module level: cold_start.py's own memory must stay small (see there).
Timings use time.perf_counter_ns. Competing variants are measured in interleaved rounds (A, B, C, A, B, C...),
so a burst of load from elsewhere on the machine hits all of them, and the ratios stay meaningful.
"""
from __future__ import annotations

import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def versions(*names: str) -> str:
    """'python 3.11.9, onnxruntime 1.32.0, ...' for the named, already importable packages."""
    from importlib.metadata import PackageNotFoundError, version

    out = [f"python {platform.python_version()}"]
    for name in names:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def header(title: str, *packages: str) -> str:
    """One markdown line: what ran, on which CPU, when, with which versions."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"**{title}**: {cpu_model()}, {cores()} cores, {platform.system()} {platform.machine()}, {date}; "
            f"{versions(*packages)}")


class OtherLoad:
    """How much CPU other processes used since it was made, as a share of all cores (Linux /proc/stat).

    Our own CPU time (this process and its waited-for children) is taken out, so what is left is the
    load that competed with the measurement. Figures are trustworthy when it stays near 0%.
    """

    def __init__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_seconds(), _own_seconds()

    def share(self) -> float | None:
        busy = _busy_seconds()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        other = (busy - self.busy0) - (_own_seconds() - self.own0)
        return max(0.0, other / (wall * (os.cpu_count() or 1)))

    def text(self) -> str:
        share = self.share()
        return "unknown (no /proc/stat)" if share is None else f"{share:.0%}"


def _busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_before(seconds: float = 1.0) -> str:
    """A markdown line: the other processes' CPU use over the next `seconds` (we sleep meanwhile)."""
    probe = OtherLoad()
    time.sleep(seconds)
    share = probe.share()
    line = f"Other processes' CPU use just before the run: {probe.text()} of {cores()} cores"
    if share is not None and share > 0.05:
        line += " -- **the machine is busy: absolute figures suffer, ratios less so**"
    return line + "."


# -----------------------------------------------------------------------------
# timing

def interleaved(fns: dict, seconds: float, min_calls: int = 5, rounds: int = 5) -> dict:
    """Per-call times in ns of each zero-argument function, measured in interleaved rounds.

    Each round runs every function for about seconds / rounds / len(fns) in one block; its first call
    is dropped, so the thread pool of the previous function (onnxruntime's or torch's, both spin a
    while after work) has gone quiet. The calls per block are set from a warmup call.
    """
    import numpy as np

    per_call = {}
    for name, fn in fns.items():
        for _ in range(2):
            fn()
        t0 = time.perf_counter_ns()
        fn()
        per_call[name] = max(time.perf_counter_ns() - t0, 1)
    budget_ns = seconds * 1e9 / rounds / len(fns)
    calls = {k: max(min_calls // rounds + 1, int(budget_ns / v)) for k, v in per_call.items()}
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            for _ in range(calls[name]):
                t0 = time.perf_counter_ns()
                fn()
                times[name].append(time.perf_counter_ns() - t0)
    return {k: np.asarray(v, dtype=np.float64) for k, v in times.items()}


def median(ns) -> float:
    import numpy as np

    return float(np.median(ns))


def p99(ns) -> float:
    import numpy as np

    return float(np.percentile(ns, 99))


# -----------------------------------------------------------------------------
# formatting

def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table; numbers should already be strings."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def us(ns: float) -> str:
    """Nanoseconds as microseconds or milliseconds, 3 significant figures."""
    return f"{ns / 1e3:.3g} µs" if ns < 1e6 else f"{ns / 1e6:.3g} ms"


def rate(x: float) -> str:
    """Images per second, rounded for a table."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def ratio(x: float) -> str:
    return f"{x:.2f}x"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


# -----------------------------------------------------------------------------
# models

def trained_vae(arch: str, steps: int, seed: int = 0, batch: int = 128):
    """A VAE trained `steps` Adam steps on Fashion-MNIST, or left at random init if the data is absent.

    The speed of a network does not depend on its weights' values; training only makes the outputs
    realistic (random-init outputs all sit near 0.5), so that the int8 pixel error means something.
    Returns (model in eval mode, a note saying which).
    """
    import torch

    from vae_edge.train.data import DataError, load_data
    from vae_edge.train.model import VAE, elbo_terms

    torch.manual_seed(seed)
    model = VAE(arch)
    try:
        data = load_data("fashion-mnist")
    except DataError as e:
        return model.eval(), f"random init (Fashion-MNIST unavailable: {e})"
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, data.train.shape[0], (batch,), generator=gen)
        x = data.train[idx].float() / 255
        eps = torch.randn((batch, model.latent_dim), generator=gen)
        rec, kl = elbo_terms(model, x, eps)
        loss = (rec + kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval(), (f"trained {steps} steps (batch {batch}) on Fashion-MNIST in "
                          f"{time.perf_counter() - t0:.1f} s, final loss {loss.item():.1f} nats")

"""The arithmetic of the training step: bfloat16 autocast over the network's layers, or float32 throughout.

Chosen once at the start of a run (choose), named in its first line and in every line of metrics.jsonl. Autocast
covers the layers alone (layers(): the encoder, the mean and variance heads, the decoder, the second layer's
networks); what they return is cast back to float32, so that the likelihood, the KL, every log density, log-sum-exp
and the optimizer's update stay in float32. Test figures (the -ELBO each epoch, the IWAE) are computed in float32
whatever the run trained in: autocast is on only while the model is in training mode. Weights stay float32 (autocast
casts copies), so checkpoints and exports do not depend on the choice.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import config

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo's names of the x86 instructions oneDNN uses for bf16


@dataclass(frozen=True)
class Precision:
    name: str  # "bf16" (autocast over the layers) or "fp32"
    why: str  # one phrase for the log line

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def describe(self) -> str:
        what = "bf16 autocast over the layers (densities in fp32)" if self.bf16 else "fp32"
        return f"{what}: {self.why}"


def cpu_bf16_flag(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The bf16 instruction set this CPU has (its /proc/cpuinfo flag), None where it has none (or no /proc)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return next((f for f in CPU_BF16_FLAGS if f in flags), None)


def choose(amp: bool | None, device: torch.device) -> Precision:
    """amp: --amp (True), --no-amp (False) or neither (None: the device's default)."""
    if amp is False:
        return Precision("fp32", "--no-amp")
    if device.type == "cuda":
        return Precision("bf16", "--amp") if amp else Precision("fp32", "the default on CUDA (--amp for bf16)")
    if device.type != "cpu":
        return Precision("fp32", f"no bf16 autocast on {device.type}")
    flag = cpu_bf16_flag()
    if flag is None:
        return Precision("fp32", f"this CPU has no bf16 instructions ({' or '.join(CPU_BF16_FLAGS)})")
    if amp:
        return Precision("bf16", f"--amp, on a CPU with {flag}")
    if config.BF16_ON_CPU_BY_DEFAULT:
        return Precision("bf16", f"the default on a CPU with {flag} (--no-amp for fp32)")
    return Precision("fp32", f"the default (--amp for bf16 on this CPU's {flag})")


def use(model: nn.Module, precision: Precision) -> None:
    """Train `model` (a VAE) at `precision`: every module of it that runs layers under layers() follows."""
    for m in model.modules():
        if hasattr(m, "bf16"):
            m.bf16 = precision.bf16


def widen(t: torch.Tensor) -> torch.Tensor:
    """A layer's output leaving layers(): bf16 made float32, any other dtype (float32, a float64 model's) untouched,
    so that a traced (exported) graph holds no Cast for it."""
    return t.float() if t.dtype == torch.bfloat16 else t


def layers(module: nn.Module):
    """The context a module's layers run in: bf16 autocast while it trains with .bf16 set, else none.

    No weight cache: a cached cast would be a tensor made during a CUDA graph's capture and read after it (and each
    block is the outermost autocast, whose cache goes at its exit anyway)."""
    if not (module.bf16 and module.training):
        return contextlib.nullcontext()
    device = next(module.parameters()).device.type
    return torch.autocast(device, dtype=torch.bfloat16, cache_enabled=False)

"""The CPU an export ran on, named for vae.json: its model and which int8 instructions onnxruntime can use."""
from __future__ import annotations

import platform
from pathlib import Path

# the flags (Linux /proc/cpuinfo) that decide which onnxruntime int8 kernel runs, most capable first
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "avx2", "asimddp", "asimd")


def cpu_name() -> str:
    """For example "AMD EPYC (x86_64, avx512_vnni)": the model name and the best int8 instruction set it has."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and name in (platform.processor(), "unknown CPU"):
                name = value.strip()
            elif key in ("flags", "features"):
                flags |= set(value.split())
    except OSError:
        pass
    best = next((f for f in INT8_FLAGS if f in flags), "no int8 dot-product extension")
    return f"{name} ({platform.machine()}, {best})"

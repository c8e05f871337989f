"""Checkpoints: plain dicts of tensors and builtins, written atomically, loaded without unpickling code."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from vae_edge.runtime.outputs import atomic_file
from vae_edge.runtime.errors import one_line

FORMAT, VERSION = "vae-edge-checkpoint", 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message is one line for the user."""


def save(obj: dict, path: str | os.PathLike) -> None:
    """Write `obj` to `path` atomically (the runtime's one atomic write), so a crash never leaves half a file."""
    with atomic_file(path) as f:
        torch.save(obj, f)


def load(path: str | os.PathLike) -> dict | object:
    """torch.load with weights_only=True: pickled code is refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds pickled objects that are not plain weights; refusing to load it "
            f"(weights_only: {one_line(e)[:200]})") from None
    except Exception as e:  # torch raises many types on damaged files (EOFError, KeyError, IndexError...)
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{one_line(e)[:200]}") from None


def is_vae_edge(obj) -> bool:
    """True for a checkpoint written by vae-train (as opposed to a bare state_dict)."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT

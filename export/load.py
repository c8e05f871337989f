"""Reading what to export: a vae-train checkpoint, or the reference VAE's plain state_dict (fc1, fc21, fc22, fc3,
fc4)."""
from __future__ import annotations

import os

import numpy as np
import torch

from vae_edge.runtime.errors import one_line
from vae_edge.train import checkpoint
from vae_edge.train.model import VAE

from .errors import ExportError

# The reference VAE's state_dict: torch.save(model.state_dict(), "model.pt").
REFERENCE_KEYS = tuple(f"{layer}.{p}" for layer in ("fc1", "fc21", "fc22", "fc3", "fc4")
                       for p in ("weight", "bias"))


def load_model(path: str | os.PathLike, input_shape=(1, 28, 28)) -> tuple[VAE, dict]:
    """Read a vae-train checkpoint or a reference state_dict; returns (model in eval mode, facts).

    input_shape (C, H, W) applies to a plain state_dict; a vae-train checkpoint records its own.
    """
    try:
        obj = checkpoint.load(path)
    except checkpoint.CheckpointError as e:
        raise ExportError(str(e)) from None
    except Exception as e:  # corrupt files can still raise KeyError, AssertionError... from torch.load
        raise ExportError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                          f"{type(e).__name__}: {one_line(e)}") from None
    if not isinstance(obj, dict):
        raise ExportError(f"{path} holds a {type(obj).__name__}, not a checkpoint or a state_dict")
    if checkpoint.is_vae_edge(obj):
        model, facts = _from_checkpoint(obj, path)
    else:
        model, facts = _from_reference(obj, path, input_shape), {"dataset": None, "metrics": None, "recipe": None}
    for k, v in model.state_dict().items():
        if not torch.isfinite(v).all():
            raise ExportError(f"{path}: {k} holds NaN or infinite values")
    return model.eval(), facts


def _from_checkpoint(obj: dict, path) -> tuple[VAE, dict]:
    if obj.get("version") != checkpoint.VERSION:
        raise ExportError(f"{path}: checkpoint version {obj.get('version')!r} is not supported "
                          f"(expected {checkpoint.VERSION})")
    config, state = obj.get("config"), obj.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise ExportError(f"{path}: checkpoint lacks its config or state_dict")
    from vae_edge.train.config import Config
    try:
        model = VAE.from_config(Config.from_dict(config).architecture())
    except (TypeError, ValueError, KeyError) as e:
        raise ExportError(f"{path}: bad model config: {one_line(e)}") from None
    # torch.compile wraps the model and prefixes every key
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    try:
        model.check_stages(state)
    except ValueError as e:
        raise ExportError(f"{path}: {e}") from None
    _load_state(model, state, path)
    metrics = obj.get("metrics")
    final = metrics[-1] if isinstance(metrics, list) and metrics and isinstance(metrics[-1], dict) else None
    epochs = [m.get("seconds") for m in metrics] if final is not None else []
    if epochs and all(isinstance(t, (int, float)) for t in epochs):  # the run's time, its epochs summed
        final = {**final, "training_seconds": float(sum(epochs))}
    recipe = {k: v for k, v in config.items() if k not in ("out_dir", "name")}  # every training option
    return model, {"dataset": config.get("dataset"), "metrics": jsonable(final), "recipe": jsonable(recipe)}


def _from_reference(state: dict, path, input_shape) -> VAE:
    keys = set(state)
    unknown = sorted(str(k) for k in keys - set(REFERENCE_KEYS))
    missing = [k for k in REFERENCE_KEYS if k not in keys]
    if unknown:
        raise ExportError(f"{path}: unknown keys {', '.join(unknown[:5])}"
                          f"{' ...' if len(unknown) > 5 else ''}; expected the reference VAE's "
                          f"fc1, fc21, fc22, fc3, fc4 or a vae-train checkpoint")
    if missing:
        raise ExportError(f"{path}: missing keys {', '.join(missing)}")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{path}: a state_dict must hold only tensors")
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ExportError(f"input shape must be C,H,W, got {input_shape!r}") from None
    if min(c, h, w) < 1:
        raise ExportError(f"input shape must be positive, got {c},{h},{w}")
    w1 = state["fc1.weight"]
    if w1.dim() != 2 or state["fc21.weight"].dim() != 2:
        raise ExportError(f"{path}: fc1.weight and fc21.weight must be matrices")
    hidden_dim, d = w1.shape
    latent_dim = state["fc21.weight"].shape[0]
    if d != c * h * w:
        raise ExportError(f"{path}: fc1 takes {d} inputs but input shape {c},{h},{w} has {c * h * w} "
                          f"pixels; pass the right --input-shape")
    model = VAE("mlp", (c, h, w), int(hidden_dim), int(latent_dim))
    _load_state(model, state, path)
    return model


def _load_state(model: VAE, state: dict, path) -> None:
    """load_state_dict with every mismatch reported in one line."""
    want = model.state_dict()
    unknown = sorted(str(k) for k in set(state) - set(want))
    missing = [k for k in want if k not in state]
    if unknown or missing:
        parts = ([f"unknown keys {', '.join(unknown[:5])}"] if unknown else []) + \
                ([f"missing keys {', '.join(missing[:5])}"] if missing else [])
        raise ExportError(f"{path}: state_dict does not match the model: {'; '.join(parts)}")
    for k, v in want.items():
        got = state[k]
        if not isinstance(got, torch.Tensor) or not got.is_floating_point():
            raise ExportError(f"{path}: {k} is not a floating-point tensor")
        if tuple(got.shape) != tuple(v.shape):
            raise ExportError(f"{path}: {k} has shape {list(got.shape)}, expected {list(v.shape)}")
    model.load_state_dict({k: state[k].float() for k in want})


def jsonable(v):
    """Metrics as plain JSON: tensors to numbers, NaN/inf to None."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, torch.Tensor):
        v = v.item() if v.numel() == 1 else v.tolist()
        return jsonable(v)
    if isinstance(v, float):
        return v if np.isfinite(v) else None
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)

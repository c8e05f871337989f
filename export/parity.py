"""Parity: the ONNX files must compute what the PyTorch model computes, on fresh random inputs, before anything is
written."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from vae_edge.runtime.sessions import new_session
from vae_edge.train.model import VAE

from .errors import ParityError

TOLERANCE = 1e-5
PARITY_BATCH_SIZES = (1, 2, 7, 64)


def session(model: bytes, ort_format: bool = False) -> ort.InferenceSession:
    """A CPU onnxruntime session straight from bytes (ONNX, or ORT format), so nothing needs to be on disk yet."""
    return new_session(model, ort_format=ort_format)


@torch.no_grad()
def torch_outputs(model: VAE, x: np.ndarray, z: np.ndarray) -> dict:
    """PyTorch's "mu" for images x and "x" (pixel probabilities) for latents z: what int8 is held against."""
    return {"mu": model.encode(torch.from_numpy(x))[0].numpy(), "x": model.probs(torch.from_numpy(z)).numpy()}


@torch.no_grad()
def check_parity(model: VAE, encoder: bytes, decoder: bytes, ort_format: bool = False) -> dict:
    """Max abs difference PyTorch vs onnxruntime on fresh random inputs; ParityError above TOLERANCE."""
    enc, dec = session(encoder, ort_format), session(decoder, ort_format)
    rng = np.random.default_rng()  # fresh inputs at every export, never zeros
    worst = {"mu": 0.0, "logvar": 0.0, "x": 0.0}
    for n in PARITY_BATCH_SIZES:
        x = rng.random((n, *model.input_shape), dtype=np.float32)
        z = rng.standard_normal((n, model.latent_dim), dtype=np.float32)
        mu, logvar = model.encode(torch.from_numpy(x))
        probs = model.probs(torch.from_numpy(z))
        o_mu, o_logvar = enc.run(["mu", "logvar"], {"x": x})
        (o_x,) = dec.run(["x"], {"z": z})
        for key, ref, got in (("mu", mu, o_mu), ("logvar", logvar, o_logvar), ("x", probs, o_x)):
            ref = ref.numpy()
            if got.shape != ref.shape:
                raise ParityError(f"{key} at batch {n}: onnxruntime shape {list(got.shape)} "
                                  f"!= PyTorch shape {list(ref.shape)}")
            d = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
            worst[key] = max(worst[key], d) if np.isfinite(d) else float("inf")
    report = {"tolerance": TOLERANCE, "batch_sizes": list(PARITY_BATCH_SIZES), **worst}
    bad = {k: v for k, v in worst.items() if not v <= TOLERANCE}
    if bad:
        figures = ", ".join(f"{k} {v:.3g}" for k, v in worst.items())
        raise ParityError(f"onnxruntime differs from PyTorch beyond {TOLERANCE:g} "
                          f"(max abs over batch sizes {list(PARITY_BATCH_SIZES)}: {figures}); nothing written")
    return report



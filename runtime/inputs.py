"""The caller's input, checked before any work: images x, latents z, counts, the temperature and the seed.
Each bad value is a RuntimeInputError of one line; tests/conformance/ holds the rules JavaScript shares."""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from .errors import RuntimeInputError
from .rules import LIMITS, message

SEED_LIMIT = 2**53  # seeds are integers in [0, 2^53): what JavaScript's numbers hold exactly
# A count a caller passes (sample's n, interpolate's steps, batch_size, k), per call, in every reader: beyond it a
# call would allocate more than any machine holds (2^20 images of 28 x 28 are 3.3 GB). iter_samples streams.
COUNT_LIMIT = LIMITS["count"]


def check_count(n, what: str, limit: int | None = COUNT_LIMIT) -> int:
    """An integer in [1, limit]; limit None: any (a count that is streamed in chunks)."""
    if isinstance(n, bool) or not isinstance(n, Integral):
        raise RuntimeInputError(message("count_integer", what=what, got=repr(n)))
    if n <= 0:
        raise RuntimeInputError(message("count_positive", what=what, count=n))
    if limit is not None and int(n) > limit:
        raise RuntimeInputError(message("count_limit", what=what, limit=limit, count=n))
    return int(n)


def check_temperature(t) -> float:
    """A finite number >= 0: an int or a float (numpy's too); not a string, not a bool."""
    if isinstance(t, bool) or not isinstance(t, Real) or not math.isfinite(t) or t < 0:
        raise RuntimeInputError(message("temperature", temperature=repr(t)))
    return float(t)


def check_seed(seed) -> int | None:
    """None (a fresh seed from the operating system) or an integer in [0, 2^53)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= int(seed) < SEED_LIMIT:
        raise RuntimeInputError(message("seed", seed=repr(seed)))
    return int(seed)


def images(x, shape: tuple) -> tuple[np.ndarray, bool]:
    """Check x's shape and dtype; return it as an array and whether it is flat (N, C*H*W)."""
    x = np.asarray(x)
    c, h, w = shape
    d = c * h * w
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise RuntimeInputError(f"x has dtype {x.dtype}; pass floats in [0, 1] or uint8 in [0, 255]")
    if x.ndim == 4 and x.shape[1:] == shape:
        flat = False
    elif x.ndim == 2 and x.shape[1] == d:
        flat = True
    else:
        hint = "; add a batch axis (x[None])" if x.shape in (shape, (d,)) else ""
        raise RuntimeInputError(f"x has shape {tuple(x.shape)}; expected (N, {c}, {h}, {w}) or (N, {d}){hint}")
    if x.shape[0] == 0:
        raise RuntimeInputError("x holds no images (N = 0)")
    return x, flat


def pixels(x: np.ndarray, shape: tuple) -> np.ndarray:
    """One chunk of checked images -> float32 (N, C, H, W) in [0, 1]."""
    x = x.reshape(x.shape[0], *shape)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise RuntimeInputError("x contains NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise RuntimeInputError(f"x has values in [{lo:g}, {hi:g}]; floats must lie in [0, 1] "
                                f"(or pass uint8 in [0, 255])")
    return np.ascontiguousarray(x)


def latents(z, latent_dim: int) -> np.ndarray:
    """Check z's shape and dtype: floats (N, latent_dim)."""
    z = np.asarray(z)
    latents_like(z.shape, z.dtype, latent_dim)
    return z


def latents_like(shape: tuple, dtype: np.dtype, latent_dim: int) -> None:
    """latents' checks on a shape and dtype alone (an .npy's header, before its rows are read)."""
    if not np.issubdtype(dtype, np.floating):
        raise RuntimeInputError(f"z has dtype {dtype}; latents must be floats")
    if len(shape) != 2 or shape[1] != latent_dim:
        hint = "; add a batch axis (z[None])" if tuple(shape) == (latent_dim,) else ""
        raise RuntimeInputError(f"z has shape {tuple(shape)}; expected (N, {latent_dim}) "
                                f"(latent_dim is {latent_dim}){hint}")
    if shape[0] == 0:
        raise RuntimeInputError("z holds no latents (N = 0)")


def finite_latents(z: np.ndarray) -> np.ndarray:
    """One chunk of checked latents -> contiguous float32, refusing NaN and inf."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    if not np.isfinite(z).all():
        raise RuntimeInputError("z contains NaN or inf")
    return z

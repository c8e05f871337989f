"""Calibration data for static int8: real images (the training data the checkpoint names, or an .npy), the latents
the decoder sees for them (posterior samples and prior draws), and a held-out set to measure the error on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vae_edge.runtime.errors import one_line
from vae_edge.train.model import VAE

from .errors import ExportError
from .quantize import Calibration, random_inputs

DEFAULT_IMAGES = 512
CHECK_IMAGES = 1000
SEED = 0  # which images and which noise: the same export gives the same int8 files


def calibration(model: VAE, spec: int | str | Path | None, recipe: dict | None, say=None) -> Calibration:
    """spec: a number of training images (of the dataset in `recipe`), an .npy of images, or None (the default
    number). Without a recipe, the error is measured on random inputs and nothing is calibrated; so too when the
    recipe's data is not on this machine (nothing is downloaded), and `say` is told so in one line."""
    spec = DEFAULT_IMAGES if spec is None else spec
    if isinstance(spec, (str, Path)) and str(spec).endswith(".npy"):
        images = _read_npy(Path(spec), model.input_shape)
        n_check = max(1, len(images) // 4)
        return _latents(model, images[:-n_check], images[-n_check:], f"{len(images) - n_check} images from {spec}")
    try:
        n = int(spec)
    except (TypeError, ValueError):
        raise ExportError(f"--calibration takes a number of images or an .npy file, got {spec!r}") from None
    if n < 1:
        raise ExportError(f"--calibration must be at least 1 image, got {n}")
    if not recipe or not recipe.get("dataset"):
        return random_inputs(model.input_shape, model.latent_dim)
    from vae_edge.train.data import DataError, load_data, pixels

    try:
        data = load_data(recipe["dataset"], recipe.get("data_dir", "data"), recipe.get("image_size", 28),
                         recipe.get("channels", 1), recipe.get("test_fraction", 0.1), recipe.get("seed", 1),
                         download=False, background=recipe.get("background", "white"))
    except DataError as e:
        out = random_inputs(model.input_shape, model.latent_dim)
        out.source += f"; {recipe['dataset']} not found here: {one_line(e)}"
        (say or (lambda _: None))(f"note: int8 measured on random inputs, not calibrated: {one_line(e)} "
                                  f"(--calibration FILE.npy gives images)")
        return out
    if tuple(data.shape) != tuple(model.input_shape):
        raise ExportError(f"{recipe['dataset']} has images of {data.shape}; the model takes {model.input_shape}")
    # On the pixels the model is defined on: a --binarize model sees 0/1 bits, never grey levels, and its int8 error
    # is measured where it is used (the test bits are vae-train's own).
    binarize = bool(recipe.get("binarize"))
    pick = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(SEED))[:n]
    x = pixels(data.train[pick], binarize, seed=SEED).numpy()
    check = pixels(data.test, binarize)[:CHECK_IMAGES].numpy()
    return _latents(model, x, check, f"{len(x)} training images of {recipe['dataset']}"
                    + (", binarized" if binarize else ""))


@torch.no_grad()
def _latents(model: VAE, x: np.ndarray, check: np.ndarray, source: str) -> Calibration:
    """The decoder's inputs: z ~ q(z|x) for the calibration images and as many prior draws; for the check,
    mu of the held-out images and prior draws (what reconstruct and sample decode)."""
    g = torch.Generator().manual_seed(SEED)
    mu, logvar = model.encode(torch.from_numpy(x))
    z = mu + torch.randn(mu.shape, generator=g) * torch.exp(0.5 * logvar)
    z = torch.cat([z, torch.randn(mu.shape, generator=g)])
    check_mu, _ = model.encode(torch.from_numpy(check))
    z_check = torch.cat([check_mu, torch.randn(check_mu.shape, generator=g)])
    return Calibration(x, z.numpy(), check, z_check.numpy(), source)


def _read_npy(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """An .npy of images, (N, C, H, W) or (N, H, W), uint8 or float in [0, 1] -> float32 (N, C, H, W)."""
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ExportError(f"--calibration {path} is not a readable .npy array: {one_line(e)}") from None
    if a.ndim == 3 and shape[0] == 1:
        a = a[:, None]
    if a.ndim != 4 or tuple(a.shape[1:]) != tuple(shape) or len(a) < 2:
        raise ExportError(f"--calibration {path} has shape {tuple(a.shape)}; the model takes images of "
                          f"{tuple(shape)}: expected (N, {', '.join(map(str, shape))}) with N >= 2")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255
    if a.dtype.kind != "f" or not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ExportError(f"--calibration {path} must hold uint8, or floats in [0, 1]")
    return a.astype(np.float32)

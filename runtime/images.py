"""Files in and out: image grids like torchvision's save_image, image loading, and atomic .npy writes.

PNG grids are written by png.py on zlib; Pillow is imported only to read images and to write other formats
(.jpg, .bmp, .webp), so neither `import vae_edge.runtime` nor a plain `vae-sample` loads it.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import RuntimeInputError
from .png import write_png

IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def make_grid(images: np.ndarray, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> one uint8 image (rows, cols, C), laid out like torchvision's make_grid.

    Images go row by row, nrow per row, with `padding` pixels of pad_value around each; pixels are
    quantized as torchvision's save_image does: floor(x * 255 + 0.5), clipped to [0, 255].
    Unlike torchvision, a single image is padded too, and one channel stays one channel.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise RuntimeInputError(f"a grid needs images of shape (N, C, H, W) with N >= 1, got {images.shape}")
    if nrow < 1 or padding < 0:
        raise RuntimeInputError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    hh, ww = h + padding, w + padding
    grid = np.full((c, rows * hh + padding, cols * ww + padding), pad_value, np.float32)
    for k in range(n):
        y, x = divmod(k, cols)
        grid[:, y * hh + padding:y * hh + padding + h, x * ww + padding:x * ww + padding + w] = images[k]
    pixels = np.clip(grid * np.float32(255) + np.float32(0.5), 0, 255).astype(np.uint8)
    return pixels.transpose(1, 2, 0)


def image_format(path: str | os.PathLike) -> str:
    """The Pillow format for an output image name, from its suffix (.png, .jpg, ...)."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise RuntimeInputError(f"cannot write an image grid to {path}: use a name ending in "
                                f"{', '.join(IMAGE_SUFFIXES)} (for arrays use --npy)")
    return IMAGE_SUFFIXES[suffix]


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator:
    """Open a temporary file beside `path` for writing; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # os.open with mode 0o666 honours the umask (mkstemp would leave the result private, 0o600).
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # a failed write (File too large, disk full) names none
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def save_grid(images: np.ndarray, path: str | os.PathLike, nrow: int = 8, padding: int = 2) -> None:
    """Write (N, C, H, W) images in [0, 1] as one grid image (PNG unless the suffix says otherwise), atomically."""
    fmt = image_format(path)
    pixels = make_grid(images, nrow=nrow, padding=padding)
    c = pixels.shape[2]
    if c not in MODES:
        raise RuntimeInputError(f"cannot write images with {c} channels; 1, 3 or 4 are supported")
    if fmt == "PNG":
        with atomic_file(path) as f:
            write_png(f, pixels)
        return
    from PIL import Image

    img = Image.fromarray(pixels[:, :, 0] if c == 1 else pixels, MODES[c])
    if fmt == "JPEG" and c == 4:
        img = img.convert("RGB")
    with atomic_file(path) as f:
        img.save(f, format=fmt)


def load_images(paths: Iterable[str | os.PathLike], input_shape: tuple[int, int, int]) -> np.ndarray:
    """Read image files as uint8 (N, C, H, W) for a model of input_shape (C, H, W).

    Each image is converted to the model's channels (grayscale for 1, RGB for 3, RGBA for 4) and,
    when its size differs, resized to (H, W) with bilinear filtering.
    """
    from PIL import Image, UnidentifiedImageError

    c, h, w = input_shape
    if c not in MODES:
        raise RuntimeInputError(f"cannot read images for a model with {c} channels; use an .npy file")
    out = np.empty((0, c, h, w), np.uint8)
    arrays = []
    for p in paths:
        try:
            with Image.open(p) as img:
                img = img.convert(MODES[c])
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                a = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeInputError(f"cannot read image {p}: {first}") from None
        arrays.append(a.reshape(h, w, c).transpose(2, 0, 1))
    return np.stack(arrays) if arrays else out


def save_npy(array: np.ndarray, path: str | os.PathLike) -> None:
    """np.save, but atomic: a temporary file beside `path`, renamed at the end."""
    with atomic_file(path) as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def save_npy_chunks(chunks: Iterable[np.ndarray], path: str | os.PathLike, shape: tuple[int, ...],
                    dtype=np.float32) -> None:
    """Stream chunks (stacked on axis 0) into one .npy of `shape`, holding one chunk in memory at a time.

    The header is written first (numpy.lib.format), then each chunk's bytes; the file appears at
    `path` only once all shape[0] rows are written.
    """
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    with atomic_file(path) as f:
        np.lib.format.write_array_header_1_0(f, header)
        rows = 0
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=dtype)
            if chunk.shape[1:] != tuple(shape[1:]):
                raise RuntimeInputError(f"chunk of shape {chunk.shape} does not fit an array of shape {shape}")
            f.write(chunk.data.cast("B"))
            rows += chunk.shape[0]
        if rows != shape[0]:
            raise RuntimeInputError(f"wrote {rows} rows but the array has {shape[0]}")

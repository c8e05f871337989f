"""Files in and out: image grids like torchvision's save_image, image loading, one PNG per image, atomic .npy
writes (whole, or streamed in chunks: of a known count, or of one known only at the end) and the rows' index.

PNG grids are written by png.py on zlib; Pillow is imported only to read images and to write other formats
(.jpg, .bmp, .webp), so neither `import vae_edge.runtime` nor a plain `vae-sample` loads it.
"""
from __future__ import annotations

import csv
import io
import math
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from .errors import RuntimeInputError, one_line
from .folder import BACKGROUND
from .outputs import atomic_file, atomic_files
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


def save_grid(images: np.ndarray, path: str | os.PathLike, nrow: int = 8, padding: int = 2) -> None:
    """Write (N, C, H, W) images in [0, 1] as one grid image (PNG unless the suffix says otherwise), atomically."""
    fmt = image_format(path)
    with atomic_file(path) as f:
        write_grid(f, images, fmt, nrow, padding)


def save_grid_and_npy(images: np.ndarray, png: str | os.PathLike, npy: str | os.PathLike, nrow: int = 8) -> None:
    """The grid and the .npy of the same images, published as a pair: a kill never leaves one from another run."""
    fmt = image_format(png)
    with atomic_files(png, npy) as (grid, array):
        write_grid(grid, images, fmt, nrow)
        write_npy(array, images)


def write_grid(f: BinaryIO, images: np.ndarray, fmt: str, nrow: int = 8, padding: int = 2) -> None:
    """Write the grid of images to an open file in fmt (a Pillow format name; "PNG" by png.py)."""
    pixels = make_grid(images, nrow=nrow, padding=padding)
    c = pixels.shape[2]
    if c not in MODES:
        raise RuntimeInputError(f"cannot write images with {c} channels; 1, 3 or 4 are supported")
    if fmt == "PNG":
        write_png(f, pixels)
        return
    from PIL import Image

    img = Image.fromarray(pixels[:, :, 0] if c == 1 else pixels, MODES[c])
    if fmt == "JPEG" and c == 4:
        img = img.convert("RGB")
    img.save(f, format=fmt)


def load_images(paths: Iterable[str | os.PathLike], input_shape: tuple[int, int, int],
                background: str = BACKGROUND) -> np.ndarray:
    """Read image files as uint8 (N, C, H, W) for a model of input_shape (C, H, W), each by read_image's rule."""
    c, h, w = input_shape
    if c not in MODES:
        raise RuntimeInputError(f"cannot read images for a model with {c} channels; use an .npy file")
    colour = background_rgb(background)
    arrays = [read_image(p, input_shape, colour) for p in paths]
    return np.stack(arrays) if arrays else np.empty((0, c, h, w), np.uint8)


def read_image(source, input_shape: tuple[int, int, int], background: tuple[int, int, int]) -> np.ndarray:
    """One image file (a path or a file object) as uint8 (C, H, W): the one rule of training, vae-encode, vae-score
    and vae-serve (docs/runtime.md#folders-in-and-out). An image with transparency is composited onto `background`
    (RGB) unless the model has an alpha channel itself (C = 4); it is then converted to the model's channels
    (grayscale for 1, RGB for 3, RGBA for 4) and, when its size differs, stretched to H x W with bilinear filtering
    (the aspect ratio is not kept: nothing is cropped or padded)."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = input_shape
    try:
        # A decompression bomb (a small file of a huge image): over Pillow's MAX_IMAGE_PIXELS (89.5 million)
        # Pillow only warns and decodes it; refused here, before it is decoded (docs/security.md).
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if c != 4 and _has_alpha(img):
                    rgba = img.convert("RGBA")
                    img = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba)
                img = img.convert(MODES[c])
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                a = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise RuntimeInputError(f"cannot read image {source}: {one_line(e)}") from None
    return a.reshape(h, w, c).transpose(2, 0, 1)


def _has_alpha(img) -> bool:
    """An alpha channel, or a palette or colour key marked transparent."""
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def background_rgb(text: str) -> tuple[int, int, int]:
    """The background images with transparency are composited onto: white, black, or #RRGGBB."""
    named = {"white": (255, 255, 255), "black": (0, 0, 0)}
    t = str(text).strip().lower()
    if t in named:
        return named[t]
    if len(t) == 7 and t[0] == "#" and all(ch in "0123456789abcdef" for ch in t[1:]):
        return int(t[1:3], 16), int(t[3:5], 16), int(t[5:7], 16)
    raise RuntimeInputError(f"a background is white, black or #RRGGBB (as #808080), got {str(text)[:40]!r}")


def save_npy(array: np.ndarray, path: str | os.PathLike) -> None:
    """np.save, but atomic: a temporary file beside `path`, renamed at the end."""
    with atomic_file(path) as f:
        write_npy(f, array)


def write_npy(f: BinaryIO, array: np.ndarray) -> None:
    np.save(f, np.asarray(array), allow_pickle=False)


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """Memory-map an .npy file (large arrays are then read chunk by chunk), refusing pickles."""
    try:
        with np.errstate(over="ignore"):  # a declared size past 2^63 overflows in numpy's memmap before its ValueError
            return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise RuntimeInputError(f"no such file: {path}") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 (a damaged header makes numpy raise SyntaxError, tokenize's errors, ...)
        raise RuntimeInputError(f"{path} is not a readable .npy array: {one_line(e)[:200]}") from None


def save_npy_chunks(chunks: Iterable[np.ndarray], path: str | os.PathLike, shape: tuple[int, ...],
                    dtype=np.float32) -> None:
    """Stream chunks (stacked on axis 0) into one .npy of `shape`, holding one chunk in memory at a time; the file
    appears at `path` only once all shape[0] rows are written."""
    with atomic_file(path) as f:
        write_npy_chunks(f, chunks, shape, dtype)


def write_npy_chunks(f: BinaryIO, chunks: Iterable[np.ndarray], shape: tuple[int, ...], dtype=np.float32) -> None:
    """The header first (numpy.lib.format), then each chunk's bytes, to an open file or a pipe."""
    f.write(_npy_header(shape, dtype))
    rows = _write_rows(f, chunks, shape, dtype)
    if rows != shape[0]:
        raise RuntimeInputError(f"wrote {rows} rows but the array has {shape[0]}")


def write_npy_rows(f: BinaryIO, chunks: Iterable[np.ndarray], row_shape: tuple[int, ...], dtype=np.float32) -> int:
    """Stream chunks of a row count not known in advance into a seekable file as one .npy; returns the count. The
    header is written first for the largest count, and rewritten for the real one at the end (to the same length)."""
    start = f.tell()
    reserved = _npy_header((np.iinfo(np.int64).max, *row_shape), dtype)
    f.write(reserved)
    rows = _write_rows(f, chunks, (None, *row_shape), dtype)
    end = f.tell()
    f.seek(start)
    f.write(_npy_header((rows, *row_shape), dtype, len(reserved)))
    f.seek(end)
    return rows


def _npy_header(shape: tuple[int, ...], dtype, size: int | None = None) -> bytes:
    """numpy.lib.format's version 1.0 header, padded with spaces (as numpy pads it) to `size` bytes if given."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buf, header)
    h = buf.getvalue()
    if size is not None and len(h) < size:
        pad = size - len(h)
        h = h[:8] + struct.pack("<H", len(h) - 10 + pad) + h[10:-1] + b" " * pad + b"\n"
    return h


def _write_rows(f: BinaryIO, chunks: Iterable[np.ndarray], shape: tuple, dtype) -> int:
    rows = 0
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, dtype=dtype)
        if chunk.shape[1:] != tuple(shape[1:]):
            raise RuntimeInputError(f"chunk of shape {chunk.shape} does not fit an array of shape {shape}")
        f.write(chunk.data.cast("B"))
        rows += chunk.shape[0]
    return rows


def read_npy_chunks(f: BinaryIO, rows: int) -> tuple[tuple[int, ...], np.dtype, Iterator[np.ndarray]]:
    """An .npy on an open file or a pipe, read without seeking: (its shape, its dtype, its rows in chunks of `rows`),
    one chunk in memory at a time. Object arrays (pickles) and Fortran order are refused."""
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, fortran, dtype = read(f)
    except (ValueError, KeyError, EOFError) as e:
        raise RuntimeInputError(f"standard input is not a readable .npy array: {str(e).strip()[:200]}") from None
    if dtype.hasobject or fortran or not shape:
        raise RuntimeInputError(f"standard input holds a {'Fortran-order ' if fortran else ''}{dtype} array of shape "
                                f"{shape}; expected a C-order numeric array with a row axis")
    row_bytes = math.prod(shape[1:]) * dtype.itemsize

    def chunks() -> Iterator[np.ndarray]:
        for i in range(0, shape[0], rows):
            m = min(rows, shape[0] - i)
            data = f.read(m * row_bytes)
            if len(data) != m * row_bytes:
                raise RuntimeInputError(f"standard input ended after {i + len(data) // max(row_bytes, 1)} of "
                                        f"{shape[0]} rows")
            yield np.frombuffer(data, dtype).reshape(m, *shape[1:])

    return shape, dtype, chunks()


def write_image_files(chunks: Iterable[np.ndarray], folder: Path, count: int) -> Iterator[np.ndarray]:
    """Pass chunks of (m, C, H, W) images in [0, 1] through, writing each image as its own PNG in folder, named by
    its row (00000.png, ...; wider when count needs it), each file atomically."""
    width = max(5, len(str(count - 1)))
    row = 0
    for chunk in chunks:
        folder.mkdir(exist_ok=True)  # once the first images are made: a run refused before leaves no folder
        for image in chunk:
            with atomic_file(folder / f"{row:0{width}d}.png") as f:
                write_grid(f, image[None], "PNG", nrow=1, padding=0)
            row += 1
        yield chunk


def write_index(f: BinaryIO, named: Iterable[tuple[list[str], np.ndarray]], column: str) -> Iterator[np.ndarray]:
    """Pass the arrays of (names, array) chunks through, writing the names to f as CSV: a header (`column`: path or
    index) and one line per row, as vae-score's first column."""
    f.write(_csv([[column]]))
    for names, array in named:
        f.write(_csv([name] for name in names))
        yield array


def _csv(rows: Iterable[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue().encode()

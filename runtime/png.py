"""A small PNG writer on the standard library's zlib: 8-bit grayscale, RGB and RGBA, nothing else.

vae-sample writes its grid with this instead of Pillow, whose import costs more than the rest of a
plain run (docs/performance.md, Cold start). The file is a plain PNG (no filters, no interlace, no metadata),
so any reader, Pillow included, gets back exactly the pixels given.
"""
from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: grayscale, truecolour, truecolour with alpha
ROWS_PER_BAND = 256  # rows compressed at a time, so a large grid never sits in memory twice


def _chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)) + kind + data)
    f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))


def write_png(f: BinaryIO, pixels: np.ndarray, level: int = 6) -> None:
    """Write uint8 pixels (H, W) or (H, W, C) with C in 1, 3, 4 to the binary file f as a PNG."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in COLOR_TYPES or 0 in pixels.shape:
        raise ValueError(f"a PNG needs uint8 pixels (H, W) or (H, W, C) with C in 1, 3, 4; "
                         f"got {pixels.dtype} {pixels.shape}")
    h, w, c = pixels.shape
    f.write(SIGNATURE)
    _chunk(f, b"IHDR", struct.pack(">IIBBBBB", w, h, 8, COLOR_TYPES[c], 0, 0, 0))
    z = zlib.compressobj(level)
    for top in range(0, h, ROWS_PER_BAND):
        band = pixels[top:top + ROWS_PER_BAND].reshape(-1, w * c)
        rows = np.zeros((band.shape[0], 1 + w * c), np.uint8)  # each row starts with its filter type, 0: none
        rows[:, 1:] = band
        data = z.compress(rows.tobytes())
        if data:
            _chunk(f, b"IDAT", data)
    _chunk(f, b"IDAT", z.flush())
    _chunk(f, b"IEND", b"")

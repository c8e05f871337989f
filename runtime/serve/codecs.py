"""Bodies in and out: JSON, .npy (application/x-npy) and PNG, each checked before anything trusts it.

Every failure is an HTTPError of one line: the app answers it as {"error": "..."} with its status. An .npy body is
read from its header and bytes by hand (numpy.load on a buffer allocates what the header claims before reading),
and an image's size is read from its header before Pillow decodes its pixels.
"""
from __future__ import annotations

import ast
import io
import json
import math
from typing import Any, cast

import numpy as np

from ..errors import one_line
from ..folder import BACKGROUND
from ..images import load_images, make_grid
from ..png import write_png

JSON, NPY, PNG = "application/json", "application/x-npy", "image/png"
IMAGE_TYPES = ("image/png", "image/jpeg")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def media_type(content_type: str | None) -> str:
    """'application/json; charset=utf-8' -> 'application/json'; none -> ''."""
    return (content_type or "").split(";")[0].strip().lower()


def negotiate(accept: str | None, offers: tuple[str, ...]) -> str:
    """The offer the Accept header ranks highest (by q-value, then the order of offers); no header: the first."""
    if not accept or not accept.strip():
        return offers[0]
    ranked = []
    for media_range in accept.split(","):
        kind, *params = [p.strip().lower() for p in media_range.split(";")]
        q = next((_q(p[2:]) for p in params if p.startswith("q=")), 1.0)
        for i, offer in enumerate(offers):
            if q > 0 and (kind in (offer, "*/*") or (kind.endswith("/*") and offer.startswith(kind[:-1]))):
                ranked.append((-q, i, offer))
    if not ranked:
        raise HTTPError(406, f"cannot answer with {accept[:100]!r}; this route gives {', '.join(offers)}")
    return min(ranked)[2]


def _q(text: str) -> float:
    try:
        q = float(text)
    except ValueError:
        return 0.0
    return q if math.isfinite(q) else 0.0


def read_json(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise HTTPError(400, f"the body is not valid JSON: {one_line(e)[:200]}") from None
    if not isinstance(value, dict):
        raise HTTPError(422, f"the JSON body must be an object, got {type(value).__name__}")
    return value


def json_array(value, what: str) -> np.ndarray:
    """A JSON field of nested lists of numbers -> a float32 array (NaN and inf kept, for the model's check)."""
    if not isinstance(value, list):
        raise HTTPError(422, f"{what} must be a list of lists of numbers")
    try:
        a = np.array(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise HTTPError(422, f"{what} must be a rectangular list of lists of numbers") from None
    return a.astype(np.float32)


NPY_DTYPES = ("<f4", "<f8", "<f2", "|u1")


def read_npy(body: bytes, what: str) -> np.ndarray:
    """An .npy body -> its array, refusing pickles, object dtypes and a header that disagrees with the bytes."""
    f = io.BytesIO(body)
    try:
        major, _ = np.lib.format.read_magic(f)
        header_len_size = 2 if major == 1 else 4
        header_len = int.from_bytes(f.read(header_len_size), "little")
        header = ast.literal_eval(f.read(header_len).decode("latin1"))
        descr, order, shape = header["descr"], header["fortran_order"], tuple(header["shape"])
    except Exception as e:  # noqa: BLE001 (numpy raises ValueError; a damaged header anything literal_eval can)
        raise HTTPError(400, f"{what} is not a readable .npy array: {one_line(e)}") from None
    if descr not in NPY_DTYPES:
        raise HTTPError(422, f"{what} has dtype {descr!r}; send float32, float64, float16 or uint8")
    if not all(isinstance(d, int) and d >= 0 for d in shape) or order not in (False, True):
        raise HTTPError(400, f"{what} has a malformed .npy header")
    dtype = np.dtype(descr)
    expected = math.prod(shape) * dtype.itemsize
    data = body[f.tell():]
    if len(data) != expected:
        raise HTTPError(400, f"{what}: the .npy header says {shape} {descr} ({expected} bytes) but "
                             f"{len(data)} bytes follow")
    a = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if order else "C")
    return a if dtype == np.uint8 else a.astype(np.float32)


class _Body(io.BytesIO):
    def __str__(self) -> str:  # how load_images and Pillow name the file in their one-line errors
        return "in the request body"

    __repr__ = __str__


def read_image(body: bytes, shape: tuple[int, int, int], max_pixels: int,
               background: str = BACKGROUND) -> np.ndarray:
    """One PNG or JPEG body -> uint8 (1, C, H, W), read as vae-encode reads a file; its size is read from
    its header first, so a huge image is refused before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(_Body(body)) as img:
            w, h = img.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise HTTPError(400, f"the body is not a readable image: {one_line(e)}") from None
    if w * h > max_pixels:
        raise HTTPError(413, f"the image has {w} x {h} pixels; at most {max_pixels} are accepted")
    try:
        return load_images([cast(Any, _Body(body))], shape, background)  # Pillow reads a file object as well as a path
    except ValueError as e:
        raise HTTPError(400, f"the body is not a readable image: {e}") from None


def npy_bytes(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, np.ascontiguousarray(a), allow_pickle=False)
    return f.getvalue()


def png_bytes(images: np.ndarray, nrow: int) -> bytes:
    """(N, C, H, W) in [0, 1] -> one PNG grid, laid out as vae-sample's (nrow images a row)."""
    f = io.BytesIO()
    write_png(f, make_grid(images, nrow=nrow))
    return f.getvalue()

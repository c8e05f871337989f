"""vae-score's inputs, each in chunks of a batch so that memory stays bounded whatever the count: image files,
folders walked recursively (sorted, hidden names skipped, symlinked folders not followed; the files whose suffix
is an image's, or those --glob matches), or one .npy (memory-mapped, or `-`: standard input, read row by row).

A chunk is (names, images): a name is a file's path, or a row's index in the .npy. A file that cannot be read
is handed to `skip` (its one-line reason) and left out.
"""
from __future__ import annotations

import fnmatch
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import RuntimeInputError
from .images import IMAGE_SUFFIXES, load_images, read_npy_chunks

STDIN = "-"


def is_npy(inputs: list[str]) -> bool:
    """One .npy (or -) rather than image files and folders; a mix is refused in one line."""
    arrays = [p for p in inputs if p == STDIN or p.lower().endswith(".npy")]
    if arrays and len(inputs) > 1:
        raise RuntimeInputError("give either image files and folders or one .npy (- for standard input), "
                                "not both or several .npy")
    return bool(arrays)


def files(inputs: Iterable[str], glob: str | None) -> Iterator[Path]:
    """Each input file as named, and each folder's files, depth first in sorted order."""
    for p in map(Path, inputs):
        if p.is_dir():
            yield from _folder(p, glob)
        else:
            yield p


def _folder(root: Path, glob: str | None) -> Iterator[Path]:
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder, name)
            below = path.relative_to(root).as_posix()
            if not name.startswith(".") and (fnmatch.fnmatchcase(below, glob) if glob
                                              else path.suffix.lower() in IMAGE_SUFFIXES):
                yield path


def image_chunks(paths: Iterable[Path], shape: tuple, batch: int,
                 skip: Callable[[str], None]) -> Iterator[tuple[list[str], np.ndarray]]:
    """The images at paths as uint8 (n, C, H, W), `batch` at a time, with their paths."""
    names: list[str] = []
    arrays: list[np.ndarray] = []
    for p in paths:
        try:
            arrays.append(load_images([p], shape)[0])
        except RuntimeInputError as e:
            skip(str(e))
            continue
        names.append(str(p))
        if len(arrays) == batch:
            yield names, np.stack(arrays)
            names, arrays = [], []
    if arrays:
        yield names, np.stack(arrays)


def npy_chunks(path: str, batch: int, read_npy) -> tuple[int, Iterator[tuple[list[str], np.ndarray]]]:
    """(the row count, the rows in chunks with their indices) of an .npy file (read_npy memory-maps it) or of
    standard input."""
    if path == STDIN:
        shape, rows = read_npy_chunks(sys.stdin.buffer, batch)
    else:
        x = read_npy(Path(path))
        shape = x.shape
        rows = (x[i:i + batch] for i in range(0, x.shape[0] if x.ndim else 0, batch))
    if len(shape) < 2:
        raise RuntimeInputError(f"{path} holds an array of shape {tuple(shape)}; expected (N, C, H, W) or (N, C*H*W)")

    def chunks():
        i = 0
        for x in rows:
            yield [str(j) for j in range(i, i + len(x))], x
            i += len(x)

    return shape[0], chunks()

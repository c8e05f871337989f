"""The inputs of vae-score and vae-encode, each in chunks of a batch so that memory stays bounded whatever the
count: image files, folders walked recursively (sorted, hidden names skipped, symlinked folders not followed; the
files whose suffix is an image's, or those --glob matches), or one .npy (memory-mapped, or `-`: standard input, read
row by row). An image file is read by images.read_image's rule, that of training too: transparency composited onto
the background of the model's recipe (white unless it names another), converted to the model's channels, stretched
to its H x W (bilinear).

A chunk is (names, images): a name is a file's path (the folder as given, then the path below it), or a row's
index in the .npy. A file that cannot be read is named on stderr in one line and left out, or, with strict, stops
the run. On a terminal a progress line counts the images as the command takes each chunk.
"""
from __future__ import annotations

import fnmatch
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import RuntimeInputError
from .folder import BACKGROUND
from .images import IMAGE_SUFFIXES, load_images, read_npy, read_npy_chunks
from .progress import Progress

STDIN = "-"

Chunks = Iterator[tuple[list[str], np.ndarray]]


class Walk:
    """A command's inputs: `chunks` (names, images) as it takes them, `npy` (names are row indices), `skipped`."""

    def __init__(self, inputs: list[str], glob: str | None, shape: tuple, batch: int, strict: bool, quiet: bool,
                 label: str, background: str = BACKGROUND):
        self.inputs, self.npy, self.strict = inputs, is_npy(inputs), strict
        self.skipped: list[str] = []
        show = not quiet and sys.stderr.isatty()
        if self.npy:
            shape_in, _, rows = npy_rows(inputs[0], batch)
            if len(shape_in) < 2:
                raise RuntimeInputError(f"{inputs[0]} holds an array of shape {tuple(shape_in)}; expected "
                                        f"(N, C, H, W) or (N, C*H*W)")
            total, chunks = shape_in[0], _indexed(rows)
        else:  # the count for time left costs a second walk, made only when a terminal shows it
            total = sum(1 for _ in files(inputs, glob)) if show else 0
            chunks = image_chunks(files(inputs, glob), shape, batch, self._skip, background)
        self.progress = Progress(total, label, show)
        self.chunks = self._counted(chunks)

    def _skip(self, reason: str) -> None:
        if self.strict:
            raise RuntimeInputError(f"{reason} (--strict)")
        self.skipped.append(reason)
        self.progress.clear()
        sys.stderr.write(f"skipped: {reason}\n")
        sys.stderr.flush()

    def _counted(self, chunks: Chunks) -> Chunks:
        with self.progress:
            for names, x in chunks:
                yield names, x
                self.progress.advance(len(names))
        if not self.progress.done:  # a run on nothing is a mistake (a wrong folder, a --glob that matches nothing)
            found = f"could be read ({len(self.skipped)} skipped)" if self.skipped else "found"
            raise RuntimeInputError(f"no images {found} in {' '.join(self.inputs)}"
                                    f"{'' if self.npy or self.skipped else ' (image suffixes, or --glob)'}")

    def map(self, fn: Callable[[np.ndarray, int], np.ndarray]) -> Chunks:
        """(names, fn(images, start)) per chunk, start the index of the chunk's first image among all taken (so
        that image i's noise is its own whatever the chunking)."""
        start = 0
        for names, x in self.chunks:
            yield names, fn(x, start)
            start += len(names)

    def skips(self) -> str:
        """The closing line's count of skipped files ('; skipped 2 unreadable files'), or ''."""
        n = len(self.skipped)
        return f"; skipped {n} unreadable file{'s' * (n != 1)}" if n else ""


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


def image_chunks(paths: Iterable[Path], shape: tuple, batch: int, skip: Callable[[str], None],
                 background: str = BACKGROUND) -> Iterator[tuple[list[str], np.ndarray]]:
    """The images at paths as uint8 (n, C, H, W), `batch` at a time, with their paths."""
    names: list[str] = []
    arrays: list[np.ndarray] = []
    for p in paths:
        try:
            arrays.append(load_images([p], shape, background)[0])
        except RuntimeInputError as e:
            skip(str(e))
            continue
        names.append(str(p))
        if len(arrays) == batch:
            yield names, np.stack(arrays)
            names, arrays = [], []
    if arrays:
        yield names, np.stack(arrays)


def npy_rows(path: str, batch: int) -> tuple[tuple[int, ...], np.dtype, Iterator[np.ndarray]]:
    """(shape, dtype, the rows in chunks of batch) of an .npy file (memory-mapped) or of standard input (-)."""
    if path == STDIN:
        return read_npy_chunks(sys.stdin.buffer, batch)
    x = read_npy(path)

    def chunks() -> Iterator[np.ndarray]:  # batch is read on the first chunk, once the API has checked it
        for i in range(0, x.shape[0] if x.ndim else 0, batch):
            yield x[i:i + batch]

    return x.shape, x.dtype, chunks()


def _indexed(rows: Iterator[np.ndarray]) -> Chunks:
    i = 0
    for x in rows:
        yield [str(j) for j in range(i, i + len(x))], x
        i += len(x)

"""The decoded cache of an image folder: its images decoded once, in worker processes, into one uint8 array
[N, C, H, W] on disk (images.npy, memory-mapped by later runs), with index.json naming each row's file.

Where: --cache-dir, else $VAE_EDGE_CACHE_DIR, else $XDG_CACHE_HOME/vae-edge/images, else ~/.cache/vae-edge/images.
An entry (a folder named by a key) holds one image folder at one preprocessing: the key is the sha256 of the
folder's real path and of the preprocessing (channels, height, width, the resize, the alpha rule, the background and
VERSION). An entry serves while each file's path below the folder, size and modification time (ns) are those its
index records; a file changed, added or removed is decoded again, the other rows are copied from the old entry, and
one line says what changed. Both files are written by the one atomic write, as a pair, under a lock: a killed
decode leaves the old entry or none, never half of one. Unreadable files are recorded with their reason, so a later
run names them again without decoding them again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from vae_edge.runtime.errors import RuntimeInputError, one_line
from vae_edge.runtime.images import IMAGE_SUFFIXES, background_rgb, read_image, write_npy_rows
from vae_edge.runtime.outputs import atomic_files
from vae_edge.runtime.walk import files

from .progress import Bar

VERSION = 1  # of the decoding: raise it when runtime/images.read_image's rule or this layout changes
BLOCK = 64  # files a worker decodes per task
SHOWN = 3  # unreadable files named in the closing line
ENTRY_NAME = re.compile(r"[0-9a-f]{24}")  # what --clear-cache removes: entries, nothing else in the folder


@dataclass
class Cached:
    images: np.ndarray  # uint8 [N, C, H, W], memory-mapped from the entry's images.npy
    names: list[str]  # each row's file, as a path below the folder
    skipped: list[str]  # why each unreadable file was left out, in the folder's order
    entry: Path


def cache_root(option: str | os.PathLike | None = None) -> Path:
    """The cache folder: the option, else $VAE_EDGE_CACHE_DIR, else $XDG_CACHE_HOME/vae-edge/images, else
    ~/.cache/vae-edge/images."""
    if option:
        return Path(option)
    if os.environ.get("VAE_EDGE_CACHE_DIR"):
        return Path(os.environ["VAE_EDGE_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "vae-edge" / "images"


def preprocessing(shape: tuple[int, int, int], background: str) -> dict:
    """What decides the decoded pixels besides the files themselves."""
    c, h, w = shape
    return {"version": VERSION, "channels": c, "height": h, "width": w, "resize": "bilinear stretch",
            "alpha": "kept" if c == 4 else "composited", "background": "#%02x%02x%02x" % background_rgb(background)}


def entry_path(root: Path, folder: Path, prep: dict) -> Path:
    key = json.dumps([str(folder.resolve()), prep], sort_keys=True)
    return root / hashlib.sha256(key.encode()).hexdigest()[:24]


def folder_images(folder: Path, shape: tuple[int, int, int], background: str, root: Path, strict: bool = False,
                  say: Callable[[str], None] = lambda _: None, progress: bool = False,
                  workers: int | None = None, lap: Callable[[str], None] = lambda _: None) -> Cached:
    """The folder's images by the runtime's walk and reading rule, from the cache, decoding what it lacks first
    (then lap("decoding images") marks the run's time line)."""
    prep = preprocessing(shape, background)
    if next(iter(files([str(folder)], None)), None) is None:  # before an entry is made for it
        raise RuntimeInputError(f"no images in {folder} (files ending in {', '.join(IMAGE_SUFFIXES)})")
    entry = entry_path(root, folder, prep)
    entry.mkdir(parents=True, exist_ok=True)
    with _locked(entry):  # a second run over the same folder waits, then finds the entry made
        listing = _listing(folder)  # each file's size and time taken before it is read: a later change shows
        index, images, why = _open(entry, prep, shape)
        plan, todo = _plan(listing, index)
        if why or todo or len(plan) != len(index["files"]) + len(index["skipped"]):
            kept = len(listing) - len(todo)
            say(f"image cache: {why or _changes(listing, index, folder)}; decoding {len(todo):,} "
                f"file{'s' * (len(todo) != 1)}" + (f", the other {kept:,} from the cache," if kept else "")
                + f" into {entry}")
            _build(folder, entry, listing, plan, todo, images, prep, shape, background, strict, progress, workers)
            lap("decoding images")
            index, images, why = _open(entry, prep, shape)
            if why:  # written a moment ago by the atomic write: only a disk that lies gets here
                raise RuntimeInputError(f"the image cache {entry} could not be read back: {why}")
            held = sum(_size(e) for e in entries(root))
            say(f"image cache: {len(index['files']):,} images, {_size(entry) / 1e6:,.1f} MB; the cache folder "
                f"{root} holds {held / 1e6:,.1f} MB (vae-train --clear-cache empties it)")
        else:
            say(f"image cache: {len(index['files']):,} images of {folder} from {entry} ({_size(entry) / 1e6:,.1f} MB)")
    skipped = [s[3] for s in index["skipped"]]
    if skipped and strict:
        raise RuntimeInputError(f"{skipped[0]} (--strict)")
    if skipped:
        shown = "; ".join(skipped[:SHOWN]) + ("; ..." if len(skipped) > SHOWN else "")
        say(f"skipped {len(skipped)} unreadable file{'s' * (len(skipped) != 1)}: {shown}")
    return Cached(images, [f[0] for f in index["files"]], skipped, entry)


def entries(root: Path) -> list[Path]:
    """The cache's entries in root (folders named by a key)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and ENTRY_NAME.fullmatch(p.name)) if root.is_dir() else []


def clear(root: Path) -> tuple[int, int]:
    """Remove every entry in root; (entries removed, bytes freed). Files that are not entries stay."""
    found = entries(root)
    freed = sum(_size(e) for e in found)
    for e in found:
        shutil.rmtree(e)
    return len(found), freed


def decode(paths: list[str], shape: tuple[int, int, int], background: str) -> list[tuple[np.ndarray | None, str]]:
    """Each file as (C, H, W) uint8, or (None, why it cannot be read): what a worker process runs on a block."""
    colour = background_rgb(background)
    out: list[tuple[np.ndarray | None, str]] = []
    for p in paths:
        try:
            out.append((read_image(p, shape, colour), ""))
        except RuntimeInputError as e:
            out.append((None, str(e)))
    return out


# -- the entry on disk ----------------------------------------------------------------------------------------------

def _listing(folder: Path) -> list[tuple[str, int, int]]:
    """(path below the folder, size, mtime in ns) of each image file, in the walk's order."""
    out = []
    for p in files([str(folder)], None):
        st = p.stat()
        out.append((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return out


def _open(entry: Path, prep: dict, shape: tuple) -> tuple[dict, np.ndarray | None, str]:
    """(index, the memory-mapped images, '') of a usable entry; else an empty index, None and why not."""
    empty = {"files": [], "skipped": []}
    index_path, npy = entry / "index.json", entry / "images.npy"
    if not index_path.exists() and not npy.exists():
        return empty, None, "none of this folder at this size yet"
    try:
        index = json.loads(index_path.read_text())
        if index.get("preprocessing") != prep:
            return empty, None, "the cache was made by another version of the decoding"
        images = np.load(npy, mmap_mode="r", allow_pickle=False)
        if images.dtype != np.uint8 or images.shape != (len(index["files"]), *shape):
            return empty, None, f"the cache's images.npy holds {images.dtype} {images.shape}, not its index's"
        return index, images, ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return empty, None, f"the cache in {entry} is unreadable ({one_line(e)[:200]})"


def _plan(listing: list[tuple[str, int, int]], index: dict) -> tuple[list[tuple], list[int]]:
    """Per file: ("row", row in the old images), ("skip", why) or ("new", None); and the files to decode."""
    rows = {(f[0], f[1], f[2]): i for i, f in enumerate(index["files"])}
    skips = {(s[0], s[1], s[2]): s[3] for s in index["skipped"]}
    plan: list[tuple] = []
    todo: list[int] = []
    for i, key in enumerate(listing):
        if key in rows:
            plan.append(("row", rows[key]))
        elif key in skips:
            plan.append(("skip", skips[key]))
        else:
            plan.append(("new", None))
            todo.append(i)
    return plan, todo


def _changes(listing: list[tuple[str, int, int]], index: dict, folder: Path) -> str:
    """'2 files changed, 1 added and 1 removed in FOLDER since the cache was made'."""
    now = {f[0]: f[1:] for f in listing}
    then = {f[0]: tuple(f[1:3]) for f in [*index["files"], *index["skipped"]]}
    changed = sum(1 for name, key in now.items() if name in then and then[name] != key)
    added, removed = len(now.keys() - then.keys()), len(then.keys() - now.keys())
    return (f"{changed} file{'s' * (changed != 1)} changed, {added} added and {removed} removed in {folder} since "
            f"the cache was made")


def _build(folder: Path, entry: Path, listing: list[tuple[str, int, int]], plan: list[tuple], todo: list[int],
           old: np.ndarray | None, prep: dict, shape: tuple, background: str, strict: bool, progress: bool,
           workers: int | None) -> None:
    """Write images.npy and index.json anew: old rows copied, the files in `todo` decoded in worker processes."""
    index = {"version": VERSION, "folder": str(folder.resolve()), "preprocessing": prep, "files": [], "skipped": []}
    decoded = _decoded([str(folder / listing[i][0]) for i in todo], shape, background, progress, workers)

    def rows() -> Iterator[np.ndarray]:
        block: list[np.ndarray] = []
        for (how, row), meta in zip(plan, listing):
            if how == "row":
                image, why = old[row], ""
            elif how == "skip":
                image, why = None, row
            else:
                image, why = next(decoded)
            if image is None:
                if strict:
                    raise RuntimeInputError(f"{why} (--strict)")
                index["skipped"].append([*meta, why])
                continue
            index["files"].append(list(meta))
            block.append(image)
            if len(block) == BLOCK:
                yield np.stack(block)
                block = []
        if block:
            yield np.stack(block)

    with atomic_files(entry / "images.npy", entry / "index.json") as (npy, js):
        write_npy_rows(npy, rows(), shape, np.uint8)
        js.write(json.dumps(index).encode())


def _decoded(paths: list[str], shape: tuple, background: str, progress: bool,
             workers: int | None) -> Iterator[tuple[np.ndarray | None, str]]:
    """decode() over paths in order, BLOCK files a task, in worker processes (in this one for a single block), with
    at most two tasks a worker in flight so that memory stays bounded; a progress bar on a terminal."""
    blocks = [paths[i:i + BLOCK] for i in range(0, len(paths), BLOCK)]
    workers = min(workers or os.cpu_count() or 1, len(blocks))
    with Bar(len(paths), "decoding images", progress, unit="images") as bar:
        if workers <= 1:
            for block in blocks:
                yield from decode(block, shape, background)
                bar.advance(len(block))
            return
        with ProcessPoolExecutor(workers, mp_context=_context()) as pool:
            pending: list[Future] = []
            queue = iter(blocks)
            for block in queue:
                pending.append(pool.submit(decode, block, shape, background))
                if len(pending) == 2 * workers:
                    break
            while pending:
                done = pending.pop(0).result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append(pool.submit(decode, nxt, shape, background))
                yield from done
                bar.advance(len(done))


def _context():
    """fork where there is one, as torch's DataLoader does (workers start at once and need no importable __main__:
    a script without a main guard still works); spawn elsewhere."""
    methods = get_all_start_methods()
    return get_context("fork" if "fork" in methods and sys.platform.startswith("linux") else "spawn")


@contextmanager
def _locked(entry: Path) -> Iterator[None]:
    """One process at a time in an entry (POSIX advisory lock; elsewhere none)."""
    try:
        import fcntl
    except ImportError:  # Windows: untested here, and unlocked
        yield
        return
    with open(entry / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _size(entry: Path) -> int:
    return sum(p.stat().st_size for p in entry.iterdir() if p.is_file())

"""The model folder (docs/format.md): vae.json, read and checked once into a ModelFolder (read_folder), and the
files it lists, each opened safely and checked against its size and sha256 when a reader first needs it, in the
order docs/format.md numbers (issue 31: a folder may come from a stranger). Standard library only;
tests/conformance/ holds the cases every reader (Python, JavaScript, C) must accept or refuse alike."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ModelFolderError, missing_model_message, one_line
from .rules import LIMITS, PLAIN_PATH, RULES, message

FORMAT = RULES["format"]
FORMAT_VERSION_WRITTEN = RULES["format_version_written"]  # what a Gaussian-prior export writes
FORMAT_VERSIONS = tuple(sorted(map(int, RULES["format_versions"])))  # what this runtime reads
PRECISIONS = {name: tuple(keys) for name, keys in RULES["precisions"].items()}
SIZE_LIMIT = LIMITS["size_below"]  # input_shape and latent_dim: positive integers below this; files[*].bytes too
META_LIMIT = LIMITS["meta_bytes"]  # vae.json's size in bytes: at most 1 MiB
BACKGROUND = "white"  # what transparent pixels are composited onto, unless a model's recipe names another
DEPTH_LIMIT = LIMITS["meta_depth"]  # vae.json's arrays and objects nest at most this deep (the top object: 1)
# A JSON string (backslash escapes honoured; one left open runs to the end) or a bracket: what the nesting scan sees.
JSON_TOKEN = re.compile(rb'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.S)
# Read-only; a FIFO or a device opens without blocking; a symlink swapped in after the real path was checked is
# refused (O_NOFOLLOW on the resolved path). Flags a system lacks are left out.
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _size(v) -> int:
    """A positive integer below SIZE_LIMIT; 28.0 counts as 28 (JSON does not tell them apart), 28.9, "28" and
    true do not."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not 0 < v < SIZE_LIMIT:
        raise ValueError(v)
    return int(v)


@dataclass(frozen=True)
class ModelFolder:
    """A model folder as every reader downstream sees it: vae.json read and checked once (read_folder), its facts
    typed, and its files, each read and verified (rules a-f) when a reader needs it (read). Nothing downstream
    re-reads vae.json."""

    path: Path
    meta: dict = field(repr=False)  # vae.json as parsed: for vae-info and VAE.meta, never read for a rule again
    format_version: int
    input_shape: tuple[int, int, int]
    latent_dim: int
    loads: tuple[str, ...]  # the files this format version loads beside the precision's (format 2: prior)
    prior: dict | None  # format 2's prior description; None where the format loads no prior (N(0, I))
    binarized: bool  # trained on 0/1 pixels (recipe.binarize): what a score is computed on
    background: str  # what its training composited transparent images onto (recipe.background): encode's too
    _kept: dict | None = field(default=None, repr=False, compare=False)

    @property
    def meta_path(self) -> Path:
        return self.path / "vae.json"

    def has(self, key: str) -> bool:
        """Whether vae.json lists files[key] (not whether the entry is valid: where() and read() say that)."""
        return key in self.meta["files"]

    def where(self, key: str) -> Path:
        """Where files[key] is, refusing an entry without a path, a sha256 and its bytes (a), and a path that is
        not plain (b)."""
        return self._entry(key)[0]

    def _entry(self, key: str) -> tuple[Path, int, str]:
        """files[key] checked (a, b): (its path, its size in bytes, its sha256)."""
        entry = self.meta["files"].get(key)
        size = _byte_count(entry.get("bytes")) if isinstance(entry, dict) else None
        if size is None or not isinstance(entry.get("path"), str) or not isinstance(entry.get("sha256"), str):
            raise ModelFolderError(message("no_entry", meta=self.meta_path, key=key))
        # The path comes from a file we do not control: keep it inside the folder, and the same on every system.
        name = entry["path"]
        if not PLAIN_PATH.fullmatch(name):
            raise ModelFolderError(message("not_plain", meta=self.meta_path, key=key, name=name))
        return self.path / name, size, entry["sha256"]

    def read(self, key: str) -> bytes:
        """The bytes of files[key], in the order docs/format.md numbers: the entry (a), a plain path (b), the file
        opened safely and read at its declared size (c-e, read_inside), its sha256 (f). The bytes returned are the
        bytes that run: sessions.py builds onnxruntime's session from them, never from the path again."""
        if self._kept is not None and key in self._kept:
            return self._kept[key]
        path, size, sha256 = self._entry(key)
        data = read_inside(self.path, path, size)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ModelFolderError(message("sha256", path=path))
        if self._kept is not None:
            self._kept[key] = data
        return data

    def keeping(self) -> "ModelFolder":
        """This folder, keeping the bytes of each file it reads: vae-info verifies every file, then loads each
        precision from the same bytes (each file read and hashed once)."""
        return replace(self, _kept={})

    def files_for(self, precision: str, ort_format: bool = False) -> tuple[str, str]:
        """The keys (encoder, decoder) a precision loads, refusing int8 from a folder without its files (saying
        why where vae.json does: over the bound at export)."""
        enc_key, dec_key = (f"{k}_ort" if ort_format else k for k in PRECISIONS[precision])
        if precision == "int8" and not (self.has(enc_key) and self.has(dec_key)):
            int8 = self.meta.get("int8")
            why = "int8_over_bound" if isinstance(int8, dict) and "method" not in int8 else "int8_missing"
            raise ModelFolderError(message(why, folder=self.path, fp32="precision='fp32'"))
        return enc_key, dec_key


def read_folder(path: str | os.PathLike = RULES["default_folder"]) -> ModelFolder:
    """Read and check vae.json of a model folder, every rule of docs/format.md on it in order: opened like every
    listed file (open_inside), at most 1 MiB and nested at most 32 levels (scanned before the parser runs),
    strict JSON, this format and version, the sizes, a format-2 prior's description."""
    folder = Path(path)
    meta_path = folder / "vae.json"
    if not folder.is_dir() or not meta_path.exists():
        raise ModelFolderError(missing_model_message(folder))
    with open_inside(folder, meta_path) as (fd, st):
        # fstat first, then a read capped at the limit + 1: a file that grew meanwhile is refused all the same
        if st.st_size > META_LIMIT or len(data := _read_up_to(fd, META_LIMIT + 1, meta_path)) > META_LIMIT:
            raise ModelFolderError(message("meta_too_large", path=meta_path))
    if nesting(data) > DEPTH_LIMIT:
        raise ModelFolderError(message("meta_too_deep", path=meta_path, depth=DEPTH_LIMIT))
    try:
        meta = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelFolderError(message("not_json", path=meta_path, reason=f": {one_line(e)}")) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFolderError(message("meta_not_format", path=meta_path, format=FORMAT))
    problem = format_problem(meta, meta_path)
    if problem:
        raise ModelFolderError(problem)
    try:
        model, files = meta["model"], meta["files"]
        c, h, w = (_size(v) for v in model["input_shape"])
        latent = _size(model["latent_dim"])
        if not isinstance(files, dict):
            raise ValueError(files)
    except (KeyError, TypeError, ValueError):
        raise ModelFolderError(message("meta_invalid", path=meta_path)) from None
    version = int(meta["format_version"])
    loads = tuple(RULES["format_versions"][str(version)]["loads"])
    if "prior" in loads and not _prior_ok(meta.get("prior")):
        raise ModelFolderError(message("no_prior", path=meta_path, version=meta["format_version"]))
    recipe = meta.get("recipe")
    return ModelFolder(path=folder, meta=meta, format_version=version, input_shape=(c, h, w), latent_dim=latent,
                       loads=loads, prior=meta["prior"] if "prior" in loads else None,
                       binarized=isinstance(recipe, dict) and recipe.get("binarize") is True,
                       background=recipe_background(meta))


def recipe_background(meta: dict) -> str:
    """The background the model's training composited transparent images onto (vae.json's recipe), else white."""
    recipe = meta.get("recipe")
    return str(recipe.get("background", BACKGROUND)) if isinstance(recipe, dict) else BACKGROUND


def read_meta(path: str | os.PathLike = RULES["default_folder"]) -> dict:
    """vae.json of a model folder, read and checked (read_folder), as a dict."""
    return read_folder(path).meta


def nesting(data: bytes) -> int:
    """How deep JSON text nests arrays and objects, brackets inside strings not counted: a scan that never
    recurses, so that the parser is only handed what it can read without recursing deeper than DEPTH_LIMIT."""
    depth = deepest = 0
    for token in JSON_TOKEN.finditer(data):
        bracket = token[0][:1]
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in (b"]", b"}"):
            depth -= 1
    return deepest


def _prior_ok(prior) -> bool:
    """A format-2 folder's "prior": its name and the noise inputs of prior.onnx, eps at least."""
    if not isinstance(prior, dict) or not isinstance(prior.get("name"), str):
        return False
    sample = prior.get("sample")
    noise = sample.get("inputs") if isinstance(sample, dict) else None
    return isinstance(noise, dict) and isinstance(noise.get("eps"), dict) and set(noise) <= {"eps", "u"}


def format_problem(meta: dict, path: str | os.PathLike = "vae.json") -> str | None:
    """Why this runtime cannot read the folder's format version (naming the vae-edge it needs), or None."""
    version = meta.get("format_version")
    if not isinstance(version, bool) and version in FORMAT_VERSIONS:
        return None
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSIONS[-1]:
        need = meta.get("min_vae_edge")
        newer = dict(path=path, version=version, newest=FORMAT_VERSIONS[-1])
        return (message("version_newer_needs", **newer, need=need, how=": pip install -U vae-edge") if need
                else message("version_newer", **newer))
    return message("version_other", path=path, version=repr(version), versions=", ".join(map(str, FORMAT_VERSIONS)))


def _byte_count(v) -> int | None:
    """files[*].bytes: an integer from 0 to 2^31 - 1 (1234.0 counts, as in _size); None for anything else."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not 0 <= v < SIZE_LIMIT:
        return None
    return int(v)


@contextmanager
def open_inside(folder: Path, path: Path) -> Iterator[tuple[int, os.stat_result]]:
    """The file at path opened safely, as (descriptor, fstat): its real path, every symlink resolved, inside the
    folder's real path (c); opened read-only without blocking, then a regular file by fstat, before any read (d)."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    if os.path.commonpath([real, root]) != root:
        raise ModelFolderError(message("outside", path=path))
    try:
        fd = os.open(real, OPEN_FLAGS)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a socket, or a device with nothing behind it: opening it cannot succeed
            raise ModelFolderError(message("not_regular", path=path)) from None
        raise ModelFolderError(f"cannot read {path}: {one_line(e)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelFolderError(message("not_regular", path=path))
        yield fd, st
    finally:
        os.close(fd)


def read_inside(folder: Path, path: Path, size: int) -> bytes:
    """Exactly size bytes of the file at path, opened safely (c, d): fstat must say size before any read (d),
    then exactly size bytes are read from that descriptor (e), a file that shrank or grew meanwhile refused."""
    with open_inside(folder, path) as (fd, st):
        if st.st_size != size:
            raise ModelFolderError(message("wrong_size", path=path, size=st.st_size, bytes=size))
        data = _read_up_to(fd, size, path)
        if len(data) < size:  # it shrank since fstat
            raise ModelFolderError(message("wrong_size", path=path, size=len(data), bytes=size))
        if _read_up_to(fd, 1, path):  # it grew since fstat: at least one byte more
            raise ModelFolderError(message("wrong_size", path=path, size=max(os.fstat(fd).st_size, size + 1),
                                           bytes=size))
        return data


def _read_up_to(fd: int, n: int, path: Path) -> bytes:
    """Up to n bytes from fd: fewer only at the end of the file. One read gives a regular file's bytes whole,
    with no copy; the loop is for a system that returns fewer (Linux: at most 2 GiB per read)."""
    try:
        data = os.read(fd, n)
        if len(data) == n or not data:
            return data
        parts = [data]
        while n > (got := sum(map(len, parts))) and (more := os.read(fd, n - got)):
            parts.append(more)
        return b"".join(parts)
    except OSError as e:
        raise ModelFolderError(f"cannot read {path}: {one_line(e)}") from None


def verify_files(folder: str | os.PathLike | ModelFolder = RULES["default_folder"]
                 ) -> list[tuple[str, str, str | None]]:
    """Check every file listed in vae.json: (key, path, None if it is intact else the reason)."""
    folder = folder if isinstance(folder, ModelFolder) else read_folder(folder)
    out: list[tuple[str, str, str | None]] = []
    for key, entry in folder.meta["files"].items():
        has_path = isinstance(entry, dict) and isinstance(entry.get("path"), str)
        where = str(folder.path / entry["path"]) if has_path else key
        try:
            folder.read(key)
            out.append((key, where, None))
        except ModelFolderError as e:
            out.append((key, where, str(e)))
    return out

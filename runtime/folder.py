"""The model folder (docs/format.md): vae.json, read and checked, and the files it lists, each checked against
its sha256. Standard library only; tests/conformance/ holds the cases every reader (Python, JavaScript, C) must
accept or refuse alike."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .errors import ModelFolderError, missing_model_message, one_line

FORMAT = "vae-edge-onnx"
FORMAT_VERSION = 1  # what a Gaussian-prior export writes
FORMAT_VERSIONS = (1, 2)  # what this runtime reads: 2 adds prior.onnx and score.onnx (a learned prior)
PRECISIONS = {"fp32": ("encoder", "decoder"), "int8": ("encoder_int8", "decoder_int8")}
# A path in files[*].path: parts of letters, digits, '.', '_' and '-' (none starting with '.') joined by '/'.
PLAIN_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")
SIZE_LIMIT = 2**31  # input_shape and latent_dim: positive integers below this


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _size(v) -> int:
    """A positive integer below SIZE_LIMIT; 28.0 counts as 28 (JSON does not tell them apart), 28.9, "28" and
    true do not."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not 0 < v < SIZE_LIMIT:
        raise ValueError(v)
    return int(v)


def read_meta(path: str | os.PathLike = "vae-onnx") -> dict:
    """Read and check vae.json of a model folder: strict JSON, this format and version, the model's sizes."""
    folder = Path(path)
    meta_path = folder / "vae.json"
    if not folder.is_dir() or not meta_path.is_file():
        raise ModelFolderError(missing_model_message(folder))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelFolderError(f"{meta_path} is not readable JSON (corrupt?): {one_line(e)}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFolderError(f"{meta_path} is not a vae-edge ONNX export (format should be {FORMAT!r})")
    problem = format_problem(meta)
    if problem:
        raise ModelFolderError(f"{meta_path} {problem}")
    try:
        model, files = meta["model"], meta["files"]
        shape = [_size(v) for v in model["input_shape"]]
        _size(model["latent_dim"])
        if len(shape) != 3 or not isinstance(files, dict):
            raise ValueError(shape)
    except (KeyError, TypeError, ValueError):
        raise ModelFolderError(f"{meta_path} lacks valid model.input_shape, model.latent_dim or files") from None
    if meta["format_version"] == 2 and not _prior_ok(meta.get("prior")):
        raise ModelFolderError(f"{meta_path} has format_version 2 but no valid prior (name, and sample.inputs "
                               f"naming eps) (docs/priors.md)")
    return meta


def _prior_ok(prior) -> bool:
    """A format-2 folder's "prior": its name and the noise inputs of prior.onnx, eps at least."""
    if not isinstance(prior, dict) or not isinstance(prior.get("name"), str):
        return False
    sample = prior.get("sample")
    noise = sample.get("inputs") if isinstance(sample, dict) else None
    return isinstance(noise, dict) and isinstance(noise.get("eps"), dict) and set(noise) <= {"eps", "u"}


def format_problem(meta: dict) -> str | None:
    """Why this runtime cannot read the folder's format version (naming the vae-edge it needs), or None."""
    version = meta.get("format_version")
    if not isinstance(version, bool) and version in FORMAT_VERSIONS:
        return None
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSIONS[-1]:
        need = meta.get("min_vae_edge")
        return (f"has format_version {version}, newer than this vae-edge reads (up to {FORMAT_VERSIONS[-1]}); "
                + (f"it needs vae-edge >= {need}: pip install -U vae-edge" if need else "upgrade vae-edge"))
    return f"has format_version {version!r}; this vae-edge reads versions {', '.join(map(str, FORMAT_VERSIONS))}"


def input_shape(meta: dict) -> tuple[int, int, int]:
    c, h, w = (_size(v) for v in meta["model"]["input_shape"])
    return c, h, w


def latent_dim(meta: dict) -> int:
    return _size(meta["model"]["latent_dim"])


def file_path(folder: Path, meta: dict, key: str) -> Path:
    """Where files[key] is, refusing an entry without a path and sha256, and a path that is not plain."""
    entry = meta["files"].get(key)
    if (not isinstance(entry, dict) or not isinstance(entry.get("path"), str)
            or not isinstance(entry.get("sha256"), str)):
        raise ModelFolderError(f"{folder / 'vae.json'} lists no {key} file")
    # The path comes from a file we do not control: keep it inside the folder, and the same on every system.
    name = entry["path"]
    if not PLAIN_PATH.fullmatch(name):
        raise ModelFolderError(f"{folder / 'vae.json'}: {key} path {name!r} is not a plain path inside the model "
                               f"folder (parts of letters, digits, . _ - joined by /)")
    return folder / name


def check_file(folder: Path, meta: dict, key: str) -> bytes:
    """Return the bytes of files[key], refusing a missing file or one whose sha256 differs from vae.json."""
    path = file_path(folder, meta, key)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelFolderError(f"cannot read {path}: {one_line(e)}") from None
    if hashlib.sha256(data).hexdigest() != meta["files"][key]["sha256"]:
        raise ModelFolderError(f"{path} does not match the sha256 in vae.json (tampered or corrupt); "
                               f"refusing to load it")
    return data


def verify_files(path: str | os.PathLike = "vae-onnx") -> list[tuple[str, str, str | None]]:
    """Check every file listed in vae.json: (key, path, None if it is intact else the reason)."""
    folder = Path(path)
    meta = read_meta(folder)
    out: list[tuple[str, str, str | None]] = []
    for key, entry in meta["files"].items():
        where = str(folder / entry["path"]) if isinstance(entry, dict) and isinstance(entry.get("path"), str) else key
        try:
            check_file(folder, meta, key)
            out.append((key, where, None))
        except ModelFolderError as e:
            out.append((key, where, str(e)))
    return out

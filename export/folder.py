"""The export folder: metadata stamped into each file, vae.json with each file's sha256, written atomically."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import onnx

from vae_edge.runtime.folder import FORMAT, FORMAT_VERSION  # noqa: F401 (the format the export writes)

from .errors import ExportError


def versions() -> dict:
    """The versions that made the files, for vae.json."""
    import onnxruntime as ort
    import torch

    from .. import __version__

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
            "vae_edge": __version__}


def with_metadata(proto: onnx.ModelProto, meta: dict, role: str) -> bytes:
    """Stamp one metadata_props entry per key of vae.json (json values) plus the role; return bytes."""
    proto = copy.deepcopy(proto)
    del proto.metadata_props[:]
    for k, v in {**meta, "role": role}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, (v if k == "role" else json.dumps(v, sort_keys=True))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def file_entries(blobs: dict[str, tuple[str, bytes]]) -> dict:
    """vae.json's "files": role -> {path, sha256, bytes}."""
    return {role: {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for role, (name, data) in blobs.items()}


def check_target(out: Path, force: bool) -> None:
    """Refuse to overwrite without force, and never replace a folder that is not an export."""
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise ExportError(f"{out} already exists; pass --force to replace it")
    if not out.is_dir() or out.is_symlink():
        raise ExportError(f"{out} exists and is not a folder; refusing to replace it")
    # --force must never wipe an unrelated folder (say --out . or --out ~)
    if any(out.iterdir()) and not (out / "vae.json").is_file():
        raise ExportError(f"{out} is not a vae-edge export (no vae.json); refusing to replace it")


def write_folder(out: Path, blobs: dict[str, tuple[str, bytes]], info: dict, force: bool) -> None:
    """Write each (name, bytes) and vae.json into a temporary folder beside `out`, then rename it into place."""
    try:
        text = json.dumps(info, indent=2, allow_nan=False) + "\n"  # strict JSON, as every reader parses it
    except ValueError:
        raise ExportError("vae.json would hold NaN or infinity (a metric or a check that is not finite); "
                          "nothing written") from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the export is an ordinary folder
        for name, data in blobs.values():
            _write(tmp / name, data)
        _write(tmp / "vae.json", text.encode())
        _move_into_place(tmp, out, force)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished folder into place; with force, swap the old one aside first, then delete it."""
    check_target(out, force)
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    try:
        os.rename(out, old / out.name)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old / out.name, out)  # put the earlier export back
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if old.exists() and not any(old.iterdir()):  # never delete the earlier export on failure
            old.rmdir()

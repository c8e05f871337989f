"""The export folder: metadata stamped into each file, vae.json with each file's sha256, written into a folder
beside the target and swapped in, so that a kill leaves the earlier export or the new one."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path

import onnx

from vae_edge.runtime.folder import FORMAT  # noqa: F401 (the format the export writes)
from vae_edge.runtime.outputs import new_folder, not_a_file, recover_folder, swap_in, write_new

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
    if not os.path.lexists(out):
        return
    if not out.is_dir() or out.is_symlink():
        what = not_a_file(out) or "a regular file"
        raise ExportError(f"{out} exists and is {what}, not a folder; refusing to replace it")
    if not force:
        raise ExportError(f"{out} already exists; pass --force to replace it")
    # --force must never wipe an unrelated folder (say --out . or --out ~)
    if any(out.iterdir()) and not (out / "vae.json").is_file():
        raise ExportError(f"{out} is not a vae-edge export (no vae.json); refusing to replace it")


TAG = "vae-export"  # beside OUT: .OUT.vae-export.new and the like (runtime/outputs.py: the folder swap)


def recover(out: Path) -> None:
    """Finish or undo what a killed export left beside out (runtime/outputs.recover_folder): where out is missing,
    the finished new folder (else the earlier export) goes back in; then every leftover is removed."""
    try:
        recover_folder(out, TAG, "vae.json")
    except OSError as e:
        raise ExportError(f"cannot recover what an earlier export left beside {out}: {e.strerror or e}") from None


def write_folder(out: Path, blobs: dict[str, tuple[str, bytes]], info: dict, force: bool) -> None:
    """Write each (name, bytes) and vae.json into a temporary folder beside `out`, then swap it into place: a kill at
    any moment leaves the earlier export or the new one at `out` (or, where folders cannot be swapped, beside it for
    recover() to put back)."""
    try:
        text = json.dumps(info, indent=2, allow_nan=False) + "\n"  # strict JSON, as every reader parses it
    except ValueError:
        raise ExportError("vae.json would hold NaN or infinity (a metric or a check that is not finite); "
                          "nothing written") from None
    try:
        tmp = new_folder(out, TAG)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    try:
        for name, data in blobs.values():
            write_new(tmp / name, data)
        write_new(tmp / "vae.json", text.encode())
        swap_in(tmp, out, TAG, check=lambda: check_target(out, force))
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

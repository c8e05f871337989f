"""The export folder: metadata stamped into each file, vae.json with each file's sha256, written into a folder
beside the target and swapped in, so that a kill leaves the earlier export or the new one."""
from __future__ import annotations

import copy
import ctypes
import errno
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import onnx

from vae_edge.runtime.folder import FORMAT  # noqa: F401 (the format the export writes)
from vae_edge.runtime.outputs import fsync_folder, not_a_file, write_new

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


# Beside OUT an export names its work, so that the next run knows what a killed one left (recover):
#   .OUT.vae-export.XXXXXXXX.tmp   the folder being written (incomplete)
#   .OUT.vae-export.new            the finished folder, about to go in
#   .OUT.vae-export.old            the earlier export, moved aside under --force (where folders cannot be swapped)
def _beside(out: Path, what: str) -> Path:
    return out.parent / f".{out.name}.vae-export.{what}"


def recover(out: Path) -> None:
    """Finish or undo what a killed export left beside out: where out is missing, the finished new folder (else the
    earlier export) goes back in; then every leftover is removed. One export at a time may write to a folder."""
    new, old = _beside(out, "new"), _beside(out, "old")
    try:
        if not os.path.lexists(out):
            for spare in (new, old):
                if _is_folder(spare) and (spare / "vae.json").is_file():
                    os.rename(spare, out)
                    fsync_folder(out.parent)
                    break
        for leftover in (new, old, *out.parent.glob(glob.escape(f".{out.name}.vae-export.") + "*.tmp")):
            if _is_folder(leftover):
                shutil.rmtree(leftover)
    except OSError as e:
        raise ExportError(f"cannot recover what an earlier export left beside {out}: {e.strerror or e}") from None


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


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
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.vae-export.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the export is an ordinary folder
        for name, data in blobs.values():
            write_new(tmp / name, data)
        write_new(tmp / "vae.json", text.encode())
        fsync_folder(tmp)
        _move_into_place(tmp, out, force)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished folder into place; with force, swap it with the earlier export, which is then deleted."""
    check_target(out, force)
    if not os.path.lexists(out):
        os.rename(tmp, out)
        fsync_folder(out.parent)
        return
    new, old = _beside(out, "new"), _beside(out, "old")
    os.rename(tmp, new)
    try:
        fsync_folder(out.parent)
        swapped = _exchange(new, out)  # one step: out is then the new export, and `new` the earlier one
        if not swapped:
            os.rename(out, old)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if swapped:
        fsync_folder(out.parent)
        shutil.rmtree(new)
        return
    try:  # a kill from here until the next rename leaves out missing: recover() puts `new` in
        os.rename(new, out)
    except BaseException:
        os.rename(old, out)  # put the earlier export back
        shutil.rmtree(new, ignore_errors=True)
        raise
    fsync_folder(out.parent)
    shutil.rmtree(old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux's renameat2 with RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without it (musl, glibc < 2.28)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a kernel or file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))

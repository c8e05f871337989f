"""Outputs: the one atomic write (a temporary file beside the target, fsynced, renamed over it, the folder fsynced),
its twin for a folder published as a whole (written beside it and swapped in), and the checks on an output path the
user names, made before any work.

Every file the commands publish goes through atomic_files: vae-sample's grids and arrays, vae-train's checkpoints,
metrics and pictures, vae-eval's JSON. Every folder goes through new_folder and swap_in: vae-export's model folder,
the emoji set's image folder (train/emoji.py, make data-emoji).
"""
from __future__ import annotations

import ctypes
import errno
import glob
import os
import re
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import RuntimeInputError

STDOUT = "-"  # where a command writes .npy, this name means standard output

NOT_FILES = [(stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")]


def not_a_file(path: str | os.PathLike) -> str | None:
    """What is at path when it is something other than a regular file ("a FIFO", ...); None when it is one or absent."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in NOT_FILES if test(mode)), "not a regular file")


def check_output(path: str | os.PathLike, option: str) -> None:
    """Refuse, in one line, a user-named output that exists as anything but a regular file, or whose folder is
    missing: a write replaces only regular files, and never makes folders the user did not ask for."""
    what = not_a_file(path)
    if what:
        raise RuntimeInputError(f"{option} {path} is {what}, not a regular file; refusing to replace it")
    folder = Path(path).parent
    if not folder.is_dir():
        raise RuntimeInputError(f"{option} {path}: there is no folder {folder}; make it first")


def check_out_dir(path: str | os.PathLike, option: str, force: bool) -> None:
    """Refuse, in one line, an output folder that exists as anything but a folder (a symlink to one included), one that
    holds files unless `force`, or one whose parent folder is missing."""
    what = not_a_file(path) or "a file"
    if os.path.lexists(path) and what != "a folder":
        raise RuntimeInputError(f"{option} {path} is {what}, not a folder; refusing to write into it")
    if os.path.lexists(path) and not force and _holds_files(path):
        raise RuntimeInputError(f"{option} {path} exists and is not empty; --force writes into it, replacing the "
                                f"files of the same names")
    if not Path(path).parent.is_dir():
        raise RuntimeInputError(f"{option} {path}: there is no folder {Path(path).parent}; make it first")


def _holds_files(folder: str | os.PathLike) -> bool:
    with os.scandir(Path(folder)) as entries:
        return any(True for _ in entries)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make the renames in folder durable; a no-op where folders cannot be opened (Windows)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:  # a file system that cannot sync a folder
            raise
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes) -> None:
    """Create path (it must not exist) with data, fsynced: a file inside a folder that is published as a whole."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def remove_leftovers(path: Path) -> None:
    """Remove the temporary files that a killed write to path left beside it (.NAME.XXXXXXXXXXXX.tmp). One process
    at a time writes to a path, so none of them is in use; a write that raced this one would fail, not mix files."""
    stem = f".{path.name}."
    for p in path.parent.glob(glob.escape(stem) + "?" * 12 + ".tmp"):
        if re.fullmatch(r"[0-9a-f]{12}", p.name[len(stem):-4]) and not_a_file(p) is None:
            try:
                p.unlink()
            except OSError:  # not ours to remove after all (another owner, a read-only folder): leave it
                pass


@contextmanager
def atomic_files(*paths: str | os.PathLike) -> Iterator[list[BinaryIO]]:
    """One temporary file beside each path, open for writing; when the block succeeds each is fsynced and renamed
    over its path, then the folders are fsynced. On any exception, KeyboardInterrupt included, the temporary files
    are removed and the paths are left as they were. A failed write raises an OSError that names the path.

    With several paths a kill never leaves a mix of old and new files: the earlier files at all but the first path
    are removed before the first is renamed into place, so a kill between the renames leaves the first path alone.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    files: list[BinaryIO] = []
    try:
        for path in targets:
            what = not_a_file(path)
            if what:
                raise RuntimeInputError(f"{path} is {what}, not a regular file; refusing to replace it")
            remove_leftovers(path)
            tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
            # os.open with mode 0o666 honours the umask (mkstemp would leave the result private, 0o600).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            temps.append(tmp)
            files.append(os.fdopen(fd, "wb"))
        yield files
        for f in files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for path in targets[1:]:
            path.unlink(missing_ok=True)
        for tmp, path in zip(temps, targets):
            os.replace(tmp, path)
        for folder in dict.fromkeys(p.parent for p in targets):
            fsync_folder(folder)
    except BaseException as e:
        for f in files:
            try:
                f.close()
            except OSError:  # its buffered bytes could not be written: the file goes anyway
                pass
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and (e.filename is None or Path(e.filename) in temps):
            raise OSError(e.errno, e.strerror, ", ".join(map(str, targets))) from None
        raise


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """atomic_files for one path: a temporary file that replaces path only if the block succeeds."""
    with atomic_files(path) as (f,):
        yield f


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


# A folder published as a whole is written into a fresh folder beside OUT and swapped in, so that a kill at any moment
# leaves the earlier folder or the new one. Beside OUT its writer (TAG: vae-export, emoji) names its work, so that the
# next run knows what a killed one left (recover_folder):
#   .OUT.TAG.XXXXXXXX.tmp   the folder being written (incomplete)
#   .OUT.TAG.new            the finished folder, about to go in
#   .OUT.TAG.old            the earlier folder, moved aside (where folders cannot be swapped in one step)
def beside(out: Path, tag: str, what: str) -> Path:
    return out.parent / f".{out.name}.{tag}.{what}"


def new_folder(out: Path, tag: str) -> Path:
    """A fresh, empty folder beside out to write the new one into, with the permissions the umask gives a folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{tag}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the output is an ordinary folder
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def swap_in(tmp: Path, out: Path, tag: str, check=lambda: None) -> None:
    """The finished folder tmp becomes out; what out held is deleted only once the new one is in place. `check()`
    runs just before (it raises to refuse). Raises OSError with out as it was."""
    fsync_folder(tmp)
    check()
    if not os.path.lexists(out):
        os.rename(tmp, out)
        fsync_folder(out.parent)
        return
    new, old = beside(out, tag, "new"), beside(out, tag, "old")
    os.rename(tmp, new)
    try:
        fsync_folder(out.parent)
        swapped = exchange(new, out)  # one step: out is then the new folder, and `new` the earlier one
        if not swapped:
            os.rename(out, old)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if swapped:
        fsync_folder(out.parent)
        shutil.rmtree(new)
        return
    try:  # a kill from here until the next rename leaves out missing: recover_folder puts `new` in
        os.rename(new, out)
    except BaseException:
        os.rename(old, out)  # put the earlier folder back
        shutil.rmtree(new, ignore_errors=True)
        raise
    fsync_folder(out.parent)
    shutil.rmtree(old)


def recover_folder(out: Path, tag: str, complete: str) -> None:
    """Finish or undo what a killed swap left beside out: where out is missing, the finished new folder (else the
    earlier one) goes back in, a folder counting where it holds the file `complete`; then every leftover is removed.
    One writer at a time may write to a folder. Raises OSError."""
    new, old = beside(out, tag, "new"), beside(out, tag, "old")
    if not os.path.lexists(out):
        for spare in (new, old):
            if _is_folder(spare) and (spare / complete).is_file():
                os.rename(spare, out)
                fsync_folder(out.parent)
                break
    for leftover in (new, old, *out.parent.glob(glob.escape(f".{out.name}.{tag}.") + "*.tmp")):
        if _is_folder(leftover):
            shutil.rmtree(leftover)


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux's renameat2 with RENAME_EXCHANGE); False where the system cannot. Written by
    hand: no kept library (nor the standard library) exposes renameat2's exchange."""
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

"""The runtime's two errors, each one line: bad input from the caller, and a model folder that cannot be used."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

from .rules import message


class RuntimeInputError(ValueError):
    """Bad input from the caller (shape, dtype, NaN/inf, n <= 0, ...); the message is one line."""


class ModelFolderError(ValueError):
    """A model folder that is missing, corrupt, tampered with or inconsistent; the message is one line."""


def one_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), or its type's name."""
    s = str(e).strip().splitlines()
    return s[0][:300] if s else type(e).__name__


def os_error(e: OSError) -> str:
    """An OSError in one line that names its file: "PATH: reason"."""
    return f"{e.filename}: {e.strerror}" if e.filename and e.strerror else one_line(e)


def missing_model_message(folder: Path) -> str:
    return message("missing", folder=folder)


def fail(text: str, code: int = 2) -> NoReturn:
    """A command's end on bad input: `error: TEXT` on stderr, in one write, and exit status `code`."""
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    raise SystemExit(code)

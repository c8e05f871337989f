"""The models that ship inside the package (runtime/models/NAME/, the layout vae-export writes), and which model a
command or VAE.load() uses when none is named: --model if given, else ./vae-onnx if it exists, else the bundled
default. Nothing is ever downloaded: a bundled model is package data, checked by sha256 like any folder."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelFolderError, missing_model_message
from .rules import RULES

MODELS = Path(__file__).resolve().parent / "models"
DEFAULT = "fashion-mnist"
LOCAL = Path(RULES["default_folder"])  # what `vae-export` writes by default, in the current folder


def names() -> list[str]:
    """The bundled models' names, the default first."""
    found = sorted(p.name for p in MODELS.iterdir() if (p / "vae.json").is_file()) if MODELS.is_dir() else []
    return sorted(found, key=lambda n: n != DEFAULT)


def path(name: str) -> Path:
    return MODELS / name


def resolve(model: str | os.PathLike | None) -> tuple[Path, str | None]:
    """(folder, bundled name or None) for a --model value: a folder, a bundled model's name, or None for the default.

    A ./vae-onnx that exists is used even if it is broken: loading it then says what is wrong, rather than
    silently sampling from another model.
    """
    if model is None:
        if LOCAL.exists():
            return LOCAL, None
        if DEFAULT in names():
            return path(DEFAULT), DEFAULT
        raise ModelFolderError(missing_model_message(LOCAL))
    folder = Path(model)
    if folder.exists():
        return folder, None
    text = str(model)
    if os.sep not in text and "/" not in text and not folder.suffix:  # a bare name: a bundled model or a typo
        if text in names():
            return path(text), text
        available = ", ".join(names()) or "none in this installation"
        raise ModelFolderError(f"no model folder or bundled model named {text!r}; bundled models: {available}")
    raise ModelFolderError(missing_model_message(folder))

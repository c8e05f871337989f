"""The rules every reader of a model folder shares (docs/format.md), read from their one source,
format_rules.json beside this file: versions, precisions, the plain path, limits, which onnxruntime reads which
ONNX file, and the messages' templates (JavaScript and C get copies written from it: tests/test_rules.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

RULES = json.loads((Path(__file__).resolve().parent / "format_rules.json").read_text(encoding="utf-8"))
LIMITS = RULES["limits"]
_PART = "[{first}][{rest}]*".format(**RULES["path_part"])
# A path in files[*].path: parts of letters, digits, '.', '_' and '-' (none starting with '.') joined by '/'.
PLAIN_PATH = re.compile(f"{_PART}({re.escape(RULES['path_part']['separator'])}{_PART})*")


def message(name: str, /, **values) -> str:
    """The one-line message `name`, its placeholders filled; text from a folder (a key, an operator domain) may hold
    any character, so what is not printable is escaped, and the message stays one line."""
    return RULES["messages"][name].format(**{k: _printable(v) for k, v in values.items()})


def _printable(value):
    if not isinstance(value, (str, Path)):
        return value
    text = str(value)
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)

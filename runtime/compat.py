"""Which onnxruntime reads which ONNX file: one table, used by vae-export (to record what its files need) and by
the runtime (to refuse, in words, a file the installed onnxruntime cannot read).

Measured by loading files of each IR version and opset in each release (tests/test_compat.py proves the floor
and the newest): a release refuses a newer IR version or a newer ai.onnx opset than its row says. The table is
format_rules.json's onnxruntime_reads, which every reader holds files to (docs/format.md, rule 4h).
Standard library only: the runtime imports this before onnxruntime is asked to read anything.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .rules import RULES, message


def parse_version(text: str) -> tuple[int, int]:
    """'1.17.3' or '1.20.0.dev20240101' -> (1, 17); (0, 0) for what is not a version."""
    m = re.match(r"(\d+)\.(\d+)", str(text))
    return (int(m[1]), int(m[2])) if m else (0, 0)


def show_release(version: tuple[int, int]) -> str:
    """(1, 17) -> "1.17", an onnxruntime release as messages name it."""
    return f"{version[0]}.{version[1]}"


# (onnxruntime release, newest IR version it reads, newest ai.onnx opset it reads), oldest first.
READS = tuple((parse_version(release), ir, opset) for release, ir, opset in RULES["onnxruntime_reads"])
OLDEST = READS[0][0]  # the oldest release vae-edge supports (pyproject.toml's floor)


def reads(onnxruntime_version: str) -> tuple[float, float]:
    """(newest IR version, newest opset) that this onnxruntime release reads; (0, 0) below the table. Releases
    after the table's last row are not limited here: onnxruntime itself then says what it cannot read."""
    v = parse_version(onnxruntime_version)
    if v > READS[-1][0]:
        return float("inf"), float("inf")
    row = (0, 0)
    for release, ir, opset in READS:
        if release <= v:
            row = (ir, opset)
    return row


def min_onnxruntime(ir_version: int, opset: int) -> tuple[int, int] | None:
    """The oldest supported onnxruntime release that reads a file of this IR version and opset; None if none does."""
    for release, ir, top in READS:
        if ir_version <= ir and opset <= top:
            return release
    return None


def newest_opset_for(onnxruntime_version: str) -> int:
    """The newest opset whose files (at their lowest IR version) this onnxruntime reads: what to re-export with."""
    return int(min(reads(onnxruntime_version)[1], READS[-1][2]))


def problem(ir_version: int, opset: int, installed: str, path: object = "the file") -> str | None:
    """None when the table says `installed` reads the file; else the one-line reason, naming path, and the way
    out (rule 4h: every reader checks the same)."""
    can_ir, can_opset = reads(installed)
    if ir_version <= can_ir and opset <= can_opset:
        return None
    need = min_onnxruntime(ir_version, opset)
    needs = (message("needs_release", release=show_release(need)) if need
             else message("needs_newer", release=show_release(READS[-1][0])))
    return _too_new(path, ir_version, opset, installed, needs)


def refused(ir_version: int, opset: int, installed: str, path: object) -> str | None:
    """Why an onnxruntime newer than the table refused a file, where the file is newer than any release in the
    table reads (rule 4h's words, as problem's); None for a file the table knows: then it is damage."""
    if min_onnxruntime(ir_version, opset) is not None:
        return None
    return _too_new(path, ir_version, opset, installed, message("needs_newer", release=installed))


def _too_new(path: object, ir_version: int, opset: int, installed: str, needs: str) -> str:
    fix = (message("fix_opset", opset=newest_opset_for(installed)) if parse_version(installed) >= OLDEST
           else message("fix_upgrade", release=show_release(OLDEST)))
    return message("onnx_too_new", path=path, ir_version=ir_version, opset=opset, needs=needs, installed=installed,
                   fix=fix)


# -- reading ir_version and the opset from an .onnx file, without the onnx package ---------------------------
# A ModelProto is a protobuf message: ir_version is field 1 (varint), opset_import field 8 (repeated
# OperatorSetIdProto: domain = field 1, string; version = field 2, varint). Everything else is skipped.

def _varint(data: bytes | memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(data: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message's top-level fields; value is an int or a bytes slice."""
    i = 0
    value: Any
    while i < len(data):
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 2:
            n, i = _varint(data, i)
            value, i = data[i:i + n], i + n
        elif wire == 5:
            value, i = None, i + 4
        else:
            raise ValueError(f"unknown protobuf wire type {wire}")
        if i > len(data):
            raise ValueError("truncated message")
        yield field, wire, value


def onnx_versions(data: bytes) -> tuple[int, int]:
    """(IR version, ai.onnx opset) of a serialized ONNX model; ValueError if it is not one."""
    ir, opset = None, None
    for field, wire, value in _fields(memoryview(data)):
        if field == 1 and wire == 0:
            ir = value
        elif field == 8 and wire == 2:
            domain, version = "", None
            for f, w, v in _fields(value):
                if f == 1 and w == 2:
                    domain = bytes(v).decode("utf-8", "replace")
                elif f == 2 and w == 0:
                    version = v
            if domain in ("", "ai.onnx") and version is not None:
                opset = version
    if ir is None or opset is None:
        raise ValueError("no ir_version or ai.onnx opset_import")
    return ir, opset


# -- reading a graph's inputs, outputs and metadata, for checking a file before onnxruntime loads it -----------
# ModelProto: graph = field 7, metadata_props = 14 (key = 1, value = 2). GraphProto: initializer = 5 (TensorProto,
# name = 8), input = 11, output = 12 (ValueInfoProto: name = 1, type = 2 -> TypeProto.tensor_type = 1 ->
# shape = 2 -> dim = 1 -> dim_value = 1 (int) or dim_param = 2 (a name)). Initializers listed as inputs (files
# older than IR 4) are not inputs, as onnxruntime's get_inputs() has it.

def _text(v) -> str:
    return bytes(v).decode("utf-8", "replace")


def _messages(data, *path: int):
    """The sub-messages reached by following field numbers `path` down from message data."""
    if not path:
        yield data
        return
    for field, wire, value in _fields(data):
        if field == path[0] and wire == 2:
            yield from _messages(value, *path[1:])


def _value_info(data) -> tuple[str, list]:
    """(name, dims) of a ValueInfoProto: an int per static dim, the name of a symbolic one, None for unknown."""
    name = next((_text(v) for f, w, v in _fields(data) if (f, w) == (1, 2)), "")
    dims = []
    for dim in _messages(data, 2, 1, 2, 1):  # type -> tensor_type -> shape -> dim
        d = None
        for f, w, v in _fields(dim):
            d = v if (f, w) == (1, 0) else _text(v) if (f, w) == (2, 2) else d
        dims.append(d)
    return name, dims


def onnx_signature(data: bytes) -> tuple[list, list, dict]:
    """([(name, dims)] of the graph's inputs, the same of its outputs, its metadata_props) from a serialized
    ONNX model; ValueError if it is not one."""
    model = memoryview(data)
    graph = next(_messages(model, 7), None)
    if graph is None:
        raise ValueError("no graph")
    meta = {}
    for entry in _messages(model, 14):
        kv = {f: _text(v) for f, w, v in _fields(entry) if w == 2}
        meta[kv.get(1, "")] = kv.get(2, "")
    initializers = {_text(v) for t in _messages(graph, 5) for f, w, v in _fields(t) if (f, w) == (8, 2)}
    inputs = [i for i in map(_value_info, _messages(graph, 11)) if i[0] not in initializers]
    return inputs, [_value_info(o) for o in _messages(graph, 12)], meta

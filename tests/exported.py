"""torch.onnx.export's graphs, kept between test runs in .cache/exported/ (as tests/trained.py keeps training runs).

The suite exports about seventy models, and in each export most of the time goes to torch.onnx.export (dynamo):
a second a graph once warm, several in a fresh process. What it returns is a function of the module (its class,
attributes and weights, all in torch.save's bytes), the example inputs, the options, the code of vae_edge and the
versions of torch, onnx, onnxscript and onnxruntime. The file's name is a hash of all of those; a change to any of
them (a line of vae_edge, a weight, an opset) exports again. Everything after the exporter (the opset conversion,
the checks, parity, int8, the folder) runs on every export.

The tests that are about the exporter itself (that two exports give the same bytes) carry the mark fresh_graphs,
which turns the cache off for them. Commands that the tests start (vae-export, vae-train) export as users do.
"""
from __future__ import annotations

import hashlib
import io
import os

import onnx
import onnxruntime
import onnxscript
import torch

from conftest import REPO
from trained import keep, source_digest

CACHE = REPO / ".cache" / "exported"
KEEP = 400  # graphs kept, the most recently used (tens of KB to a few MB each)
fresh = False  # True while a test marked fresh_graphs runs (conftest.py)


class Kept:
    """What the callers read of torch.onnx.export's ONNXProgram: its model_proto."""

    def __init__(self, model_proto: onnx.ModelProto):
        self.model_proto = model_proto


def graph_key(module, args, kwargs: dict) -> str:
    h = hashlib.sha256()
    for obj in (module, args):
        buf = io.BytesIO()
        torch.save(obj, buf)  # the class by name, every attribute and weight; the same bytes in every process
        h.update(buf.getvalue())
    h.update(repr(sorted(kwargs.items())).encode())  # names, dynamic shapes (Dim('batch', min=0)), opset
    h.update(source_digest().encode())
    h.update(f"{torch.__version__} {onnx.__version__} {onnxscript.__version__} {onnxruntime.__version__}".encode())
    return h.hexdigest()


def install() -> None:
    """Wrap torch.onnx.export (once a process): dynamo exports are read from the cache when their key matches."""
    export = torch.onnx.export
    if getattr(export, "kept", False):
        return

    def cached_export(module, args=(), *rest, **kwargs):
        if rest or not kwargs.get("dynamo") or fresh:
            return export(module, args, *rest, **kwargs)
        try:
            kept = CACHE / f"{graph_key(module, args, kwargs)}.onnx"
        except Exception:  # a module torch.save cannot write: exported each time
            return export(module, args, **kwargs)
        try:
            os.utime(kept)  # used now: the last to be dropped
            data = kept.read_bytes()
        except FileNotFoundError:  # not kept, or dropped by another process's keep() since
            data = None
        if data:
            return Kept(onnx.load_from_string(data))
        program = export(module, args, **kwargs)
        keep(kept, lambda part: part.write_bytes(program.model_proto.SerializeToString()), KEEP)
        return program

    cached_export.kept = True
    torch.onnx.export = cached_export

"""What an ONNX file in a model folder may hold (docs/format.md, rule G1): a closed list, checked on the file's
verified bytes before onnxruntime sees them. Refused: tensors stored outside the file (external data, which
onnxruntime would read from a path the file names), sparse tensors, operator domains other than the standard
one, model-local functions and subgraphs. vae-export writes none of them (tests/test_closed_list.py).

The walk follows fixed field paths of the ModelProto (compat.py reads the protobuf) and never descends into a
subgraph or a function (both are refused), so its depth is bounded whatever the file. ORT-format files (.ort)
are not ONNX protobufs: onnxruntime reads and checks those itself (they hold no external data or subgraphs we
could look for here). Standard library only.
"""
from __future__ import annotations

from .compat import _fields, _text
from .rules import message

DOMAINS = ("", "ai.onnx")  # the standard operators: everything vae-export writes (every kind of export)

# What a file holds that the list leaves out, in words (format_rules.json); sessions.py names the file before it.
OUTSIDE, SPARSE = message("g1_external"), message("g1_sparse")
FUNCTIONS, SUBGRAPH = message("g1_functions"), message("g1_subgraph")


def _domain(domain: str) -> str:
    return message("g1_domain", domain=domain)


# Field numbers (onnx.proto). ModelProto: graph, opset_import (domain = 1), functions.
MODEL_GRAPH, MODEL_OPSET, MODEL_FUNCTIONS = 7, 8, 25
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE = 1, 5, 15
NODE_ATTRIBUTE, NODE_DOMAIN = 5, 7
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE, ATTR_SPARSES = 5, 6, 10, 11, 22, 23
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION, EXTERNAL = 13, 14, 1


def _tensor(data) -> str | None:
    for field, wire, value in _fields(data):
        if field == TENSOR_EXTERNAL_DATA or (field == TENSOR_DATA_LOCATION and wire == 0 and value == EXTERNAL):
            return OUTSIDE
    return None


def _attribute(data) -> str | None:
    for field, wire, value in _fields(data):
        if field in (ATTR_SPARSE, ATTR_SPARSES):
            return SPARSE
        if field in (ATTR_G, ATTR_GRAPHS):
            return SUBGRAPH
        if field in (ATTR_T, ATTR_TENSORS) and wire == 2:
            found = _tensor(value)
            if found:
                return found
    return None


def _node(data) -> str | None:
    for field, wire, value in _fields(data):
        if field == NODE_DOMAIN and wire == 2 and _text(value) not in DOMAINS:
            return _domain(_text(value))
        if field == NODE_ATTRIBUTE and wire == 2:
            found = _attribute(value)
            if found:
                return found
    return None


def _graph(data) -> str | None:
    for field, wire, value in _fields(data):
        if field == GRAPH_SPARSE:
            return SPARSE
        if wire != 2:
            continue
        found = _tensor(value) if field == GRAPH_INITIALIZER else _node(value) if field == GRAPH_NODE else None
        if found:
            return found
    return None


def problem(data: bytes) -> str | None:
    """What the serialized ONNX model in data holds outside the closed list (the first thing found, for the
    message outside_list), or None; ValueError where the protobuf on the walked
    paths does not parse."""
    for field, wire, value in _fields(memoryview(data)):
        if field == MODEL_FUNCTIONS:
            return FUNCTIONS
        if field == MODEL_OPSET and wire == 2:
            domain = next((_text(v) for f, w, v in _fields(value) if (f, w) == (1, 2)), "")
            if domain not in DOMAINS:
                return _domain(domain)
        if field == MODEL_GRAPH and wire == 2:
            found = _graph(value)
            if found:
                return found
    return None

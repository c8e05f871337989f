"""int8 weights rounded by what they do to the layer's output on the calibration data, not each to its nearest
integer (GPTQ: Frantar et al., 2022, "Accurate Post-Training Quantization for Generative Pre-trained Transformers").

Why: on the bundled decoder, the weights' rounding was most of the static int8 error (both weight layers in float
took it from 0.00238 to 0.00172; docs/export-and-int8.md). Rounding one input column at a time and spreading each
column's rounding error over the columns not yet rounded, through the inverse of the layer input's second moment,
lets the errors of a row cancel on the inputs the layer sees. The file keeps its operators, scales, zero points and
integer ranges (7-bit int8, or uint8): only which integer each weight gets changes, so it computes exactly what it
did on every CPU, and the error the export measures and records stays the file's own. Hand-written: onnxruntime's
quantizer rounds to nearest for these formats (its GPTQ is for 4-bit MatMulNBits only).

Deterministic on one machine; on another CPU the float sums behind the second moments may differ in their last
bits, which can move a weight whose two roundings cost the same by one step (the file is still checked as made).
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from vae_edge.runtime.sessions import new_session

DAMP = 0.01  # times the mean diagonal, added to the second moment: inputs that barely vary do not blow it up
CHUNK = 64  # calibration inputs a pass: the im2col rows of a large image's convolution stay small
INT8 = (-64, 64)  # every int8 weight keeps 7 bits (quantize.py says why)
UINT8 = (0, 255)


def round_by_output(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, lo: int, hi: int,
                    moment: np.ndarray) -> np.ndarray:
    """Integers q (out, in) in [lo, hi] for the float weights w (out, in), one scale and zero point per output row,
    that keep (w - (q - zero) * scale) @ x small for the inputs x whose second moment sum(x x^T) is `moment`."""
    w = w.astype(np.float64).copy()
    h = moment.astype(np.float64).copy()
    dead = np.diag(h) == 0  # an input that is always 0: its weights cannot matter
    h[dead, dead] = 1.0
    h += DAMP * np.mean(np.diag(h)) * np.eye(len(h))
    # the upper Cholesky factor of h's inverse: row j holds how column j's error moves the columns after it
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    s = np.asarray(scale, np.float64).reshape(-1)
    z = np.broadcast_to(np.asarray(zero, np.float64).reshape(-1), s.shape)
    q = np.empty(w.shape, np.int64)
    for j in range(w.shape[1]):
        q[:, j] = np.clip(np.round(w[:, j] / s) + z, lo, hi)
        err = (w[:, j] - (q[:, j] - z) * s) / u[j, j]
        w[:, j + 1:] -= np.outer(err, u[j, j + 1:])
    return q


def im2col(x: np.ndarray, kernel: tuple[int, int], pads=(0, 0, 0, 0), strides=(1, 1)) -> np.ndarray:
    """x (n, c, h, w) -> one row per output position, (c, ky, kx) along it: a Conv as a matrix product's input."""
    kh, kw = kernel
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho, wo = (x.shape[2] - kh) // strides[0] + 1, (x.shape[3] - kw) // strides[1] + 1
    taps = [x[:, :, u:u + strides[0] * ho:strides[0], v:v + strides[1] * wo:strides[1]]
            for u in range(kh) for v in range(kw)]
    return np.stack(taps, 2).transpose(0, 3, 4, 1, 2).reshape(-1, x.shape[1] * kh * kw)


def second_moments(proto: onnx.ModelProto, feed: dict, rows: dict) -> dict:
    """name -> sum(x x^T) over the rows that rows[name](tensor) makes of each named float tensor of proto, run by
    onnxruntime as written (optimizations off: a QDQ pair quantizes and dequantizes, nothing is fused), CHUNK
    calibration inputs at a time."""
    probe = copy.deepcopy(proto)
    probe.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in rows)
    sess = new_session(probe.SerializeToString(), graph_optimization_level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    (name, data), = feed.items()
    out = {}
    for i in range(0, len(data), CHUNK):
        for t, v in zip(rows, sess.run(list(rows), {name: data[i:i + CHUNK]})):
            x = rows[t](v.astype(np.float64))
            out[t] = out.get(t, 0) + x.T @ x
    return out


def rounded_by_output(q: onnx.ModelProto, floats: dict, feed: dict) -> onnx.ModelProto:
    """q, an onnxruntime-quantized graph, with each of its per-channel int8/uint8 weights re-rounded by
    round_by_output: the weights a DequantizeLinear gives a Conv, Gemm or MatMul (QDQ), and those of a
    MatMulInteger whose input is quantized from a float tensor (dynamic). floats: the float graph's initializers,
    by name; feed: {input name: calibration inputs}. Returns q."""
    g = q.graph
    init = {i.name: i for i in g.initializer}
    users, made = {}, {o: n for n in g.node for o in n.output}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    jobs = []  # (weight name, float (out, in), scale, zero, layer input, rows of it, how q's array is laid out)
    for name, t in init.items():
        w = _float_of(name, floats)
        if w is None or t.data_type not in (TensorProto.INT8, TensorProto.UINT8) or len(users.get(name, [])) != 1:
            continue
        user = users[name][0]
        if user.op_type == "DequantizeLinear" and user.input[0] == name:
            layer = next(iter(users.get(user.output[0], [])), None)
            if layer is None or layer.op_type not in ("Conv", "Gemm", "MatMul") or layer.input[1] != user.output[0]:
                continue
            scale, zero, x = user.input[1], user.input[2], layer.input[0]
        elif user.op_type == "MatMulInteger" and user.input[1] == name and len(user.input) > 3:
            source = made.get(user.input[0])
            if source is None or source.op_type not in ("DynamicQuantizeLinear", "QuantizeLinear"):
                continue
            layer, scale, zero, x = user, name.removesuffix("_quantized") + "_scale", user.input[3], source.input[0]
        else:
            continue
        job = _layout(layer, w, numpy_helper.to_array(t).shape)
        if job is None or scale not in init or zero not in init:
            continue
        w2, rows, back = job
        jobs.append((name, w2, scale, zero, x, rows, back))
    if not jobs:
        return q
    moments = second_moments(q, feed, {x: rows for *_, x, rows, _ in jobs})
    for name, w2, scale, zero, x, _, back in jobs:
        old = numpy_helper.to_array(init[name])
        lo, hi = INT8 if old.dtype == np.int8 else UINT8
        ints = round_by_output(w2, numpy_helper.to_array(init[scale]), numpy_helper.to_array(init[zero]),
                               lo, hi, moments[x])
        init[name].CopyFrom(numpy_helper.from_array(back(ints).astype(old.dtype), name))
    return q


def _float_of(name: str, floats: dict) -> np.ndarray | None:
    """The float weight behind onnxruntime's quantized initializer `name` ("W_quantized", or "W_Transposed_quantized"
    for a Gemm it split into a MatMul), or None."""
    if not name.endswith("_quantized"):
        return None
    base = name.removesuffix("_quantized")
    if base in floats:
        return floats[base]
    if base.endswith("_Transposed") and base.removesuffix("_Transposed") in floats:
        return floats[base.removesuffix("_Transposed")].T
    return None


def _layout(layer: onnx.NodeProto, w: np.ndarray, shape: tuple):
    """(w as (out, in), the rows of the layer's input for the second moment, integers (out, in) -> q's array), or
    None for a layer this does not know (a grouped or dilated Conv, a weight of another shape)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in layer.attribute}
    if layer.op_type == "Conv":
        if w.ndim != 4 or attrs.get("group", 1) != 1 or set(attrs.get("dilations", [1])) != {1} or w.shape != shape:
            return None
        kernel, pads, strides = w.shape[2:], attrs.get("pads", [0] * 4), attrs.get("strides", [1, 1])
        return (w.reshape(len(w), -1), lambda x: im2col(x, kernel, pads, strides),
                lambda q: q.reshape(shape))
    if w.ndim != 2:
        return None
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
    if layer.op_type == "Gemm" and attrs.get("transB", 0) and w.shape == shape:  # (out, in), as torch keeps it
        return w, flat, lambda q: q
    if w.shape == shape:  # MatMul, MatMulInteger, Gemm without transB: (in, out)
        return w.T, flat, lambda q: q.T
    return None

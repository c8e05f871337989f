"""The conv decoder's static int8 graph: int8 from fc4 through the phase mask, float logits.

Why this graph and not onnxruntime's static quantization of the float graph (the node profile that showed it:
docs/export-and-int8.md):
- onnxruntime's int8 convolution works in NHWC; the Reshapes around the phase mask and the float graph's NCHW
  made it transpose and dequantize the largest tensor on both sides. graphs.decoder_graph(int8_layout=True) gives
  a graph without them (fc4 writes (y, x, channel), the mask is one 4-D Mul).
- 8-bit logits alone cost most of the pixel bound (the logits of a binarized model sit on the sigmoid's slope).
  So the last convolution is not quantized by onnxruntime: integer_last_conv rewrites it as an int8 matrix
  product per kernel tap (MatMulInteger, which onnxruntime runs on its int8 GEMM) over the mask's uint8 output,
  summed in int32 and scaled to float logits; the pixel shuffle becomes a Reshape, a Transpose and a Reshape of
  those logits.
- Activation ranges: min-max calibration let rare large activations widen every step; clip_activations puts
  each at a percentile of its values on the calibration latents (onnxruntime's own percentile calibration is not
  configurable in its older releases), which quantize.py chooses per activation by the pixels' error (one
  percentile for all, 99.9, cost the bundled decoder a quarter of its error; docs/export-and-int8.md). The phase
  mask's output keeps its input's range, so masking in int8 is exact.
Standard ONNX operators only (opset 10's MatMulInteger), so every onnxruntime the runtime supports reads it.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .parity import session
from .rounding import im2col, round_by_output, second_moments

PERCENTILE = 99.9  # an activation's clipping percentile where none is chosen for it
PERCENTILES = (99.0, 99.5, 99.9, 99.99, 99.999)  # those quantize.py chooses among, per activation, by error
WEIGHT_ZERO = 128  # the last conv's weights: uint8 with this zero point (u8 x u8 products never saturate)


def clip_activations(fp32: onnx.ModelProto, feed: dict, percentiles: dict | None = None) -> onnx.ModelProto:
    """A copy of fp32 with each Relu's and Mul's output clipped to [P(100 - p), P(p)] of its values on feed
    (widened to hold 0), p = percentiles.get(output name, PERCENTILE): min-max calibration of the copy then gives
    those ranges, and onnxruntime's quantizer folds the Clips into them. A Mul by a 0/1 mask takes its input's."""
    out = onnx.ModelProto.FromString(fp32.SerializeToString())
    g = out.graph
    targets = [n for n in g.node if n.op_type in ("Relu", "Mul")]
    names = [n.output[0] for n in targets]
    probe = onnx.ModelProto.FromString(fp32.SerializeToString())
    probe.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in names)
    values = session(probe.SerializeToString()).run(names, feed)
    ranges = {}
    for n, v in zip(targets, values):
        percentile = (percentiles or {}).get(n.output[0], PERCENTILE)
        ranges[n.output[0]] = (min(0.0, _coarse(float(np.percentile(v, 100 - percentile)), up=False)),
                               max(0.0, _coarse(float(np.percentile(v, percentile)), up=True)))
        masked = _masked_input(n, g)
        if masked in ranges:  # a 0/1 mask keeps its input's range: int8 masking is then exact, no second rounding
            ranges[n.output[0]] = ranges[masked]
    for n in targets:
        (lo, hi), t = ranges[n.output[0]], n.output[0]
        n.output[0] = f"{t}_unclipped"
        g.initializer.extend([numpy_helper.from_array(np.array(lo, np.float32), f"{t}_clip_min"),
                              numpy_helper.from_array(np.array(hi, np.float32), f"{t}_clip_max")])
        g.node.insert(list(g.node).index(n) + 1, helper.make_node(
            "Clip", [f"{t}_unclipped", f"{t}_clip_min", f"{t}_clip_max"], [t], name=f"{n.name}_clip"))
    return out


def own_ranges(fp32: onnx.ModelProto) -> list[str]:
    """The activations clip_activations gives a range of their own (a mask's output takes its input's), in order."""
    return [n.output[0] for n in fp32.graph.node
            if n.op_type in ("Relu", "Mul") and _masked_input(n, fp32.graph) is None]


def _masked_input(node: onnx.NodeProto, g: onnx.GraphProto) -> str | None:
    """The other input of a Mul by a constant of zeros and ones (the phase mask), or None."""
    if node.op_type != "Mul":
        return None
    consts = {i.name: i for i in g.initializer}
    for a, b in (node.input, node.input[::-1]):
        if b in consts and np.isin(numpy_helper.to_array(consts[b]), (0, 1)).all():
            return a
    return None


def _coarse(v: float, up: bool) -> float:
    """v rounded outward to 3 significant digits: the float sums behind a percentile differ in their last bits
    from one CPU to another, and a range on this grid is then the same on every CPU (but for a value within
    a float's rounding of a grid point)."""
    if v == 0:
        return 0.0
    step = 10.0 ** (np.floor(np.log10(abs(v))) - 2)
    return float(np.float32((np.ceil if up else np.floor)(v / step) * step))


# The weights of the layers rewritten here are uint8 around WEIGHT_ZERO, 8 bits symmetric per output channel:
# onnxruntime multiplies uint8 by uint8 in 16-bit products with 32-bit sums on every CPU, so they keep 8 bits
# without saturating (int8_reference.py). The last conv's logits need them; fc4 (integer_gemm, the static-u8 way)
# only where onnxruntime's faster QGemm with 7-bit weights misses the bound: weights rounded by their output
# (rounding.py), 7 bits cost the bundled decoder 0.00006 of its 0.002. (conv1 keeps 7 bits: onnxruntime has no
# fast uint8 x uint8 convolution.)

def _u8_scale(w: np.ndarray) -> np.ndarray:
    """Per row of w (an output channel): the scale that maps its largest weight to 127."""
    return np.maximum(np.abs(w).max(1), 1e-12) / 127


def _u8(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """w (output channel, ...) as uint8 around WEIGHT_ZERO, at each output channel's scale."""
    return (np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))) + WEIGHT_ZERO).astype(np.uint8)


def _adder(g: onnx.GraphProto):
    """const(name, value): adds an initializer to g and returns its name."""
    def const(name, value):
        g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name
    return const


def integer_gemm(q: onnx.ModelProto, floats: dict, feed: dict | None = None) -> onnx.ModelProto:
    """Rewrite q's quantized Gemm (onnxruntime's QDQ: int8 weights dequantized into it, its input dequantized
    from uint8) as one uint8 x uint8 MatMulInteger with 8-bit weights from `floats` (the float graph's
    initializers, by name), summed in int32 and scaled to float; returns q. feed: calibration inputs, on which the
    weights are rounded by their output (rounding.py); without it, each to the nearest."""
    g = q.graph
    init = {i.name: i for i in g.initializer}
    made = {o: n for n in g.node for o in n.output}
    gemm = next(n for n in g.node if n.op_type == "Gemm" and n.input[1] in made
                and made[n.input[1]].op_type == "DequantizeLinear")
    attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise ValueError(f"{gemm.name or 'the Gemm'} is not a plain x @ W.T + b")
    dequant, w_dequant, b_dequant = (made[i] for i in gemm.input)
    x, x_scale, x_zero = dequant.input
    w = floats[w_dequant.input[0].removesuffix("_quantized")]
    w = w if attrs.get("transB", 0) else w.T  # (out, in)
    bias = floats[b_dequant.input[0].removesuffix("_quantized")]
    w_scale = _u8_scale(w)
    if feed:
        moment = second_moments(q, feed, {dequant.output[0]: lambda a: a.reshape(len(a), -1)})
        w_u8 = round_by_output(w, w_scale, WEIGHT_ZERO, 0, 255, moment[dequant.output[0]]).astype(np.uint8)
    else:
        w_u8 = _u8(w, w_scale)
    a_scale = float(numpy_helper.to_array(init[x_scale]))
    const, p = _adder(g), gemm.name or "gemm"
    nodes = [helper.make_node("MatMulInteger", [x, const(f"{p}_w_u8", w_u8.T), x_zero,
                                                const(f"{p}_w_zero", np.array(WEIGHT_ZERO, np.uint8))], [f"{p}_sum"]),
             *_to_float(f"{p}_sum", a_scale * w_scale, bias, gemm.output[0], p, const)]
    for i, n in enumerate(nodes):
        n.name = f"{p}_{n.op_type}_{i}"
    at = list(g.node).index(gemm)
    g.node.remove(gemm)
    for i, n in enumerate(nodes):
        g.node.insert(at + i, n)
    _drop_unused(g, [dequant, w_dequant, b_dequant])
    return q


def _to_float(total: str, scale: np.ndarray, bias: np.ndarray, out: str, p: str, const) -> list:
    """int32 sums -> float: cast, times each output channel's scale (input scale x weight scale), plus bias."""
    return [helper.make_node("Cast", [total], [f"{p}_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{p}_float", const(f"{p}_scale", scale.astype(np.float32))], [f"{p}_scaled"]),
            helper.make_node("Add", [f"{p}_scaled", const(f"{p}_bias", bias.astype(np.float32))], [out])]


def _drop_unused(g: onnx.GraphProto, nodes: list) -> None:
    """Remove those of `nodes` whose outputs nothing reads any more, then the initializers nothing reads."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for n in nodes:
        if not used & set(n.output):
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)


def integer_last_conv(q: onnx.ModelProto, feed: dict | None = None) -> onnx.ModelProto:
    """Rewrite q's last Conv (float weights, its input dequantized from uint8) and the DepthToSpace after it as
    int8 matrix products with float logits; returns q. feed: calibration inputs, on which the weights are rounded
    by their output (rounding.py); without it, each to the nearest."""
    g = q.graph
    init = {i.name: i for i in g.initializer}
    conv = [n for n in g.node if n.op_type == "Conv"][-1]
    shuffle = next(n for n in g.node if n.op_type == "DepthToSpace" and n.input[0] == conv.output[0])
    dequant = next(n for n in g.node if n.op_type == "DequantizeLinear" and conv.input[0] in n.output)
    attrs = {a.name: helper.get_attribute_value(a) for a in [*conv.attribute, *shuffle.attribute]}
    if (any(attrs.get("pads", [0])) or set(attrs.get("strides", [1])) != {1} or attrs.get("group", 1) != 1
            or attrs.get("mode", b"DCR") not in (b"CRD", "CRD")):
        raise ValueError("the last layers are not the phase decoder's Conv and pixel shuffle")
    x, x_scale, x_zero = dequant.input
    w = numpy_helper.to_array(init[conv.input[1]])  # (o, c, kh, kw); o = (channel, ry, rx)
    bias = numpy_helper.to_array(init[conv.input[2]])
    block = attrs["blocksize"]
    out_dims = [d.dim_value for d in g.output[0].type.tensor_type.shape.dim[1:]]  # C, H, W
    channels, h, wd = out_dims[0], out_dims[1] // block, out_dims[2] // block
    w_scale = _u8_scale(w.reshape(len(w), -1))
    if feed:
        kernel = w.shape[2:]
        moment = second_moments(q, feed, {dequant.output[0]: lambda a: im2col(a, kernel)})[dequant.output[0]]
        w_u8 = round_by_output(w.reshape(len(w), -1), w_scale, WEIGHT_ZERO, 0, 255, moment).reshape(w.shape)
    else:
        w_u8 = _u8(w, w_scale)
    a_scale = float(numpy_helper.to_array(init[x_scale]))
    const = _adder(g)

    p = conv.name or "last_conv"
    nodes = [helper.make_node("Transpose", [x], [f"{p}_nhwc"], perm=[0, 2, 3, 1])]
    const(f"{p}_axes", np.array([1, 2], np.int64))
    const(f"{p}_w_zero", np.array(WEIGHT_ZERO, np.uint8))
    taps = []
    for u in range(w.shape[2]):
        for v in range(w.shape[3]):
            t = f"{p}_tap{u}{v}"
            const(f"{t}_w", w_u8[:, :, u, v].T.astype(np.uint8))  # (c, o)
            nodes += [helper.make_node("Slice", [f"{p}_nhwc", const(f"{t}_start", np.array([u, v], np.int64)),
                                                 const(f"{t}_end", np.array([u + h, v + wd], np.int64)), f"{p}_axes"],
                                       [f"{t}_x"]),
                      helper.make_node("MatMulInteger", [f"{t}_x", f"{t}_w", x_zero, f"{p}_w_zero"], [f"{t}_sum"])]
            taps.append(f"{t}_sum")
    total = taps[0]
    for i, t in enumerate(taps[1:]):
        nodes.append(helper.make_node("Add", [total, t], [f"{p}_sum{i}"]))
        total = f"{p}_sum{i}"
    nodes += [
        *_to_float(total, a_scale * w_scale, bias, f"{p}_logits", p, const),
        # (n, i, j, (c, ry, rx)) -> (n, c, i, ry, j, rx) -> (n, c, H, W): DepthToSpace's CRD order
        helper.make_node("Reshape", [f"{p}_logits", const(f"{p}_6d", np.array([-1, h, wd, channels, block, block],
                                                                              np.int64))], [f"{p}_6d_logits"]),
        helper.make_node("Transpose", [f"{p}_6d_logits"], [f"{p}_shuffled"], perm=[0, 3, 1, 4, 2, 5]),
        helper.make_node("Reshape", [f"{p}_shuffled", const(f"{p}_image", np.array([-1, *out_dims], np.int64))],
                         [shuffle.output[0]])]
    for i, n in enumerate(nodes):  # names that say where a node came from in onnxruntime's profile
        n.name = n.name or f"{p}_{n.op_type}_{i}"
    at = min(list(g.node).index(n) for n in (conv, dequant))  # x is made before both
    weight_dq = [n for n in g.node if conv.input[1] in n.output]
    for n in [conv, shuffle, dequant, *weight_dq]:
        g.node.remove(n)
    for i, n in enumerate(nodes):
        g.node.insert(at + i, n)
    used = {i for n in g.node for i in n.input}
    for name in (conv.input[1], conv.input[2]):
        if name not in used and name in init:
            g.initializer.remove(init[name])
    return q

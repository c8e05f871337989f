"""int8: each graph quantized the fastest way that stays within the error bound, and its error against PyTorch.

Ways, fastest first (docs/export-and-int8.md has the figures):
  static     - the conv decoder (export/int8_decoder.py): int8 from fc4 through the phase mask with calibrated
               activation ranges, the last convolution as int8 matrix products with float logits. The conv
               encoder: QDQ int8 for the Convs and Gemms, activation scales calibrated on real images;
  static-u8  - the conv decoder the same, its fc4 a uint8 x uint8 product with 8-bit weights (slower);
  mixed      - the conv encoder: static QDQ for the Convs, dynamic int8 for the Gemms;
  dynamic    - int8 weights for the Gemms only, activations quantized on the fly; Convs stay float
               (onnxruntime's ConvInteger is slower than its float Conv);
  dynamic-u8 - the same with 8-bit uint8 weights, for graphs whose error needs the 8th bit.
Graphs without convolutions (the mlp) start at dynamic. The first layer of each graph stays float in every way,
and so do the conv decoder's logits in the static way: 8 bits there cost most of the error for a small share of
the time. With calibration data, every way's int8 weights are rounded by their effect on the layer's output
(export/rounding.py), not each to the nearest integer. The first way whose mean abs error against PyTorch on
held-out data stays within BOUND is kept; with none, there is no int8 unless force=True.

Every way keeps its int8 weights in 7 bits ([-64, 64], onnxruntime's reduce_range; the static decoder's last
conv, and static-u8's fc4, have uint8 weights of 8 bits instead), so that no onnxruntime kernel saturates: the
file computes the same on every CPU (export/int8_reference.py says why). The error that chooses the way and that
vae.json records is the file's own, computed by that exact reference against PyTorch; the error of onnxruntime on
the exporting CPU is recorded beside it ("this_cpu"), as a measurement of one machine.
"""
from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import onnx.numpy_helper

from vae_edge.runtime.errors import one_line

from .errors import ExportError
from .graphs import lowest_ir
from .cpu import cpu_name
from .int8_decoder import PERCENTILES, clip_activations, integer_gemm, integer_last_conv, own_ranges
from .int8_reference import reference_run
from .parity import session
from .rounding import rounded_by_output

INT8_SAMPLES = 256  # random inputs for the error when no real images are at hand
SEED = 0  # random inputs are drawn with this seed: the same export makes the same choice every time
BOUND = {"mu_mean_abs": 0.02, "x_mean_abs": 0.002}


@dataclass
class Calibration:
    """Real inputs: `x`/`z` to calibrate activation scales on, `x_check`/`z_check` (held out) to measure the error."""

    x: np.ndarray
    z: np.ndarray
    x_check: np.ndarray
    z_check: np.ndarray
    source: str


def random_inputs(input_shape, latent_dim: int) -> Calibration:
    """No real images: measure the error on uniform noise and N(0, I) latents; nothing to calibrate on."""
    rng = np.random.default_rng(SEED)
    x = rng.random((INT8_SAMPLES, *input_shape), dtype=np.float32)
    z = rng.standard_normal((INT8_SAMPLES, latent_dim), dtype=np.float32)
    return Calibration(x[:0], z[:0], x, z, "random inputs (no calibration images)")


def quantize_int8(encoder: onnx.ModelProto, decoder: onnx.ModelProto, data: Calibration, expected: dict,
                  force: bool = False, decoder_int8_layout: Callable[[], onnx.ModelProto] | None = None,
                  encoder_int8_layout: Callable[[], onnx.ModelProto] | None = None,
                  ) -> tuple[onnx.ModelProto | None, onnx.ModelProto | None, dict]:
    """(encoder_int8, decoder_int8, report): the first way within BOUND for each graph; (None, None, report)
    when a graph has none, unless force (then its most accurate way is kept). expected: PyTorch's "mu" for
    data.x_check and "x" (probabilities) for data.z_check. decoder_int8_layout: makes the conv decoder as
    graphs.decoder_graph(int8_layout=True) does, for its static way; encoder_int8_layout: the conv encoder as
    graphs.encoder_graph(int8_layout=True), for its static and mixed ways; each called only if tried."""
    chosen, tried, this_cpu = {}, {}, {}
    for role, proto, name, feed, check, out, bound in (
            ("encoder", encoder, "x", data.x, data.x_check, "mu", BOUND["mu_mean_abs"]),
            ("decoder", decoder, "z", data.z, data.z_check, "x", BOUND["x_mean_abs"])):
        tried[role] = {}
        best = None
        ways = (_decoder_ways(decoder, decoder_int8_layout, feed) if role == "decoder" and decoder_int8_layout
                else _ways(proto, name, feed, encoder_int8_layout if role == "encoder" else None))
        for way, make in ways:
            q = make()
            err = _error(reference_run(q, out, {name: check}), expected[out])
            tried[role][way] = err
            if best is None or err["mean_abs"] < best[2]["mean_abs"]:
                best = (way, q, err)
            if err["mean_abs"] <= bound:
                chosen[role] = (way, q, err)
                break
        if role not in chosen and force:
            chosen[role] = best
        if role in chosen:
            got = session(chosen[role][1].SerializeToString()).run([out], {name: check})[0]
            this_cpu[role] = _error(got, expected[out])
    report = {"bound": BOUND, "calibration": data.source, "weights": WEIGHT_BITS,
              "error": "the file's own (onnx.reference, exact integer arithmetic) against PyTorch",
              "tried": tried}
    if len(chosen) < 2:
        return None, None, report
    (ew, eq, ee), (dw, dq, de) = chosen["encoder"], chosen["decoder"]
    report.update(method={"encoder": ew, "decoder": dw},
                  mu_max_abs=ee["max_abs"], mu_mean_abs=ee["mean_abs"],
                  x_max_abs=de["max_abs"], x_mean_abs=de["mean_abs"],
                  this_cpu={"cpu": cpu_name(), "onnxruntime": ort.__version__,
                            "mu_max_abs": this_cpu["encoder"]["max_abs"],
                            "mu_mean_abs": this_cpu["encoder"]["mean_abs"],
                            "x_max_abs": this_cpu["decoder"]["max_abs"],
                            "x_mean_abs": this_cpu["decoder"]["mean_abs"]})
    return eq, dq, report


WEIGHT_BITS = ("int8 weights in 7 bits (reduce_range), the static decoder's last conv (and static-u8's fc4) in "
               "uint8 (u8 x u8): no CPU's int8 kernel saturates")


def _error(got: np.ndarray, expected: np.ndarray) -> dict:
    err = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    return {"mean_abs": float(err.mean()), "max_abs": float(err.max())}


def fallback_messages(report: dict) -> list[str]:
    """One line per graph whose faster ways missed the bound before the one kept."""
    lines = []
    for role, ways in report["tried"].items():
        kept = report.get("method", {}).get(role)
        missed = [(w, e["mean_abs"]) for w, e in ways.items() if w != kept]
        if kept and missed:
            bound = report["bound"]["mu_mean_abs" if role == "encoder" else "x_mean_abs"]
            lines.append(f"int8 {role}: {', '.join(f'{w} {e:.4f}' for w, e in missed)} over the bound {bound:g} "
                         f"(mean abs vs PyTorch); kept {kept} ({ways[kept]['mean_abs']:.4f})")
    return lines


def over_bound_message(report: dict) -> str:
    """One line: why no int8 files were written."""
    parts = []
    for role, ways in report["tried"].items():
        bound = report["bound"]["mu_mean_abs" if role == "encoder" else "x_mean_abs"]
        best = min(ways.items(), key=lambda kv: kv[1]["mean_abs"])
        if best[1]["mean_abs"] > bound:
            parts.append(f"{role} {best[1]['mean_abs']:.4f} ({best[0]}) > {bound:g}")
    return (f"int8 stays over the error bound ({'; '.join(parts)}, mean abs vs PyTorch); kept fp32 only "
            f"(--force-int8 writes the int8 files anyway)")


WEIGHTED = ("Gemm", "MatMul", "Conv")


def _ways(proto: onnx.ModelProto, input_name: str, calibration: np.ndarray,
          layout: Callable[[], onnx.ModelProto] | None = None):
    """(name, function making the quantized graph), fastest first. layout: the graph laid out for int8 convolutions
    (graphs.encoder_graph(int8_layout=True)), which the ways with int8 convolutions quantize instead of proto."""
    feed = {input_name: calibration} if len(calibration) else None
    if any(n.op_type == "Conv" for n in proto.graph.node) and feed:
        g = layout() if layout else proto
        first = _first_layers(g, input_name)
        keep = first + _logits_layer(g)
        yield "static", lambda: _rounded(_static(g, input_name, calibration, list(WEIGHTED), keep), g, feed)
        yield "mixed", lambda: _rounded(_dynamic(_static(g, input_name, calibration, ["Conv"], keep), first), g, feed)
    first = _first_layers(proto, input_name)
    yield "dynamic", lambda: _rounded(_dynamic(proto, first), proto, feed)
    yield "dynamic-u8", lambda: _rounded(_dynamic(proto, first, uint8_weights=True), proto, feed)


def _rounded(q: onnx.ModelProto, fp32: onnx.ModelProto, feed: dict | None) -> onnx.ModelProto:
    """q with its int8 weights rounded by their output on the calibration inputs (export/rounding.py), where there
    are any; else as onnxruntime rounded them, to the nearest."""
    if not feed:
        return q
    return rounded_by_output(q, {i.name: onnx.numpy_helper.to_array(i) for i in fp32.graph.initializer}, feed)


def _logits_layer(proto: onnx.ModelProto) -> list[str]:
    """A decoder's last weighted layer, which makes the logits (kept in float); none in an encoder."""
    weighted = [n.name for n in proto.graph.node if n.op_type in WEIGHTED]
    return weighted[-1:] if proto.graph.input[0].name == "z" else []


def _decoder_ways(decoder: onnx.ModelProto, layout: Callable[[], onnx.ModelProto], z: np.ndarray):
    """The conv decoder's ways: static (export/int8_decoder.py) where there is calibration data, then dynamic."""
    feed = {"z": z} if len(z) else None
    if feed:
        yield "static", lambda: _static_decoder(layout(), z, uint8_fc4=False)
        yield "static-u8", lambda: _static_decoder(layout(), z, uint8_fc4=True)
    yield "dynamic", lambda: _rounded(_dynamic(decoder, _first_layers(decoder, "z")), decoder, feed)
    yield "dynamic-u8", lambda: _rounded(_dynamic(decoder, _first_layers(decoder, "z"), uint8_weights=True),
                                         decoder, feed)


def _first_layers(proto: onnx.ModelProto, input_name: str) -> list[str]:
    """The weighted layers that read the graph's input, which every way keeps in float."""
    return [n.name for n in proto.graph.node if input_name in n.input and n.op_type in WEIGHTED]


def static_decoder_qdq(layout: onnx.ModelProto, z: np.ndarray, percentiles: dict | None = None) -> onnx.ModelProto:
    """The int8 layout graph quantized by onnxruntime (QDQ, activations clipped at `percentiles`, by output name;
    int8_decoder.PERCENTILE for the rest), its last conv still float."""
    last = [n.name for n in layout.graph.node if n.op_type in ("Conv", "DepthToSpace")][-2:]
    return _static(clip_activations(layout, {"z": z}, percentiles), "z", z,
                   [*WEIGHTED, "Mul", "Relu", "Clip", "Reshape", "Transpose"], _first_layers(layout, "z") + last)


def _static_decoder(layout: onnx.ModelProto, z: np.ndarray, uint8_fc4: bool) -> onnx.ModelProto:
    """The static int8 decoder, each activation's range chosen in graph order among PERCENTILES by the pixels' mean
    abs error against the float decoder on the calibration latents (the check latents stay held out; onnxruntime
    measures, as it measured the ranges themselves). uint8_fc4: fc4 as integer_gemm's uint8 x uint8 product with
    8-bit weights, where onnxruntime's QGemm with 7-bit weights (faster) misses the bound."""
    want = session(layout.SerializeToString()).run(["x"], {"z": z})[0]
    floats = {i.name: onnx.numpy_helper.to_array(i) for i in layout.graph.initializer}
    chosen, best = {}, None
    for name in own_ranges(layout):
        trials = {}
        for p in PERCENTILES:
            q = _static_decoder_at(layout, floats, z, {**chosen, name: p}, uint8_fc4)
            trials[p] = (float(np.abs(session(q.SerializeToString()).run(["x"], {"z": z})[0] - want).mean()), q)
        chosen[name] = min(PERCENTILES, key=lambda p: trials[p][0])
        best = trials[chosen[name]][1]
    return best if best is not None else _static_decoder_at(layout, floats, z, chosen, uint8_fc4)


def _static_decoder_at(layout: onnx.ModelProto, floats: dict, z: np.ndarray, percentiles: dict,
                       uint8_fc4: bool) -> onnx.ModelProto:
    """One static decoder at the given ranges; floats: layout's initializers, by name."""
    q = static_decoder_qdq(layout, z, percentiles)
    try:
        q = integer_last_conv(integer_gemm(q, floats, {"z": z}) if uint8_fc4 else q, {"z": z})
        return rounded_by_output(q, floats, {"z": z})  # the QDQ layers: fc4 (unless uint8_fc4) and the convolutions
    except (StopIteration, ValueError, KeyError) as e:
        raise ExportError(f"static int8 of the decoder: {one_line(e) or 'unexpected graph'}") from None


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: batches of the calibration inputs, then None."""

    def __init__(self, name: str, data: np.ndarray, batch: int = 64):
        self._batches = iter([{name: data[i:i + batch]} for i in range(0, len(data), batch)])

    def get_next(self):
        return next(self._batches, None)

    def __iter__(self):  # some onnxruntime releases iterate the reader
        return iter(self.get_next, None)


def _static(proto: onnx.ModelProto, input_name: str, data: np.ndarray, ops: list[str],
            exclude: list[str]) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    return _run(proto, lambda src, dst: quantize_static(
        src, dst, _Reader(input_name, data), quant_format=QuantFormat.QDQ, op_types_to_quantize=ops,
        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax))


def _dynamic(proto: onnx.ModelProto, keep_float: list[str], uint8_weights: bool = False) -> onnx.ModelProto:
    """int8 weights of 7 bits; uint8_weights: of 8 bits as uint8 (uint8 x uint8 products, slower, never saturating)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # "_MatMul": the quantizer's name for a split Gemm
    exclude = [f"{n}{suffix}" for n in keep_float for suffix in ("", "_MatMul")]
    weights = dict(weight_type=QuantType.QUInt8, reduce_range=False) if uint8_weights else \
        dict(weight_type=QuantType.QInt8, reduce_range=True)
    q = _run(proto, lambda src, dst: quantize_dynamic(src, dst, **weights,
                                                      op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                                                      nodes_to_exclude=exclude))
    if not any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in q.graph.node):
        raise ExportError("int8 quantization left the graph in float; nothing to gain")
    return q


def _run(proto: onnx.ModelProto, quantize) -> onnx.ModelProto:
    """Run an onnxruntime quantizer file to file (onnxruntime < 1.16 takes only paths), on the graph without the
    exporter's value_info, which onnxruntime 1.30's shape inference contradicted for a transposed Gemm at opset 20
    ("Inferred shape and existing shape differ in dimension 0: (784) vs (400))."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.onnx", Path(d) / "q.onnx"
        proto = copy.deepcopy(proto)
        del proto.graph.value_info[:]
        onnx.save(proto, src)
        logging.disable(logging.WARNING)  # "consider pre-processing": it changes nothing for these graphs
        try:
            quantize(str(src), str(dst))
        except Exception as e:
            raise ExportError(f"int8 quantization failed: {one_line(e)}") from None
        finally:
            logging.disable(logging.NOTSET)
        return lowest_ir(unused_imports_dropped(onnx.load(dst)))


def unused_imports_dropped(proto: onnx.ModelProto) -> onnx.ModelProto:
    """proto without the operator domains it imports but no node uses: onnxruntime 1.15's quantizer (the floor of
    [train]) imports every domain onnxruntime registers (ai.onnx.ml, com.microsoft, ...), which a model folder may
    not hold (docs/format.md, rule G1)."""
    used = {n.domain for n in proto.graph.node} | {"", "ai.onnx"}
    kept = [o for o in proto.opset_import if o.domain in used]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    return proto

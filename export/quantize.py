"""int8: onnxruntime's quantization of the exported graphs, and its error against fp32."""
from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from .errors import ExportError, first_line
from .graphs import lowest_ir
from .parity import session

INT8_SAMPLES = 256


def quantize_int8(proto: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime dynamic quantization: int8 weights, activations quantized on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The layer that reads z stays float: 8 bits for the whole batch of z (20 numbers an image, the
    # most informative ones) cost more error than its small share of the time gains. Per-channel
    # weights halve the error again. On a trained mlp decoder this took the mean pixel error from
    # 0.0033 to 0.0015 and kept 2.6x the fp32 speed. The quantizer names a Gemm it splits "<name>_MatMul".
    inputs = {i.name for i in proto.graph.input if i.name == "z"}
    keep_float = [f"{n.name}{suffix}" for n in proto.graph.node if set(n.input) & inputs
                  and n.op_type in ("Gemm", "MatMul") for suffix in ("", "_MatMul")]
    with tempfile.TemporaryDirectory() as d:
        logging.disable(logging.WARNING)  # "consider pre-processing": it changes nothing for these graphs
        try:
            # Linear layers only: onnxruntime's ConvInteger was measured 5x slower than float Conv
            # here (bench/runtime.py), for the same error.
            quantize_dynamic(_for_quantizer(proto, Path(d) / "in.onnx"), Path(d) / "q.onnx",
                             weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                             nodes_to_exclude=keep_float)
        except Exception as e:
            raise ExportError(f"int8 quantization failed: {first_line(e)}") from None
        finally:
            logging.disable(logging.NOTSET)
        q = lowest_ir(onnx.load(Path(d) / "q.onnx"))
    if not any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in q.graph.node):
        raise ExportError("int8 quantization left the graph in float; nothing to gain")
    return q


def _for_quantizer(proto: onnx.ModelProto, path: Path) -> Path:
    """The graph as the quantizer wants it: a file (onnxruntime < 1.16 takes only paths), without the exporter's
    value_info, which onnxruntime 1.30's shape inference contradicted for a transposed Gemm at opset 20
    ("Inferred shape and existing shape differ in dimension 0: (784) vs (400)")."""
    proto = copy.deepcopy(proto)
    del proto.graph.value_info[:]
    onnx.save(proto, path)
    return path


def int8_error(input_shape, latent_dim: int, encoder: bytes, decoder: bytes,
               encoder_int8: bytes, decoder_int8: bytes) -> dict:
    """Max and mean abs difference of mu and of the decoder's probabilities, int8 vs fp32."""
    rng = np.random.default_rng()
    x = rng.random((INT8_SAMPLES, *input_shape), dtype=np.float32)
    z = rng.standard_normal((INT8_SAMPLES, latent_dim), dtype=np.float32)
    mu, mu8 = (session(m).run(["mu"], {"x": x})[0] for m in (encoder, encoder_int8))
    px, px8 = (session(m).run(["x"], {"z": z})[0] for m in (decoder, decoder_int8))
    dmu, dx = np.abs(mu8 - mu), np.abs(px8 - px)
    return {"mu_max_abs": float(dmu.max()), "mu_mean_abs": float(dmu.mean()),
            "x_max_abs": float(dx.max()), "x_mean_abs": float(dx.mean())}


"""What an int8 file computes, independent of the CPU that runs it: onnx's reference evaluator (numpy).

onnxruntime's int8 kernels differ by CPU. On x86 without VNNI (AVX2, and AVX-512 without VNNI) its uint8 x int8
products add pairs of 16-bit products in a saturating 16-bit sum (vpmaddubsw): 255 * 127 * 2 overflows it, so a
file with full 8-bit int8 weights gives other numbers there than on a VNNI CPU, wasm or ARM. So our int8 files
hold int8 weights in 7 bits (reduce_range, [-64, 64]): 255 * 64 * 2 = 32,640 fits. Where 8 bits matter (the
static decoder's last conv, whose output is the logits) the weights are uint8 around a zero point of 128:
onnxruntime widens uint8 x uint8 to 16-bit products summed in 32 bits (vpmaddwd), which cannot saturate, but
runs them at about half the speed, too slow for the big layers. Every kernel then computes the same integer
sums, and the file has one meaning, which this module computes:
- MatMulInteger and DynamicQuantizeLinear in integers (numpy int32), exactly;
- QuantizeLinear / DequantizeLinear pairs (the QDQ parts) as ONNX defines them: the float op on dequantized
  values, which onnxruntime's fused int8 kernels reproduce up to float32 rounding.
What is left between CPUs is float32 rounding in the float layers and in requantization, which now and then
moves a value across a rounding boundary of 8 bits: a few pixels in a thousand images, by one step.
The files are opset 14-23; onnx's reference has its quantization ops from opset 19 on, with the same meaning for
int8 and uint8 tensors as at 13, so the files are read at opset max(21, theirs). The ops our files hold (Conv,
Gemm, Relu, Clip, Mul, Add, Cast, Reshape, Transpose, Slice, Sigmoid) mean the same there.
"""
from __future__ import annotations

import numpy as np
import onnx

READ_AT_OPSET = 21


def reference_run(proto: onnx.ModelProto, output: str, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The output `output` of the graph `proto` on `feed`, by onnx.reference. One run for the whole feed: a
    dynamic int8 graph (DynamicQuantizeLinear) quantizes each tensor with the range of the whole batch, so its
    outputs depend on which inputs are batched together, and the reference must see the batch onnxruntime sees."""
    from onnx.reference import ReferenceEvaluator

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, READ_AT_OPSET)
    return ReferenceEvaluator(proto).run([output], feed)[0]

"""score.onnx: (x, eps) -> IWAE log-weights, train/iwae.py's Score with the export's decoder, as an ONNX graph; and
the same graph in an onnxruntime session, the IWAE's onnxruntime route for a checkpoint (vae-eval model.pt), which
decodes two to three times faster than PyTorch eager on a CPU (bench/iwae.py).

x [batch, C, H, W] (the pixels the likelihood is defined on) and eps [samples, batch, latent_dim] ->
log_w [samples, batch] = log p(x|z) + log p(z) - log q(z|x) at z ~ q(z|x) drawn from eps, each exact, from logits;
the IWAE estimate of log p(x) is logsumexp over the samples minus log k.
"""
from __future__ import annotations

import copy
import logging
import warnings

import onnx
import torch

from vae_edge.runtime.errors import one_line
from vae_edge.train.iwae import Score
from vae_edge.train.model import VAE

from .errors import ExportError
from .graphs import NATIVE_OPSET, Decoder, lowest_ir, rename_axes
from .parity import session

BACKENDS = ("auto", "torch", "onnxruntime")


def score_bytes(model: VAE, opset: int | None = None) -> bytes:
    """Score(model) with the export's fast decoder and exact log p(x|z), as an ONNX model (symbolic sample and image
    axes n and m); inputs x, eps, output log_w."""
    model = copy.deepcopy(model).float().cpu().eval()
    module = Score(model, Decoder(model), for_export=True).eval()
    c, h, w = model.input_shape
    d = model.latent_dim
    gen = torch.Generator().manual_seed(0)
    example = (torch.rand(3, c, h, w, generator=gen), torch.randn(3, d, generator=gen),
               torch.randn(3, d, generator=gen), torch.randn(2, 3, d, generator=gen))
    example, names = (example[0], example[3]), ["x", "eps"]
    n, m = torch.export.Dim("n"), torch.export.Dim("m")
    axes = {"x": {0: n}, "eps": {0: m, 1: n}}
    logging.disable(logging.ERROR)  # the exporter is chatty; a failure is raised below
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, example, dynamo=True, verbose=False,
                                        input_names=names, output_names=["log_w"],
                                        dynamic_shapes={k: axes[k] for k in names},
                                        **({"opset_version": opset} if opset else {}))
    finally:
        logging.disable(logging.NOTSET)
    return program.model_proto.SerializeToString()


def score_graph(model: VAE, opset: int) -> onnx.ModelProto:
    """score.onnx: x [batch, C, H, W], eps [samples, batch, latent_dim] -> log_w [samples, batch]."""
    proto = onnx.load_from_string(score_bytes(model, max(opset, NATIVE_OPSET)))
    if proto.opset_import[0].version != opset:
        try:
            proto = onnx.version_converter.convert_version(proto, opset)
        except Exception as e:  # onnx's converter has no adapter down for some ops (Shape below 15)
            raise ExportError(f"cannot convert the score graph to opset {opset}: {one_line(e)}") from None
    rename_axes(proto, {"n": "batch", "m": "samples"})
    return lowest_ir(proto)


class OnnxScore:
    """score(x, eps) -> log w [m, N] as Score(model) computes it, by onnxruntime on a graph exported in memory once
    (a few seconds): what iwae_log_likelihood takes as its score."""

    def __init__(self, model: VAE):
        self.session = session(score_bytes(model))

    def __call__(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": x.float().numpy(), "eps": eps.numpy()})[0])


def pick_backend(backend: str, device: torch.device) -> str:
    """auto: onnxruntime on the CPU, torch on an accelerator."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown IWAE backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" else "torch"
    if backend == "onnxruntime" and device.type != "cpu":
        raise ValueError("the onnxruntime IWAE backend runs on the CPU; use --device cpu or --iwae-backend torch")
    return backend


def scorer(model: VAE, backend: str) -> OnnxScore | None:
    """The score for iwae_log_likelihood on a picked backend: OnnxScore, or None (Score in torch)."""
    return OnnxScore(model) if backend == "onnxruntime" else None

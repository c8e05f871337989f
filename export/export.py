"""Export a trained VAE to a folder: encoder.onnx and decoder.onnx with a symbolic batch, checked against PyTorch,
optionally int8 and ORT-format variants, and vae.json, which records what each file needs to run."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import onnx

from vae_edge.runtime.compat import min_onnxruntime, show_release
from vae_edge.train.model import VAE

from .errors import ExportError
from .calibration import calibration as calibration_data
from .folder import FORMAT, check_target, file_entries, recover, versions, with_metadata, write_folder
from .graphs import DEFAULT_OPSET, PhaseUpsampler, decoder_graph, encoder_graph, opset_of
from .load import jsonable, load_model
from .ort_format import CONFIG, to_ort
from .parity import check_parity, torch_outputs
from . import prior_graph
from .score_graph import score_graph
from .quantize import fallback_messages, over_bound_message, quantize_int8

def requirements(protos) -> dict:
    """vae.json's "onnx": the newest IR version and opset among the files, and the oldest onnxruntime reading them."""
    ir = max(p.ir_version for p in protos)
    opset = max(opset_of(p) for p in protos)
    need = min_onnxruntime(ir, opset)
    return {"ir_version": ir, "opset": opset, "min_onnxruntime": show_release(need) if need else None}

def export_model(model: VAE, out: str | os.PathLike = "vae-onnx", *, facts: dict | None = None,
                 opset: int | None = None, quantize: str | None = None, calibration: int | str | None = None,
                 force_int8: bool = False, ort_format: bool = False, force: bool = False, say=None) -> dict:
    """Export `model` to the folder `out` (encoder.onnx, decoder.onnx, vae.json); returns vae.json.

    quantize="int8" adds encoder.int8.onnx and decoder.int8.onnx, quantized the fastest way whose error against
    PyTorch (the file's own, by exact integer arithmetic) stays within quantize.BOUND (calibrated on
    `calibration`: a number of training images of the dataset in facts["recipe"], or an .npy of images); over the
    bound they are left out (`say` is told why) unless force_int8. ort_format=True adds each file in ORT format
    (.ort) and required_operators.config, for onnxruntime's mobile and minimal builds.
    """
    if quantize not in (None, "int8"):
        raise ExportError(f"unknown quantization {quantize!r}; the only choice is int8")
    opset = DEFAULT_OPSET if opset is None else opset
    out = Path(out)
    recover(out)  # what a killed export left beside out
    check_target(out, force)  # fail before the slow part
    facts = jsonable(facts or {})
    # a float32 CPU copy in eval mode, so the caller's model is left as it was
    model = copy.deepcopy(model).float().cpu().eval()
    enc, dec = encoder_graph(model, opset), decoder_graph(model, opset)
    for proto in (enc, dec):
        onnx.checker.check_model(proto)
    parity = check_parity(model, enc.SerializeToString(), dec.SerializeToString())

    protos = {"encoder": ("encoder.onnx", enc), "decoder": ("decoder.onnx", dec)}
    extra = {}
    format_version = prior_graph.format_version(model)
    if format_version == 2:  # the prior's sampler and the IWAE scoring graph
        prior, score = prior_graph.prior_graph(model, opset), score_graph(model, opset)
        for proto in (prior, score):
            onnx.checker.check_model(proto)
        parity["prior"] = prior_graph.check_prior_parity(model, prior.SerializeToString(), score.SerializeToString())
        protos.update(prior=("prior.onnx", prior), score=("score.onnx", score))
        extra = {"min_vae_edge": prior_graph.MIN_VAE_EDGE, "prior": prior_graph.describe(model)}
    else:  # format 1 keeps its version: score.onnx is a file older readers never open
        try:
            score = score_graph(model, opset)
        except ExportError as e:  # an old opset: the folder samples, encodes and decodes, and cannot score
            (say or (lambda _: None))(f"note: no score.onnx: {e}; export at opset 15 or newer to score images")
        else:
            onnx.checker.check_model(score)
            parity["score"] = prior_graph.check_score_parity(model, score.SerializeToString())
            protos["score"] = ("score.onnx", score)
    int8 = None
    if quantize == "int8":
        say = say or (lambda _: None)
        data = calibration_data(model, calibration, facts.get("recipe"), say)
        layout = (lambda: decoder_graph(model, opset, int8_layout=True)) if PhaseUpsampler.fits(model) else None
        expected = torch_outputs(model, data.x_check, data.z_check)
        enc8, dec8, int8 = quantize_int8(enc, dec, data, expected, force=force_int8, decoder_int8_layout=layout,
                                         encoder_int8_layout=lambda: encoder_graph(model, opset, int8_layout=True))
        if enc8 is None:
            say(f"note: {over_bound_message(int8)}")
        else:
            for line in fallback_messages(int8):
                say(f"note: {line}")
            protos.update(encoder_int8=("encoder.int8.onnx", enc8), decoder_int8=("decoder.int8.onnx", dec8))

    meta = {"format": FORMAT, "format_version": format_version, "model": model.facts(),
            "dataset": facts.get("dataset"), "recipe": facts.get("recipe"), "metrics": facts.get("metrics"),
            "opset": opset_of(enc),
            "onnx": requirements([p for _, p in protos.values()]),
            "versions": versions(), "parity": parity, "int8": int8, **extra}
    blobs = {key: (name, with_metadata(proto, meta, key.split("_")[0])) for key, (name, proto) in protos.items()}
    if ort_format:
        ort_blobs, config = to_ort(blobs)
        ort_parity = check_parity(model, ort_blobs["encoder_ort"][1], ort_blobs["decoder_ort"][1], ort_format=True)
        meta["ort_format"] = {"made_by_onnxruntime": versions()["onnxruntime"], "parity": ort_parity,
                              "operators": CONFIG}
        blobs = {k: (n, with_metadata(p, meta, k.split("_")[0])) for k, (n, p) in protos.items()}
        blobs.update(ort_blobs, required_operators=(CONFIG, config))
    info = {**meta, "files": file_entries(blobs)}
    write_folder(out, blobs, info, force)
    return info

def export_checkpoint(path: str | os.PathLike, out: str | os.PathLike = "vae-onnx", *,
                      input_shape=(1, 28, 28), **options) -> dict:
    """load_model then export_model (same options); returns vae.json."""
    model, facts = load_model(path, input_shape)
    return export_model(model, out, facts=facts, **options)

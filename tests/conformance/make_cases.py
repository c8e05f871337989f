"""Write the conformance cases (tests/conformance/README.md): small model folders and cases.json, the outcome each
reader of a model folder (Python, JavaScript, C) must give for each. Deterministic: run it again and git shows no
change. Needs the onnx package (`pip install -e .[train]`).

    python tests/conformance/make_cases.py
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
SHAPE, LATENT = [1, 2, 3], 2  # images of 1 x 2 x 3 pixels, 2 latents: files of a few hundred bytes
FOLDER_ERROR, INPUT_ERROR = "ModelFolderError", "RuntimeInputError"


def _model(nodes, inputs, outputs, weights, role: str, ir_version: int = 8) -> bytes:
    graph = helper.make_graph(nodes, role, inputs, outputs, [numpy_helper.from_array(w, n) for n, w in weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_cases.py")
    helper.set_model_props(model, {"role": role})
    onnx.checker.check_model(model)
    model.ir_version = ir_version  # after the check: 99 is newer than any checker or onnxruntime reads
    return model.SerializeToString()


def _tensor(name: str, dims: list):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *dims])


def decoder(latent: int = LATENT, shape: list = SHAPE, role: str = "decoder", ir_version: int = 8) -> bytes:
    """z [batch, latent] -> x = sigmoid(z W) [batch, C, H, W]"""
    w = np.random.default_rng(1).standard_normal((latent, int(np.prod(shape)))).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["z", "W"], ["h"]), helper.make_node("Sigmoid", ["h"], ["p"]),
             helper.make_node("Reshape", ["p", "shape"], ["x"])]
    weights = [("W", w), ("shape", np.array([-1, *shape], np.int64))]
    return _model(nodes, [_tensor("z", [latent])], [_tensor("x", shape)], weights, role, ir_version)


def decoder_failing_to_run() -> bytes:
    """A decoder that loads but fails to run: x = sigmoid(z^T W) (Gemm's transA), which the symbolic batch hides
    from the checks at load; it runs only where the batch is latent_dim."""
    w = np.random.default_rng(1).standard_normal((LATENT, int(np.prod(SHAPE)))).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["z", "W"], ["h"], transA=1), helper.make_node("Sigmoid", ["h"], ["p"]),
             helper.make_node("Reshape", ["p", "shape"], ["x"])]
    weights = [("W", w), ("shape", np.array([-1, *SHAPE], np.int64))]
    return _model(nodes, [_tensor("z", [LATENT])], [_tensor("x", SHAPE)], weights, "decoder")


def encoder(latent: int = LATENT, outputs: tuple = ("mu", "logvar")) -> bytes:
    """x [batch, C, H, W] -> mu = flat(x) A, logvar = flat(x) B"""
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((int(np.prod(SHAPE)), latent)).astype(np.float32) for _ in range(2))
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "A"], [outputs[0]]),
             helper.make_node("MatMul", ["f", "B"], [outputs[1]])]
    return _model(nodes, [_tensor("x", SHAPE)], [_tensor(o, [latent]) for o in outputs], [("A", a), ("B", b)],
                  "encoder")


def prior(components: int = 3) -> bytes:
    """A VampPrior's prior.onnx in miniature: eps [batch, latent], u [batch] -> z = eps S + M[min(floor(u K), K - 1)]"""
    means = np.random.default_rng(3).standard_normal((components, LATENT)).astype(np.float32)
    nodes = [helper.make_node("Mul", ["u", "K"], ["uk"]), helper.make_node("Floor", ["uk"], ["k"]),
             helper.make_node("Min", ["k", "last"], ["kf"]),
             helper.make_node("Cast", ["kf"], ["i"], to=TensorProto.INT64),
             helper.make_node("Gather", ["M", "i"], ["mu"], axis=0), helper.make_node("Mul", ["eps", "S"], ["e"]),
             helper.make_node("Add", ["e", "mu"], ["z"])]
    weights = [("K", np.float32(components)), ("last", np.float32(components - 1)), ("M", means),
               ("S", np.full(LATENT, 0.5, np.float32))]
    return _model(nodes, [_tensor("eps", [LATENT]), _tensor("u", [])], [_tensor("z", [LATENT])], weights, "prior")


def vae_json(blobs: dict[str, tuple[str, bytes]], **changes) -> dict:
    """vae.json as vae-export writes it (fewer facts), for blobs key -> (path, bytes); changes replace keys."""
    meta = {"format": "vae-edge-onnx", "format_version": 1,
            "model": {"arch": "mlp", "input_shape": SHAPE, "hidden_dim": 4, "latent_dim": LATENT,
                      "likelihood": "bernoulli"},
            "dataset": None, "recipe": None, "metrics": None, "opset": 13,
            "onnx": {"ir_version": 8, "opset": 13, "min_onnxruntime": "1.12"},
            "files": {key: {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                      for key, (path, data) in blobs.items()}}
    return {**meta, **changes}


FP32 = {"encoder": ("encoder.onnx", encoder()), "decoder": ("decoder.onnx", decoder())}
INT8 = {**FP32, "encoder_int8": ("encoder.int8.onnx", encoder()), "decoder_int8": ("decoder.int8.onnx", decoder())}


PRIOR = {**FP32, "prior": ("prior.onnx", prior())}
# vae.json's "prior" of a format-2 folder (docs/priors.md), for PRIOR's prior.onnx
VAMP = {"name": "vamp", "components": 3, "latent_layers": 1, "layer_sizes": [LATENT], "z_layout": "z",
        "sample": {"file": "prior", "output": "z", "inputs": {
            "eps": {"shape": ["batch", LATENT], "distribution": "standard normal", "temperature": "multiplies eps"},
            "u": {"shape": ["batch"], "distribution": "uniform on [0, 1)",
                  "use": "the mixture component floor(u * 3)"}}}}


def format_2(blobs: dict = PRIOR) -> dict:
    """A format-2 folder's vae.json (a learned prior), with the files in blobs."""
    return vae_json(blobs, format_version=2, min_vae_edge="0.2.0", prior=VAMP)


def with_model(**changes) -> dict:
    return vae_json(FP32, model={**vae_json(FP32)["model"], **changes})


def with_path(key: str, path: str) -> dict:
    meta = vae_json(FP32)
    meta["files"][key]["path"] = path
    return meta


def with_bytes(key: str, size) -> dict:
    meta = vae_json(FP32)
    meta["files"][key]["bytes"] = size
    return meta


def without_bytes(key: str) -> dict:
    meta = vae_json(FP32)
    del meta["files"][key]["bytes"]
    return meta


MIB = 1 << 20  # vae.json's size limit


def padded(meta: dict, size: int) -> bytes:
    """vae.json written as JSON, then spaces (still valid JSON) up to size bytes."""
    raw = (json.dumps(meta, indent=2) + "\n").encode()
    return raw + b" " * (size - len(raw))


def nested(depth: int) -> bytes:
    """vae.json whose arrays and objects nest depth levels, the top object counted, in a key readers ignore."""
    raw = json.dumps(vae_json(FP32, notes=0), indent=2) + "\n"
    return raw.replace('"notes": 0', '"notes": ' + "[" * (depth - 1) + "]" * (depth - 1)).encode()


def replaced(key: str, data: bytes) -> dict:
    """A folder whose files[key] holds data, with a matching sha256 in vae.json."""
    return {"files": {**FP32, key: (FP32[key][0], data)}}


# name -> (the rule, what the folder holds, how it is loaded, the outcome). A folder is a dict: "files" (key ->
# (path, bytes); default FP32), "meta" (vae.json as a dict) or "raw" (vae.json's bytes), "extra" (path -> bytes
# written but not listed).
ACCEPTED = None
FOLDERS = {
    "valid": ("a folder as vae-export writes it loads", {}, {}, ACCEPTED),
    "valid-int8": ("precision int8 loads encoder_int8 and decoder_int8", {"files": INT8}, {"precision": "int8"},
                   ACCEPTED),
    "missing": ("a folder that is not there", None, {}, (FOLDER_ERROR, "no exported model at")),
    "json-broken": ("vae.json must be JSON", {"raw": b'{"format": "vae-edge-onnx", '}, {},
                    (FOLDER_ERROR, "is not readable JSON")),
    "json-bom": ("vae.json is UTF-8 without a byte order mark",
                 {"raw": b"\xef\xbb\xbf" + json.dumps(vae_json(FP32)).encode()}, {},
                 (FOLDER_ERROR, "is not readable JSON")),
    "json-nan": ("vae.json is strict JSON: NaN and Infinity are not JSON, wherever they are",
                 {"raw": json.dumps(vae_json(FP32, metrics={"test_loss": float("nan")})).encode()}, {},
                 (FOLDER_ERROR, "is not readable JSON")),
    "json-array": ("vae.json is an object", {"raw": b"[1, 2]"}, {}, (FOLDER_ERROR, "is not a vae-edge ONNX export")),
    "format-other": ("format must be vae-edge-onnx", {"meta": vae_json(FP32, format="something-else")}, {},
                     (FOLDER_ERROR, "is not a vae-edge ONNX export")),
    "format-version-newer": ("a format_version newer than the reader's is refused, naming it",
                             {"meta": vae_json(FP32, format_version=3)}, {}, (FOLDER_ERROR, "has format_version 3")),
    "format-version-newer-names-vae-edge": (
        "a newer format names the vae-edge that reads it, from min_vae_edge",
        {"meta": vae_json(FP32, format_version=3, min_vae_edge="9.0.0")}, {},
        (FOLDER_ERROR, "has format_version 3, newer than this vae-edge reads (up to 2); it needs vae-edge >= 9.0.0")),
    "format-2-without-prior": ("a format-2 folder describes its prior (name, sample.inputs with eps)",
                               {"meta": vae_json(FP32, format_version=2, min_vae_edge="0.2.0")}, {},
                               (FOLDER_ERROR, "has format_version 2 but no valid prior")),
    "format-2": ("a format-2 folder (a learned prior) loads, and samples through its prior.onnx",
                 {"files": PRIOR, "meta": format_2()}, {"sample": {"n": 3, "seed": 5, "temperature": 0.5}}, ACCEPTED),
    "format-2-eps-array": ("a format-2 folder's sample.inputs.eps is an object (its shape and distribution)",
                           {"files": PRIOR, "meta": vae_json(PRIOR, format_version=2, min_vae_edge="0.2.0", prior={
                               **VAMP, "sample": {**VAMP["sample"], "inputs": {"eps": [], "u": {}}}})}, {},
                           (FOLDER_ERROR, "has format_version 2 but no valid prior")),
    "format-2-prior-not-listed": ("a format-2 folder's prior.onnx is loaded, so it must be listed",
                                  {"meta": format_2(FP32)}, {}, (FOLDER_ERROR, "lists no prior file")),
    "format-2-prior-tampered": ("a changed byte of prior.onnx fails the sha256 check",
                                {"meta": format_2(), "files": {**PRIOR, "prior": ("prior.onnx",
                                                                                  PRIOR["prior"][1][:-1] + b"\x01")}},
                                {}, (FOLDER_ERROR, "prior.onnx does not match the sha256 in vae.json")),
    "decoder-fails-to-run": ("a file that loads but fails to run on valid input is refused in one line",
                             {"files": {**FP32, "decoder": ("decoder.onnx", decoder_failing_to_run())}},
                             {"sample": {"n": 3, "seed": 0}}, (FOLDER_ERROR, "failed to run")),
    "format-version-true": ("format_version is a number, not true", {"meta": vae_json(FP32, format_version=True)}, {},
                            (FOLDER_ERROR, "has format_version")),
    "format-version-string": ("format_version is a number, not a string",
                              {"meta": vae_json(FP32, format_version="1")}, {}, (FOLDER_ERROR, "has format_version")),
    "unknown-keys": ("keys a reader does not know, and files it does not load, are ignored (not even their sha256)",
                     {"meta": {**vae_json(FP32), "prior": {"kind": "flow"},
                               "files": {**vae_json(FP32)["files"],
                                         "prior": {"path": "prior.onnx", "sha256": "0" * 64, "bytes": 1}}}},
                     {}, ACCEPTED),
    "format-1-score-unopened": ("a format-1 folder's score.onnx (vae-export since 0.2.0) is opened only to score: "
                                "loading and sampling never read it",
                                {"meta": {**vae_json(FP32), "files": {
                                    **vae_json(FP32)["files"],
                                    "score": {"path": "score.onnx", "sha256": "0" * 64, "bytes": 1}}}},
                                {"sample": {"n": 2, "seed": 0}}, ACCEPTED),
    "latent-dim-fraction": ("latent_dim is an integer: 2.9 is refused, not read as 2",
                            {"meta": with_model(latent_dim=2.9)}, {},
                            (FOLDER_ERROR, "lacks valid model.input_shape, model.latent_dim or files")),
    "latent-dim-integral-float": ("an integral number written 2.0 is the integer 2 (JSON does not tell them apart)",
                                  {"meta": with_model(latent_dim=2.0)}, {}, ACCEPTED),
    "latent-dim-string": ("latent_dim is a number, not a string", {"meta": with_model(latent_dim="2")}, {},
                          (FOLDER_ERROR, "lacks valid model.input_shape")),
    "latent-dim-huge": ("sizes are below 2^31", {"meta": with_model(latent_dim=2**31)}, {},
                        (FOLDER_ERROR, "lacks valid model.input_shape")),
    "input-shape-two-dims": ("input_shape is [C, H, W]", {"meta": with_model(input_shape=[2, 3])}, {},
                             (FOLDER_ERROR, "lacks valid model.input_shape")),
    "input-shape-zero": ("sizes are >= 1", {"meta": with_model(input_shape=[0, 2, 3])}, {},
                         (FOLDER_ERROR, "lacks valid model.input_shape")),
    "input-shape-boolean": ("sizes are numbers, not true", {"meta": with_model(input_shape=[True, 2, 3])}, {},
                            (FOLDER_ERROR, "lacks valid model.input_shape")),
    "files-array": ("files is an object", {"meta": vae_json(FP32, files=[])}, {},
                    (FOLDER_ERROR, "lacks valid model.input_shape, model.latent_dim or files")),
    "model-missing": ("model is required", {"meta": {k: v for k, v in vae_json(FP32).items() if k != "model"}}, {},
                      (FOLDER_ERROR, "lacks valid model.input_shape")),
    "decoder-not-listed": ("a file that is loaded must be listed",
                           {"meta": {**vae_json(FP32), "files": {"encoder": vae_json(FP32)["files"]["encoder"]}}},
                           {}, (FOLDER_ERROR, "lists no decoder file")),
    "path-number": ("path and sha256 are strings",
                    {"meta": {**vae_json(FP32), "files": {**vae_json(FP32)["files"],
                                                          "decoder": {"path": 7, "sha256": "0" * 64}}}},
                    {}, (FOLDER_ERROR, "lists no decoder file")),
    "path-parent": ("a path never leaves the folder", {"meta": with_path("decoder", "../decoder.onnx")}, {},
                    (FOLDER_ERROR, "is not a plain path inside the model folder")),
    "path-absolute": ("a path is relative", {"meta": with_path("decoder", "/tmp/decoder.onnx")}, {},
                      (FOLDER_ERROR, "is not a plain path inside the model folder")),
    "path-backslash": ("parts are joined by / on every system", {"meta": with_path("decoder", "sub\\decoder.onnx")},
                       {}, (FOLDER_ERROR, "is not a plain path inside the model folder")),
    "path-url": ("a path is not a URL", {"meta": with_path("decoder", "https://example.org/decoder.onnx")}, {},
                 (FOLDER_ERROR, "is not a plain path inside the model folder")),
    "path-dot": ("no part starts with a dot", {"meta": with_path("decoder", "./decoder.onnx")}, {},
                 (FOLDER_ERROR, "is not a plain path inside the model folder")),
    "path-subfolder": ("a path may name a file in a subfolder",
                       {"files": {**FP32, "decoder": ("nets/decoder.onnx", FP32["decoder"][1])}}, {}, ACCEPTED),
    "file-missing": ("a listed file that is loaded must be there",
                     {"files": FP32, "skip": ["decoder"]}, {}, (FOLDER_ERROR, "cannot read")),
    "sha256-mismatch": ("a changed byte fails the sha256 check",
                        {"meta": vae_json(FP32), "files": {**FP32, "decoder": ("decoder.onnx",
                                                                              FP32["decoder"][1][:-1] + b"\x01")}},
                        {}, (FOLDER_ERROR, "does not match the sha256 in vae.json")),
    "sha256-uppercase": ("sha256 is 64 lowercase hex digits, compared as text",
                         {"meta": {**vae_json(FP32), "files": {**vae_json(FP32)["files"], "decoder": {
                             **vae_json(FP32)["files"]["decoder"],
                             "sha256": vae_json(FP32)["files"]["decoder"]["sha256"].upper()}}}},
                         {}, (FOLDER_ERROR, "does not match the sha256 in vae.json")),
    "decoder-few-bytes": ("a few bytes with a matching sha256 are not an ONNX model", replaced("decoder", b":\x00"),
                          {}, (FOLDER_ERROR, "decoder.onnx is not a loadable ONNX model")),
    "encoder-few-bytes": ("the encoder too", replaced("encoder", b":\x00"), {},
                          (FOLDER_ERROR, "encoder.onnx is not a loadable ONNX model")),
    "decoder-not-onnx": ("text is not an ONNX model", replaced("decoder", b"not an onnx model"), {},
                         (FOLDER_ERROR, "decoder.onnx is not a loadable ONNX model")),
    "decoder-ir-too-new": ("a file newer than any onnxruntime the reader knows reads is refused, naming the file "
                           "and why (rule 4h: its IR version and opset, read from its bytes)",
                           replaced("decoder", decoder(ir_version=99)), {},
                           (FOLDER_ERROR, "decoder.onnx needs an onnxruntime newer than")),
    "swapped": ("the networks are told apart by their inputs and outputs",
                {"files": {"encoder": ("encoder.onnx", FP32["decoder"][1]),
                           "decoder": ("decoder.onnx", FP32["encoder"][1])}},
                {}, (FOLDER_ERROR, "encoder and decoder swapped?")),
    "role-tag-ignored": ("the role in a file's metadata is informative: readers do not check it",
                         replaced("decoder", decoder(role="encoder")), {}, ACCEPTED),
    "encoder-output-names": ("the encoder's outputs are named mu and logvar",
                             replaced("encoder", encoder(outputs=("mean", "log_variance"))), {},
                             (FOLDER_ERROR, "expected mu and logvar")),
    "latent-dim-disagrees": ("the networks take and give latent_dim numbers", {"meta": with_model(latent_dim=3)}, {},
                             (FOLDER_ERROR, "disagree on latent_dim")),
    "input-shape-disagrees": ("the decoder gives images of input_shape", {"meta": with_model(input_shape=[1, 3, 2])},
                              {}, (FOLDER_ERROR, "but vae.json says input_shape")),
    "decoder-only-skips-encoder": ("decoder_only reads the decoder alone: a broken encoder is not read",
                                   replaced("encoder", b"not an onnx model"), {"decoder_only": True}, ACCEPTED),
    "int8-missing": ("int8 needs both int8 files", {}, {"precision": "int8"},
                     (FOLDER_ERROR, "has no int8 files; re-export")),
    "int8-over-bound": ("an export that kept no int8 files because they missed the bound says so",
                        {"meta": vae_json(FP32, int8={"bound": {"mu_mean_abs": 0.02}})}, {"precision": "int8"},
                        (FOLDER_ERROR, "their error against fp32 was over the bound")),
    "precision-unknown": ("precision is fp32 or int8", {}, {"precision": "fp16"},
                          (INPUT_ERROR, "precision must be one of fp32, int8")),
    # vae.json's own limits (docs/format.md, the order of checks: 2), checked before the JSON parser runs
    "json-over-1-mib": ("vae.json is at most 1 MiB (1,048,576 bytes): valid JSON padded past it is refused",
                        {"raw": padded(vae_json(FP32), MIB + 1)}, {}, (FOLDER_ERROR, "is larger than 1 MiB")),
    "json-nested-32": ("vae.json may nest arrays and objects 32 levels deep (the top object is the first)",
                       {"raw": nested(32)}, {}, ACCEPTED),
    "json-nested-33": ("vae.json nested 33 levels deep is refused", {"raw": nested(33)}, {},
                       (FOLDER_ERROR, "nested deeper than 32 levels")),
    "json-nested-5000": ("vae.json nested 5,000 levels deep (11 KB) is refused in one line, before a parser "
                         "recurses", {"raw": nested(5000)}, {}, (FOLDER_ERROR, "nested deeper than 32 levels")),
    "json-brackets-in-strings": ("brackets inside strings, after an escaped quote too, do not nest",
                                 {"meta": vae_json(FP32, notes='[{' * 40 + '\\" ' + '[' * 40)}, {}, ACCEPTED),
    # each file's entry and size (the order of checks: 4a, 4d)
    "decoder-bytes-missing": ("bytes is required in each entry a reader loads", {"meta": without_bytes("decoder")},
                              {}, (FOLDER_ERROR, "lists no decoder file")),
    "decoder-bytes-string": ("bytes is a number, not a string", {"meta": with_bytes("decoder", "540")}, {},
                             (FOLDER_ERROR, "lists no decoder file")),
    "decoder-bytes-huge": ("bytes is below 2^31", {"meta": with_bytes("decoder", 2**31)}, {},
                           (FOLDER_ERROR, "lists no decoder file")),
    "decoder-bytes-more": ("a file larger than its bytes is refused before it is read",
                           {"meta": with_bytes("decoder", len(FP32["decoder"][1]) - 1)}, {},
                           (FOLDER_ERROR, f"decoder.onnx has {len(FP32['decoder'][1])} bytes; vae.json says "
                                          f"{len(FP32['decoder'][1]) - 1}")),
    "decoder-bytes-fewer": ("a file smaller than its bytes is refused before it is read",
                            {"meta": with_bytes("decoder", len(FP32["decoder"][1]) + 1)}, {},
                            (FOLDER_ERROR, "bytes; vae.json says")),
}

# name -> (the rule, the folder it starts from, the setup applied to a temporary copy of it, how it is loaded,
# the outcome): what git cannot hold (a FIFO, a symlink), made by each harness (README.md, "setup").
SETUPS = {
    "decoder-fifo": ("a FIFO named decoder.onnx is refused without hanging", "valid", [{"fifo": "decoder.onnx"}],
                     {}, (FOLDER_ERROR, "decoder.onnx is not a regular file")),
    "decoder-folder": ("a folder named decoder.onnx is refused", "valid", [{"mkdir": "decoder.onnx"}], {},
                       (FOLDER_ERROR, "decoder.onnx is not a regular file")),
    "decoder-dev-zero": ("a decoder.onnx that is a symlink to /dev/zero is refused without reading it", "valid",
                         [{"symlink": "decoder.onnx", "to": "/dev/zero"}], {},
                         (FOLDER_ERROR, "decoder.onnx resolves outside the model folder")),
    "decoder-moved-out": ("a symlink to a file outside the folder is refused, its target a valid decoder", "valid",
                          [{"move_out": "decoder.onnx"}], {},
                          (FOLDER_ERROR, "decoder.onnx resolves outside the model folder")),
    "decoder-moved-in": ("a symlink to a file inside the folder is followed", "valid", [{"move_in": "decoder.onnx"}],
                         {"sample": {"n": 2, "seed": 0}}, ACCEPTED),
    "encoder-fifo": ("the encoder is checked at load even where its session waits", "valid",
                     [{"fifo": "encoder.onnx"}], {}, (FOLDER_ERROR, "encoder.onnx is not a regular file")),
    "encoder-fifo-decoder-only": ("a reader never opens a file it does not load", "valid",
                                  [{"fifo": "encoder.onnx"}], {"decoder_only": True}, ACCEPTED),
    "prior-fifo": ("a format-2 folder's prior.onnx is held to the same rules", "format-2", [{"fifo": "prior.onnx"}],
                   {}, (FOLDER_ERROR, "prior.onnx is not a regular file")),
    "json-fifo": ("a FIFO named vae.json is refused without hanging", "valid", [{"fifo": "vae.json"}], {},
                  (FOLDER_ERROR, "vae.json is not a regular file")),
    "json-moved-out": ("vae.json is opened like every other file: inside the folder", "valid",
                       [{"move_out": "vae.json"}], {}, (FOLDER_ERROR, "vae.json resolves outside the model folder")),
}

SEED = "seed must be an integer in [0, 2^53)"
TEMPERATURE = "temperature must be a finite number >= 0"
# name -> (the rule, sample's arguments on the valid folder, the outcome)
SAMPLES = {
    "sample": ("n images from a seed", {"n": 2, "seed": 0}, ACCEPTED),
    "sample-no-seed": ("no seed (null): a fresh one", {"n": 2, "seed": None}, ACCEPTED),
    "seed-largest": ("the largest seed is 2^53 - 1", {"n": 1, "seed": 2**53 - 1}, ACCEPTED),
    "seed-negative": ("a seed is >= 0", {"n": 1, "seed": -1}, (INPUT_ERROR, SEED)),
    "seed-too-large": ("a seed is below 2^53 (exact in every language)", {"n": 1, "seed": 2**53}, (INPUT_ERROR, SEED)),
    "seed-fraction": ("a seed is an integer", {"n": 1, "seed": 2.5}, (INPUT_ERROR, SEED)),
    "seed-string": ("a seed is a number, not a string", {"n": 1, "seed": "3"}, (INPUT_ERROR, SEED)),
    "seed-boolean": ("a seed is a number, not true", {"n": 1, "seed": True}, (INPUT_ERROR, SEED)),
    "temperature-zero": ("temperature 0 decodes z = 0", {"n": 1, "seed": 0, "temperature": 0}, ACCEPTED),
    "temperature-string": ("a temperature is a number, not a string", {"n": 1, "temperature": "0.7"},
                           (INPUT_ERROR, TEMPERATURE)),
    "temperature-negative": ("a temperature is >= 0", {"n": 1, "temperature": -1}, (INPUT_ERROR, TEMPERATURE)),
    "temperature-boolean": ("a temperature is a number, not true", {"n": 1, "temperature": True},
                            (INPUT_ERROR, TEMPERATURE)),
    "n-zero": ("n >= 1", {"n": 0}, (INPUT_ERROR, "n must be >= 1")),
    "n-fraction": ("n is an integer", {"n": 2.5}, (INPUT_ERROR, "n must be an integer")),
    "n-string": ("n is a number, not a string", {"n": "2"}, (INPUT_ERROR, "n must be an integer")),
}


# -- issue 31, the graph rules: G1, the closed list of what an ONNX file may hold; G2, prior.onnx's contract at
# load; G3, every run's outputs checked. Each case breaks one rule and nothing else, and loads in onnxruntime
# without the rule (the If, the sparse and the com.microsoft decoders compute what a decoder should).

def _edited(data: bytes, edit) -> bytes:
    """The model in data, changed by edit(model) in place, without the checker (it refuses what these break)."""
    model = onnx.load_from_string(data)
    edit(model)
    return model.SerializeToString()


def _external(tensor) -> None:
    """Make tensor's values stored outside the file: at ../../secret, a file outside any folder in here."""
    n = len(tensor.raw_data) or len(numpy_helper.to_array(tensor).tobytes())
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../secret"), ("offset", "0"), ("length", str(n))):
        tensor.external_data.add(key=key, value=value)


def _decoder_external_initializer(model) -> None:
    _external(model.graph.initializer[0])  # W


def _decoder_external_constant(model) -> None:
    """W from a Constant node whose value attribute is stored outside the file."""
    w = model.graph.initializer[0]
    del model.graph.initializer[0]
    model.graph.node.insert(0, helper.make_node("Constant", [], ["W"], value=w))
    _external(model.graph.node[0].attribute[0].t)


def _decoder_sparse_initializer(model) -> None:
    """W as a sparse initializer (every value listed): onnxruntime makes it dense and runs it."""
    w = numpy_helper.to_array(model.graph.initializer[0])
    del model.graph.initializer[0]
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(
        numpy_helper.from_array(w.ravel(), "W"), numpy_helper.from_array(np.arange(w.size, dtype=np.int64), "W_i"),
        list(w.shape)))


def _decoder_com_microsoft(model) -> None:
    """The sigmoid as onnxruntime's com.microsoft QuickGelu: an operator outside the ONNX standard."""
    model.graph.node[1].op_type, model.graph.node[1].domain = "QuickGelu", "com.microsoft"
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _decoder_local_function(model) -> None:
    """A model-local function, defined though no node calls it (a call would import its domain too)."""
    model.functions.append(helper.make_function("local", "Unused", ["a"], ["b"],
                                                [helper.make_node("Sigmoid", ["a"], ["b"])],
                                                [helper.make_opsetid("", 13)]))


def _decoder_if_subgraph(model) -> None:
    """x through an If whose two branches (subgraphs) pass it on: If(true) { x } else { x }."""
    model.graph.node[-1].output[0] = "x0"
    branch = lambda name: helper.make_graph(  # noqa: E731
        [helper.make_node("Identity", ["x0"], [name])], name, [],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)])
    model.graph.node.append(helper.make_node("If", ["cond"], ["x"], then_branch=branch("then_x"),
                                             else_branch=branch("else_x")))
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))


def _decoder_one_image(model) -> None:
    """Declares x [batch, 1, 2, 3] but decodes the mean of the batch's z: one image, whatever the batch."""
    model.graph.node.insert(0, helper.make_node("ReduceMean", ["z"], ["z1"], axes=[0], keepdims=1))
    model.graph.node[1].input[0] = "z1"


def _decoder_extra_pixels(model) -> None:
    """Declares x [batch, 1, 2, 3] but returns [batch, 1, 2, 4]: Reshape's shape is [-1, 1, 2, 4] plus 0 * max(z),
    so that no shape inference at load sees past the declaration."""
    w = np.random.default_rng(1).standard_normal((LATENT, 8)).astype(np.float32)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "W"))
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array([-1, 1, 2, 4], np.int64), "shape4"))
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0), "zero"))
    model.graph.node.insert(0, helper.make_node("ReduceMax", ["z"], ["top"], keepdims=0))
    model.graph.node.insert(1, helper.make_node("Mul", ["top", "zero"], ["nothing"]))
    model.graph.node.insert(2, helper.make_node("Cast", ["nothing"], ["delta"], to=TensorProto.INT64))
    model.graph.node.insert(3, helper.make_node("Add", ["shape4", "delta"], ["shape"]))


def _decoder_int64(model) -> None:
    """x [batch, 1, 2, 3] as int64 (0 or 1): declared so, which the decoder's contract at load does not see."""
    model.graph.node[-1].output[0] = "p_x"
    model.graph.node.append(helper.make_node("Cast", ["p_x"], ["x"], to=TensorProto.INT64))
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64


def graph_case(edit) -> dict:
    """A folder whose decoder is the valid one changed by edit, its sha256 and bytes in vae.json matching."""
    return replaced("decoder", _edited(FP32["decoder"][1], edit))


OUTSIDE, SPARSE = "stores a tensor outside the file (external data)", "holds a sparse tensor"
PRIOR_IS_ENCODER = {**PRIOR, "prior": ("prior.onnx", FP32["encoder"][1])}
FOLDERS.update({
    "graph-external-initializer": ("no tensor stored outside the file: an initializer with external data",
                                   graph_case(_decoder_external_initializer), {}, (FOLDER_ERROR, OUTSIDE)),
    "graph-external-constant": ("no tensor stored outside the file: a Constant node's value with external data",
                                graph_case(_decoder_external_constant), {}, (FOLDER_ERROR, OUTSIDE)),
    "graph-sparse-initializer": ("no sparse tensor, though onnxruntime would make it dense",
                                 graph_case(_decoder_sparse_initializer), {}, (FOLDER_ERROR, SPARSE)),
    "graph-domain-com-microsoft": ("no operator domain but '' and 'ai.onnx': a com.microsoft node",
                                   graph_case(_decoder_com_microsoft), {},
                                   (FOLDER_ERROR, "uses operator domain 'com.microsoft'")),
    "graph-local-function": ("no model-local functions", graph_case(_decoder_local_function), {},
                             (FOLDER_ERROR, "defines local functions")),
    "graph-if-subgraph": ("no subgraphs (If, Loop, Scan)", graph_case(_decoder_if_subgraph), {},
                          (FOLDER_ERROR, "holds a subgraph")),
    "graph-prior-is-encoder": ("prior.onnx is held to its contract at load: here it is the encoder",
                               {"files": PRIOR_IS_ENCODER, "meta": format_2(PRIOR_IS_ENCODER)}, {},
                               (FOLDER_ERROR, "prior.onnx is not the prior vae.json describes")),
    "graph-decoder-one-image": ("a run's output has the batch's shape: a decoder that returns one image",
                                graph_case(_decoder_one_image), {"sample": {"n": 3, "seed": 0}},
                                (FOLDER_ERROR, "decoder.onnx returned float32 [1, 1, 2, 3]; expected float32 "
                                               "[3, 1, 2, 3]")),
    "graph-decoder-extra-pixels": ("a run's output has vae.json's shape: a decoder that returns more pixels",
                                   graph_case(_decoder_extra_pixels), {"sample": {"n": 3, "seed": 0}},
                                   (FOLDER_ERROR, "decoder.onnx returned float32 [3, 1, 2, 4]; expected float32 "
                                                  "[3, 1, 2, 3]")),
    "graph-decoder-int64": ("a run's output is float32: a decoder that returns int64",
                            graph_case(_decoder_int64), {"sample": {"n": 3, "seed": 0}},
                            (FOLDER_ERROR, "decoder.onnx returned int64 [3, 1, 2, 3]; expected float32 "
                                           "[3, 1, 2, 3]")),
})
SAMPLES.update({
    "n-over-the-limit": ("a count is at most 1048576 (2^20) per call: an input error, not an allocation's",
                         {"n": 2**20 + 1}, (INPUT_ERROR, "n must be at most 1048576 per call, got 1048577")),
})


def _outcome(outcome) -> dict:
    return {"outcome": "accepted"} if outcome is ACCEPTED else \
        {"outcome": "refused", "error": outcome[0], "message": outcome[1]}


def write_folder(folder: Path, spec: dict) -> None:
    files = spec.get("files", FP32)
    for key, (path, data) in files.items():
        if key not in spec.get("skip", []):
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
    if "raw" in spec:
        raw = spec["raw"]
    else:
        raw = (json.dumps(spec.get("meta", vae_json(files)), indent=2) + "\n").encode()
    (folder / "vae.json").write_bytes(raw)


def main() -> None:
    shutil.rmtree(HERE / "folders", ignore_errors=True)
    cases = []
    for name, (rule, spec, load, outcome) in FOLDERS.items():
        if spec is not None:
            (HERE / "folders" / name).mkdir(parents=True)
            write_folder(HERE / "folders" / name, spec)
        cases.append({"name": name, "rule": rule, "folder": f"folders/{name}", **load, **_outcome(outcome)})
    for name, (rule, base, setup, load, outcome) in SETUPS.items():
        cases.append({"name": name, "rule": rule, "folder": f"folders/{base}", "setup": setup, **load,
                      **_outcome(outcome)})
    for name, (rule, args, outcome) in SAMPLES.items():
        cases.append({"name": name, "rule": rule, "folder": "folders/valid", "sample": args, **_outcome(outcome)})
    (HERE / "cases.json").write_text(json.dumps({"format": "vae-edge-conformance", "version": 1, "cases": cases},
                                                indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {HERE / 'cases.json'}")


if __name__ == "__main__":
    main()

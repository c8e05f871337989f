"""Export a trained VAE to encoder.onnx and decoder.onnx with a symbolic batch, checked against PyTorch."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from vae_edge.train import checkpoint
from vae_edge.train.model import VAE

FORMAT, FORMAT_VERSION = "vae-edge-onnx", 1
TOLERANCE = 1e-5
PARITY_BATCH_SIZES = (1, 2, 7, 64)
EXAMPLE_BATCH = 2  # a batch of 1 could be specialised into a constant by the tracer


class ExportError(ValueError):
    """An export that cannot go ahead; the message is one line for the user."""


class ParityError(ExportError):
    """onnxruntime and PyTorch disagree beyond the tolerance."""


class Encoder(nn.Module):
    """x [N,C,H,W] -> (mu, logvar): the distribution's parameters, never a sample."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x):
        return self.vae.encode(x)


class Decoder(nn.Module):
    """z [N,latent_dim] -> pixel probabilities [N,C,H,W]; the conv decoder's upsampling recast as two Convs."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae
        self.up = PhaseUpsampler(vae.dec_conv, vae.feat) if PhaseUpsampler.fits(vae) else None

    def logits(self, z):
        """vae.decode(z), computed without ConvTranspose where the decoder allows it."""
        if self.up is None:
            return self.vae.decode(z)
        v = self.vae
        return self.up(F.relu(v.fc4(F.relu(v.fc3(z)))).view(-1, *v.feat))  # as VAE.decode, up to dec_conv

    def forward(self, z):
        return torch.sigmoid(self.logits(z))


# onnxruntime's ConvTranspose runs one small matrix product per image and then a col2im (bench/runtime.py
# measured it at a third of a bare MatMul's GFLOP/s); its Conv works on the whole batch in blocked layout.
# So the decoder's ConvTranspose2d(4, 2, 1) -> ReLU -> ConvTranspose2d(4, 2, 1) is exported as:
#   conv1: Conv2d 2x2, padding 1, 4*C1 channels (co, a, b): at (k, l) it holds the first layer's output
#          pixel (2k-a, 2l-b), the four sub-pixel phases of a stride-2 transposed conv, no zero weights;
#   ReLU, then a mask zeroing the (k, l) whose pixel falls outside the image (conv1's border);
#   conv2: Conv2d 2x2 on that phase form, 16*C channels (c, ry, rx): the second layer's output pixel
#          (4i+ry, 4j+rx), so the first layer's output is never interleaved;
#   DepthToSpace(4) (pixel_shuffle, CRD order) puts the 16 phases in place.
# Same sums as ConvTranspose2d, in another order: parity stays at float32 rounding (check_parity).

class PhaseUpsampler(nn.Module):
    """ConvTranspose2d(4, 2, 1) -> ReLU -> ConvTranspose2d(4, 2, 1) as Conv2d, ReLU, mask, Conv2d, pixel_shuffle."""

    def __init__(self, dec_conv: nn.Sequential, feat: tuple[int, int, int]):
        super().__init__()
        t1, t2 = dec_conv[0], dec_conv[2]
        self.conv1 = _first_phase_conv(t1)
        self.conv2 = _second_phase_conv(t2)
        h, w = feat[1], feat[2]
        # (a, b, k, l), the same for every channel co: pixel (2k-a, 2l-b) must lie in [0, 2h) x [0, 2w)
        mask = torch.ones(2, 2, h + 1, w + 1)
        mask[0, :, h, :] = 0
        mask[1, :, 0, :] = 0
        mask[:, 0, :, w] = 0
        mask[:, 1, :, 0] = 0
        self.register_buffer("mask", mask.reshape(4, h + 1, w + 1))  # broadcast over co: 4(h+1)(w+1) floats

    @staticmethod
    def fits(vae: VAE) -> bool:
        """True for the conv VAE's decoder layout (the only one this rewrite knows)."""
        layers = list(getattr(vae, "dec_conv", []))
        shape_ok = lambda t: (isinstance(t, nn.ConvTranspose2d) and t.kernel_size == (4, 4)  # noqa: E731
                              and t.stride == (2, 2) and t.padding == (1, 1) and t.output_padding == (0, 0)
                              and t.dilation == (1, 1) and t.groups == 1 and t.bias is not None)
        return (len(layers) == 3 and shape_ok(layers[0]) and isinstance(layers[1], nn.ReLU)
                and shape_ok(layers[2]))

    def forward(self, h):
        h = F.relu(self.conv1(h))
        n, c, hh, ww = h.shape
        h = (h.view(n, c // 4, 4, hh, ww) * self.mask).view(n, c, hh, ww)
        return F.pixel_shuffle(self.conv2(h), 4)


@torch.no_grad()
def _first_phase_conv(t: nn.ConvTranspose2d) -> nn.Conv2d:
    """Output pixel (2k-a, 2l-b) of t at channel (co, a, b), position (k, l): a 2x2 Conv2d with padding 1."""
    wt = t.weight  # [C_in, C_out, 4, 4]; pixel y = 2*i - 1 + ky takes input row i
    cin, cout = wt.shape[:2]
    w = wt.new_zeros(cout, 2, 2, cin, 2, 2)  # (co, a, b, ci, u, v)
    for a in range(2):
        for b in range(2):
            for u in range(2):
                for v in range(2):
                    # tap u reads input row k - 1 + u for pixel 2k - a: ky = 2k - a + 1 - 2(k - 1 + u)
                    w[:, a, b, :, u, v] = wt[:, :, 3 - a - 2 * u, 3 - b - 2 * v].T
    conv = nn.Conv2d(cin, 4 * cout, 2, padding=1)
    conv.weight.copy_(w.reshape(4 * cout, cin, 2, 2))
    conv.bias.copy_(t.bias.repeat_interleave(4))
    return conv


@torch.no_grad()
def _second_phase_conv(t: nn.ConvTranspose2d) -> nn.Conv2d:
    """t applied to _first_phase_conv's layout: output pixel (4i+ry, 4j+rx) at channel (c, ry, rx), a 2x2 Conv2d."""
    wt = t.weight  # [C1, C, 4, 4]
    cin, cout = wt.shape[:2]
    w = wt.new_zeros(cout, 4, 4, cin, 2, 2, 2, 2)  # (c, ry, rx, ci, s, sx, u, v)
    for ry in range(4):
        for s in range(2):
            for u in range(2):
                # input channel (ci, s, .) at row i + u holds pixel row t = 2(i + u) - s; ky = 4i + ry + 1 - 2t
                ky = ry + 1 + 2 * s - 4 * u
                if not 0 <= ky < 4:
                    continue
                for rx in range(4):
                    for sx in range(2):
                        for v in range(2):
                            kx = rx + 1 + 2 * sx - 4 * v
                            if 0 <= kx < 4:
                                w[:, ry, rx, :, s, sx, u, v] = wt[:, :, ky, kx].T
    conv = nn.Conv2d(4 * cin, 16 * cout, 2)
    conv.weight.copy_(w.reshape(16 * cout, 4 * cin, 2, 2))
    conv.bias.copy_(t.bias.repeat_interleave(16))
    return conv


# -----------------------------------------------------------------------------
# ONNX graphs

def _to_onnx(module: nn.Module, example: torch.Tensor, input_name: str, output_names: list[str],
             opset: int | None) -> onnx.ModelProto:
    """torch.onnx.export with the dynamo exporter and a symbolic batch axis named "batch"."""
    batch = torch.export.Dim("batch")
    logging.disable(logging.WARNING)  # a failed opset conversion logs a traceback; we say it in one line
    try:
        program = torch.onnx.export(module, (example,), dynamo=True, verbose=False,
                                    input_names=[input_name], output_names=output_names,
                                    dynamic_shapes={input_name: {0: batch}}, opset_version=opset)
    except Exception as e:  # the exporter raises many kinds; the user needs one line
        raise ExportError(f"torch.onnx.export failed: {_first_line(e)}") from None
    finally:
        logging.disable(logging.NOTSET)
    proto = program.model_proto
    if opset is not None and _opset(proto) != opset:
        raise ExportError(f"the exporter cannot produce opset {opset} for this model "
                          f"(it made {_opset(proto)}); pick another --opset or leave the default")
    _name_batch_axis(proto)
    return proto


def _name_batch_axis(proto: onnx.ModelProto) -> None:
    """Make the symbolic first axis of every graph input and output read "batch"."""
    g = proto.graph
    symbols = {v.type.tensor_type.shape.dim[0].dim_param for v in [*g.input, *g.output]} - {""}
    for v in [*g.input, *g.output, *g.value_info]:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in symbols:
                d.dim_param = "batch"


def _session(model: bytes) -> ort.InferenceSession:
    """A CPU onnxruntime session straight from bytes, so nothing needs to be on disk yet."""
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else type(e).__name__


# -----------------------------------------------------------------------------
# parity

@torch.no_grad()
def check_parity(model: VAE, encoder: bytes, decoder: bytes) -> dict:
    """Max abs difference PyTorch vs onnxruntime on fresh random inputs; ParityError above TOLERANCE."""
    enc, dec = _session(encoder), _session(decoder)
    rng = np.random.default_rng()  # fresh inputs at every export, never zeros
    worst = {"mu": 0.0, "logvar": 0.0, "x": 0.0}
    for n in PARITY_BATCH_SIZES:
        x = rng.random((n, *model.input_shape), dtype=np.float32)
        z = rng.standard_normal((n, model.latent_dim), dtype=np.float32)
        mu, logvar = model.encode(torch.from_numpy(x))
        probs = model.probs(torch.from_numpy(z))
        o_mu, o_logvar = enc.run(["mu", "logvar"], {"x": x})
        (o_x,) = dec.run(["x"], {"z": z})
        for key, ref, got in (("mu", mu, o_mu), ("logvar", logvar, o_logvar), ("x", probs, o_x)):
            ref = ref.numpy()
            if got.shape != ref.shape:
                raise ParityError(f"{key} at batch {n}: onnxruntime shape {list(got.shape)} "
                                  f"!= PyTorch shape {list(ref.shape)}")
            d = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
            worst[key] = max(worst[key], d) if np.isfinite(d) else float("inf")
    report = {"tolerance": TOLERANCE, "batch_sizes": list(PARITY_BATCH_SIZES), **worst}
    bad = {k: v for k, v in worst.items() if not v <= TOLERANCE}
    if bad:
        figures = ", ".join(f"{k} {v:.3g}" for k, v in worst.items())
        raise ParityError(f"onnxruntime differs from PyTorch beyond {TOLERANCE:g} "
                          f"(max abs over batch sizes {list(PARITY_BATCH_SIZES)}: {figures}); nothing written")
    return report


# -----------------------------------------------------------------------------
# int8

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
            quantize_dynamic(copy.deepcopy(proto), Path(d) / "q.onnx", weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                             nodes_to_exclude=keep_float)
        except Exception as e:
            raise ExportError(f"int8 quantization failed: {_first_line(e)}") from None
        finally:
            logging.disable(logging.NOTSET)
        q = onnx.load(Path(d) / "q.onnx")
    if not any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in q.graph.node):
        raise ExportError("int8 quantization left the graph in float; nothing to gain")
    return q


def int8_error(input_shape, latent_dim: int, encoder: bytes, decoder: bytes,
               encoder_int8: bytes, decoder_int8: bytes) -> dict:
    """Max and mean abs difference of mu and of the decoder's probabilities, int8 vs fp32."""
    rng = np.random.default_rng()
    x = rng.random((INT8_SAMPLES, *input_shape), dtype=np.float32)
    z = rng.standard_normal((INT8_SAMPLES, latent_dim), dtype=np.float32)
    mu, mu8 = (_session(m).run(["mu"], {"x": x})[0] for m in (encoder, encoder_int8))
    px, px8 = (_session(m).run(["x"], {"z": z})[0] for m in (decoder, decoder_int8))
    dmu, dx = np.abs(mu8 - mu), np.abs(px8 - px)
    return {"mu_max_abs": float(dmu.max()), "mu_mean_abs": float(dmu.mean()),
            "x_max_abs": float(dx.max()), "x_mean_abs": float(dx.mean())}


# -----------------------------------------------------------------------------
# metadata and writing

def _versions() -> dict:
    try:
        from importlib.metadata import version
        vae_edge = version("vae-edge")
    except Exception:
        vae_edge = "unknown"
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
            "vae_edge": vae_edge}


def model_facts(model: VAE) -> dict:
    """The architecture facts, as in Config.model()."""
    return {"arch": model.arch, "input_shape": list(model.input_shape), "hidden_dim": model.hidden_dim,
            "latent_dim": model.latent_dim, "likelihood": model.likelihood}


def _opset(proto: onnx.ModelProto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _with_metadata(proto: onnx.ModelProto, meta: dict, role: str) -> bytes:
    """Stamp one metadata_props entry per key of vae.json (json values) plus the role; return bytes."""
    proto = copy.deepcopy(proto)
    del proto.metadata_props[:]
    for k, v in {**meta, "role": role}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, (v if k == "role" else json.dumps(v, sort_keys=True))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_target(out: Path, force: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise ExportError(f"{out} already exists; pass --force to replace it")
    if not out.is_dir() or out.is_symlink():
        raise ExportError(f"{out} exists and is not a folder; refusing to replace it")
    # --force must never wipe an unrelated folder (say --out . or --out ~)
    if any(out.iterdir()) and not (out / "vae.json").is_file():
        raise ExportError(f"{out} is not a vae-edge export (no vae.json); refusing to replace it")


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished folder into place; with force, swap the old one aside first, then delete it."""
    _check_target(out, force)
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    try:
        os.rename(out, old / out.name)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old / out.name, out)  # put the earlier export back
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if old.exists() and not any(old.iterdir()):  # never delete the earlier export on failure
            old.rmdir()


# -----------------------------------------------------------------------------
# public API

def export_model(model: VAE, out: str | os.PathLike = "vae-onnx", *, facts: dict | None = None,
                 opset: int | None = None, quantize: str | None = None, force: bool = False) -> dict:
    """Export `model` to the folder `out` (encoder.onnx, decoder.onnx, vae.json); returns vae.json."""
    if quantize not in (None, "int8"):
        raise ExportError(f"unknown quantization {quantize!r}; the only choice is int8")
    out = Path(out)
    _check_target(out, force)  # fail before the slow part
    facts = _jsonable(facts or {})
    # a float32 CPU copy in eval mode, so the caller's model is left as it was
    model = copy.deepcopy(model).float().cpu().eval()
    c, h, w = model.input_shape
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((EXAMPLE_BATCH, c, h, w), generator=gen)
    z = torch.randn((EXAMPLE_BATCH, model.latent_dim), generator=gen)
    enc = _to_onnx(Encoder(model).eval(), x, "x", ["mu", "logvar"], opset)
    dec = _to_onnx(Decoder(model).eval(), z, "z", ["x"], opset)
    for proto in (enc, dec):
        onnx.checker.check_model(proto)
    parity = check_parity(model, enc.SerializeToString(), dec.SerializeToString())

    protos = {"encoder": ("encoder.onnx", enc), "decoder": ("decoder.onnx", dec)}
    int8 = None
    if quantize == "int8":
        enc8, dec8 = quantize_int8(enc), quantize_int8(dec)
        protos.update(encoder_int8=("encoder.int8.onnx", enc8), decoder_int8=("decoder.int8.onnx", dec8))
        int8 = int8_error(model.input_shape, model.latent_dim,
                          *(p.SerializeToString() for p in (enc, dec, enc8, dec8)))

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model_facts(model),
            "dataset": facts.get("dataset"), "metrics": facts.get("metrics"), "opset": _opset(enc),
            "versions": _versions(), "parity": parity, "int8": int8}
    blobs = {key: (name, _with_metadata(proto, meta, key.split("_")[0]))
             for key, (name, proto) in protos.items()}
    info = {**meta, "files": {role: {"path": name, "sha256": hashlib.sha256(data).hexdigest(),
                                     "bytes": len(data)} for role, (name, data) in blobs.items()}}

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the export is an ordinary folder
        for name, data in blobs.values():
            _write(tmp / name, data)
        _write(tmp / "vae.json", (json.dumps(info, indent=2) + "\n").encode())
        _move_into_place(tmp, out, force)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


# -----------------------------------------------------------------------------
# loading

# The reference VAE's state_dict: torch.save(model.state_dict(), "model.pt").
REFERENCE_KEYS = tuple(f"{layer}.{p}" for layer in ("fc1", "fc21", "fc22", "fc3", "fc4")
                       for p in ("weight", "bias"))


def load_model(path: str | os.PathLike, input_shape=(1, 28, 28)) -> tuple[VAE, dict]:
    """Read a vae-train checkpoint or a reference state_dict; returns (model in eval mode, facts).

    input_shape (C, H, W) applies to a plain state_dict; a vae-train checkpoint records its own.
    """
    try:
        obj = checkpoint.load(path)
    except checkpoint.CheckpointError as e:
        raise ExportError(str(e)) from None
    except Exception as e:  # corrupt files can still raise KeyError, AssertionError... from torch.load
        raise ExportError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                          f"{type(e).__name__}: {_first_line(e)}") from None
    if not isinstance(obj, dict):
        raise ExportError(f"{path} holds a {type(obj).__name__}, not a checkpoint or a state_dict")
    if checkpoint.is_vae_edge(obj):
        model, facts = _from_checkpoint(obj, path)
    else:
        model, facts = _from_reference(obj, path, input_shape), {"dataset": None, "metrics": None}
    for k, v in model.state_dict().items():
        if not torch.isfinite(v).all():
            raise ExportError(f"{path}: {k} holds NaN or infinite values")
    return model.eval(), facts


def _from_checkpoint(obj: dict, path) -> tuple[VAE, dict]:
    if obj.get("version") != checkpoint.VERSION:
        raise ExportError(f"{path}: checkpoint version {obj.get('version')!r} is not supported "
                          f"(expected {checkpoint.VERSION})")
    config, state = obj.get("config"), obj.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise ExportError(f"{path}: checkpoint lacks its config or state_dict")
    from vae_edge.train.config import Config
    try:
        model = VAE.from_config(Config.from_dict(config).model())
    except (TypeError, ValueError, KeyError) as e:
        raise ExportError(f"{path}: bad model config: {_first_line(e)}") from None
    # torch.compile wraps the model and prefixes every key
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    _load_state(model, state, path)
    metrics = obj.get("metrics")
    final = metrics[-1] if isinstance(metrics, list) and metrics and isinstance(metrics[-1], dict) else None
    return model, {"dataset": config.get("dataset"), "metrics": _jsonable(final)}


def _from_reference(state: dict, path, input_shape) -> VAE:
    keys = set(state)
    unknown = sorted(str(k) for k in keys - set(REFERENCE_KEYS))
    missing = [k for k in REFERENCE_KEYS if k not in keys]
    if unknown:
        raise ExportError(f"{path}: unknown keys {', '.join(unknown[:5])}"
                          f"{' ...' if len(unknown) > 5 else ''}; expected the reference VAE's "
                          f"fc1, fc21, fc22, fc3, fc4 or a vae-train checkpoint")
    if missing:
        raise ExportError(f"{path}: missing keys {', '.join(missing)}")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{path}: a state_dict must hold only tensors")
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ExportError(f"input shape must be C,H,W, got {input_shape!r}") from None
    if min(c, h, w) < 1:
        raise ExportError(f"input shape must be positive, got {c},{h},{w}")
    w1 = state["fc1.weight"]
    if w1.dim() != 2 or state["fc21.weight"].dim() != 2:
        raise ExportError(f"{path}: fc1.weight and fc21.weight must be matrices")
    hidden_dim, d = w1.shape
    latent_dim = state["fc21.weight"].shape[0]
    if d != c * h * w:
        raise ExportError(f"{path}: fc1 takes {d} inputs but input shape {c},{h},{w} has {c * h * w} "
                          f"pixels; pass the right --input-shape")
    model = VAE("mlp", (c, h, w), int(hidden_dim), int(latent_dim))
    _load_state(model, state, path)
    return model


def _load_state(model: VAE, state: dict, path) -> None:
    """load_state_dict with every mismatch reported in one line."""
    want = model.state_dict()
    unknown = sorted(str(k) for k in set(state) - set(want))
    missing = [k for k in want if k not in state]
    if unknown or missing:
        parts = ([f"unknown keys {', '.join(unknown[:5])}"] if unknown else []) + \
                ([f"missing keys {', '.join(missing[:5])}"] if missing else [])
        raise ExportError(f"{path}: state_dict does not match the model: {'; '.join(parts)}")
    for k, v in want.items():
        got = state[k]
        if not isinstance(got, torch.Tensor) or not got.is_floating_point():
            raise ExportError(f"{path}: {k} is not a floating-point tensor")
        if tuple(got.shape) != tuple(v.shape):
            raise ExportError(f"{path}: {k} has shape {list(got.shape)}, expected {list(v.shape)}")
    model.load_state_dict({k: state[k].float() for k in want})


def _jsonable(v):
    """Metrics as plain JSON: tensors to numbers, NaN/inf to None."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, torch.Tensor):
        v = v.item() if v.numel() == 1 else v.tolist()
        return _jsonable(v)
    if isinstance(v, float):
        return v if np.isfinite(v) else None
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def export_checkpoint(path: str | os.PathLike, out: str | os.PathLike = "vae-onnx", *,
                      input_shape=(1, 28, 28), opset: int | None = None, quantize: str | None = None,
                      force: bool = False) -> dict:
    """load_model then export_model; returns vae.json."""
    model, facts = load_model(path, input_shape)
    return export_model(model, out, facts=facts, opset=opset, quantize=quantize, force=force)

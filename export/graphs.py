"""The torch modules that become encoder.onnx and decoder.onnx, and their conversion to ONNX at a chosen opset.

The dynamo exporter writes opset 18 and newer; older opsets come from onnx's version converter, and every
file gets the lowest IR version its opset allows, so that older onnxruntime releases can read it
(runtime/compat.py holds the table of which release reads what).
"""
from __future__ import annotations

import contextlib
import io
import logging

import onnx
import torch
import torch.nn.functional as F
from onnx import helper, version_converter
from torch import nn

from vae_edge.runtime.errors import one_line
from vae_edge.train.likelihood import mean
from vae_edge.train.model import VAE

from .errors import ExportError

EXAMPLE_BATCH = 2  # a batch of 1 could be specialised into a constant by the tracer
# What --opset accepts: onnx's version converter has no adapter below 14 for Relu and Reshape, and
# torch.onnx makes at most 23. The default is the newest opset that onnxruntime 1.12, our floor, reads.
OPSETS = range(14, 24)
DEFAULT_OPSET = 17
NATIVE_OPSET = 18  # the oldest opset torch.onnx's dynamo exporter writes itself


def yxc_order(feat: tuple[int, int, int]) -> torch.Tensor:
    """For a (channel, y, x) map flattened: the flat (c, y, x) index that each position of its (y, x, channel)
    flattening holds, the order the int8 layouts read and write the conv map in."""
    c, h, w = feat
    return torch.arange(c * h * w).view(c, h * w).T.reshape(-1)


class Encoder(nn.Module):
    """x [N,C,H,W] -> (mu, logvar): the distribution's parameters, never a sample."""

    def __init__(self, vae: VAE, int8_layout: bool = False):
        super().__init__()
        self.vae = vae
        self.int8_layout = int8_layout and vae.arch == "conv"
        if self.int8_layout:  # fc1's columns reordered to read (y, x, channel): see encoder_graph
            self.register_buffer("fc1_weight", vae.fc1.weight.detach()[:, yxc_order(vae.feat)].clone())

    def forward(self, x):
        if not self.int8_layout:
            return self.vae.encode(x)
        v = self.vae
        h = v.enc_conv(x).permute(0, 2, 3, 1).flatten(1)
        return v.encode_features(F.relu(F.linear(h, self.fc1_weight, v.fc1.bias)))


class Decoder(nn.Module):
    """z [N,latent_dim] -> pixels [N,C,H,W] in [0, 1], the likelihood's mean (Bernoulli: the probabilities);
    the conv decoder's upsampling recast as Convs (PhaseUpsampler)."""

    def __init__(self, vae: VAE, int8_layout: bool = False):
        super().__init__()
        self.vae = vae
        self.up = PhaseUpsampler(vae.dec_conv, vae.feat, int8_layout) if PhaseUpsampler.fits(vae) else None
        self.int8_layout = int8_layout and self.up is not None
        if self.int8_layout:  # fc4's rows reordered to give (y, x, channel): see decoder_graph
            order = yxc_order(vae.feat)
            self.register_buffer("fc4_weight", vae.fc4.weight.detach()[order].clone())
            self.register_buffer("fc4_bias", vae.fc4.bias.detach()[order].clone())

    def logits(self, z):
        """vae.decode(z), computed without ConvTranspose where the decoder allows it."""
        if self.up is None:
            return self.vae.decode(z)
        v = self.vae
        h = F.relu(v.fc3(z))
        if self.int8_layout:
            c, hh, ww = v.feat
            return self.up(F.relu(F.linear(h, self.fc4_weight, self.fc4_bias)).view(-1, hh, ww, c).permute(0, 3, 1, 2))
        return self.up(F.relu(v.fc4(h)).view(-1, *v.feat))  # as VAE.decode, up to dec_conv

    def forward(self, z):
        return mean(self.logits(z), self.vae.likelihood)


# onnxruntime's ConvTranspose runs one small matrix product per image and then a col2im (slow: docs/performance.md);
# its Conv works on the whole batch in blocked layout; onnx's reference evaluator, which measures int8's error, runs
# ConvTranspose in Python loops (docs/export-and-int8.md); and the static int8 decoder is built on Convs.
# So the decoder's last two ConvTranspose2d(4, 2, 1) -> ReLU -> ConvTranspose2d(4, 2, 1) are exported as:
#   conv1: Conv2d 2x2, padding 1, 4*C1 channels (co, a, b): at (k, l) it holds the first layer's output
#          pixel (2k-a, 2l-b), the four sub-pixel phases of a stride-2 transposed conv, no zero weights;
#   ReLU, then a mask zeroing the (k, l) whose pixel falls outside the image (conv1's border);
#   conv2: Conv2d 2x2 on that phase form, 16*C channels (c, ry, rx): the second layer's output pixel
#          (4i+ry, 4j+rx), so the first layer's output is never interleaved;
#   DepthToSpace(4) (pixel_shuffle, CRD order) puts the 16 phases in place.
# A conv with more stages (train/model.py's rule: 64x64 has 3) first runs each earlier ConvTranspose2d(4, 2, 1) as
# a Conv2d 3x3, padding 1, 4*C channels (co, a, b) holding output pixel (2k+a, 2l+b), then DepthToSpace(2) and ReLU.
# Same sums as ConvTranspose2d, in another order: parity stays at float32 rounding (check_parity).

class PhaseUpsampler(nn.Module):
    """[ConvTranspose2d(4, 2, 1) -> ReLU ->] ConvTranspose2d(4, 2, 1) -> ReLU -> ConvTranspose2d(4, 2, 1) as
    [Conv2d, pixel_shuffle, ReLU ->] Conv2d, ReLU, mask, Conv2d, pixel_shuffle."""

    def __init__(self, dec_conv: nn.Sequential, feat: tuple[int, int, int], int8_layout: bool = False):
        super().__init__()
        *earlier, t1, t2 = dec_conv[::2]
        self.stages = nn.ModuleList(_stage_conv(t) for t in earlier)  # none with two stages (28x28)
        self.conv1 = _first_phase_conv(t1)
        self.conv2 = _second_phase_conv(t2)
        h, w = feat[1] << len(earlier), feat[2] << len(earlier)
        # (a, b, k, l), the same for every channel co: pixel (2k-a, 2l-b) must lie in [0, 2h) x [0, 2w)
        mask = torch.ones(2, 2, h + 1, w + 1)
        mask[0, :, h, :] = 0
        mask[1, :, 0, :] = 0
        mask[:, 0, :, w] = 0
        mask[:, 1, :, 0] = 0
        mask = mask.reshape(4, h + 1, w + 1)  # broadcast over co: 4(h+1)(w+1) floats
        # For int8, one mask per channel (co, a, b) multiplies conv1's output as it is: the Reshapes around the
        # small mask's Mul keep onnxruntime's int8 convolutions from staying in their NHWC layout.
        self.register_buffer("mask", mask.repeat(t1.out_channels, 1, 1) if int8_layout else mask)

    @staticmethod
    def fits(vae: VAE) -> bool:
        """True for the conv VAE's decoder layout, at any number of stages from 2 (the only one this rewrite knows)."""
        layers = list(getattr(vae, "dec_conv", []))
        shape_ok = lambda t: (isinstance(t, nn.ConvTranspose2d) and t.kernel_size == (4, 4)  # noqa: E731
                              and t.stride == (2, 2) and t.padding == (1, 1) and t.output_padding == (0, 0)
                              and t.dilation == (1, 1) and t.groups == 1 and t.bias is not None)
        return (len(layers) >= 3 and len(layers) % 2 == 1 and all(shape_ok(t) for t in layers[::2])
                and all(isinstance(r, nn.ReLU) for r in layers[1::2]))

    def forward(self, h):
        for stage in self.stages:
            h = F.relu(F.pixel_shuffle(stage(h), 2))
        h = F.relu(self.conv1(h))
        n, c, hh, ww = h.shape
        if self.mask.shape[0] == c:
            h = h * self.mask
        else:
            h = (h.view(n, c // 4, 4, hh, ww) * self.mask).view(n, c, hh, ww)
        return F.pixel_shuffle(self.conv2(h), 4)


def _stage_conv(t: nn.ConvTranspose2d) -> nn.Conv2d:
    """Output pixel (2k+a, 2l+b) of t at channel (co, a, b), position (k, l): a 3x3 Conv2d with padding 1."""
    return _phase_conv(t, 3, lambda a, u: a + 3 - 2 * u)  # ky = 2k + a + 1 - 2(k - 1 + u)


def _first_phase_conv(t: nn.ConvTranspose2d) -> nn.Conv2d:
    """Output pixel (2k-a, 2l-b) of t at channel (co, a, b), position (k, l): a 2x2 Conv2d with padding 1."""
    return _phase_conv(t, 2, lambda a, u: 3 - a - 2 * u)  # ky = 2k - a + 1 - 2(k - 1 + u)


@torch.no_grad()
def _phase_conv(t: nn.ConvTranspose2d, taps: int, k) -> nn.Conv2d:
    """The four phases (co, a, b) of t as a taps x taps Conv2d with padding 1: tap u reads input row k - 1 + u,
    which meets t's kernel row k(a, u) (pixel y = 2*i - 1 + ky takes input row i); none outside [0, 4)."""
    wt = t.weight  # [C_in, C_out, 4, 4]
    cin, cout = wt.shape[:2]
    w = wt.new_zeros(cout, 2, 2, cin, taps, taps)  # (co, a, b, ci, u, v)
    for a in range(2):
        for b in range(2):
            for u in range(taps):
                for v in range(taps):
                    if 0 <= k(a, u) < 4 and 0 <= k(b, v) < 4:
                        w[:, a, b, :, u, v] = wt[:, :, k(a, u), k(b, v)].T
    conv = nn.Conv2d(cin, 4 * cout, taps, padding=1)
    conv.weight.copy_(w.reshape(4 * cout, cin, taps, taps))
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

def to_onnx(module: nn.Module, example: torch.Tensor, input_name: str, output_names: list[str],
            opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """torch.onnx.export (dynamo) with a symbolic batch axis named "batch", at `opset`, with the lowest IR version."""
    proto = export_graph(module, (example,), [input_name], output_names, {input_name: {0: torch.export.Dim("batch")}},
                         opset)
    _name_batch_axis(proto)
    return lowest_ir(proto)


def export_graph(module: nn.Module, examples: tuple, input_names: list[str], output_names: list[str],
                 dynamic_shapes: dict, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """torch.onnx.export (dynamo) of module on examples, converted to `opset`; ExportError in one line."""
    if opset not in OPSETS:
        raise ExportError(f"cannot export at opset {opset}: vae-export writes opsets {OPSETS[0]} to {OPSETS[-1]} "
                          f"(default {DEFAULT_OPSET})")
    import onnxruntime as ort

    from vae_edge.runtime.compat import problem

    unreadable = problem(helper.find_min_ir_version_for([helper.make_opsetid("", opset)]), opset, ort.__version__)
    if unreadable:
        raise ExportError(f"opset {opset} files cannot be checked for parity here: {unreadable}")
    logging.disable(logging.WARNING)  # a failed opset conversion logs a traceback; we say it in one line
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # onnxscript's optimizer prints what it rewrote
            program = torch.onnx.export(module, examples, dynamo=True, verbose=False,
                                        input_names=input_names, output_names=output_names,
                                        dynamic_shapes=dynamic_shapes, opset_version=max(opset, NATIVE_OPSET))
    except Exception as e:  # the exporter raises many kinds; the user needs one line
        raise ExportError(f"torch.onnx.export failed: {one_line(e)}") from None
    finally:
        logging.disable(logging.NOTSET)
    proto = program.model_proto
    if opset_of(proto) != opset:
        try:
            proto = version_converter.convert_version(proto, opset)
        except Exception as e:
            raise ExportError(f"cannot convert this model to opset {opset}: {one_line(e)}") from None
    return proto


def opset_of(proto: onnx.ModelProto) -> int:
    """The model's ai.onnx opset."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def lowest_ir(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Stamp the lowest IR version that the model's opsets allow: newer IR versions lock out older runtimes."""
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    return proto


def rename_axes(proto: onnx.ModelProto, names: dict) -> None:
    """Symbolic dims named as vae.json says (batch, samples); a lone symbol on the first axis is the batch."""
    g = proto.graph
    for v in [*g.input, *g.output, *g.value_info]:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in names:
                d.dim_param = names[d.dim_param]
            elif d.dim_param and not names:
                d.dim_param = "batch"


def _name_batch_axis(proto: onnx.ModelProto) -> None:
    """Make the symbolic first axis of every graph input and output read "batch"."""
    g = proto.graph
    symbols = {v.type.tensor_type.shape.dim[0].dim_param for v in [*g.input, *g.output]} - {""}
    for v in [*g.input, *g.output, *g.value_info]:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in symbols:
                d.dim_param = "batch"


def encoder_graph(model: VAE, opset: int = DEFAULT_OPSET, int8_layout: bool = False) -> onnx.ModelProto:
    """encoder.onnx: x [batch, C, H, W] -> mu, logvar [batch, latent_dim].

    int8_layout=True (conv): the same function laid out for int8 convolutions, as the decoder's: the last conv's map
    is flattened in (y, x, channel) order and fc1's columns permuted to match, so that onnxruntime's int8
    convolution, which works in NHWC, hands its output to the Transpose here and cancels it instead of adding its own
    back to NCHW."""
    x = torch.rand((EXAMPLE_BATCH, *model.input_shape), generator=torch.Generator().manual_seed(0))
    return to_onnx(Encoder(model, int8_layout).eval(), x, "x", ["mu", "logvar"], opset)


def decoder_graph(model: VAE, opset: int = DEFAULT_OPSET, int8_layout: bool = False) -> onnx.ModelProto:
    """decoder.onnx: z [batch, latent_dim] -> x [batch, C, H, W], probabilities.

    int8_layout=True: the same function laid out for static int8 (export/int8_decoder.py), slower in float: fc4
    writes (y, x, channel) and a Transpose gives the first Conv its NCHW input (onnxruntime's int8 convolution works in
    NHWC and cancels that Transpose instead of adding its own), and the phase mask is a plain 4-D Mul."""
    z = torch.randn((EXAMPLE_BATCH, model.latent_dim), generator=torch.Generator().manual_seed(0))
    return to_onnx(Decoder(model, int8_layout).eval(), z, "z", ["x"], opset)

"""vae-export: a checkpoint in, a folder of ONNX files out; a thin layer over export_checkpoint."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from vae_edge.runtime.errors import fail

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False,
                  help="Export a VAE checkpoint to ONNX (encoder, decoder, vae.json), checked against PyTorch.")


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        fail(f"--input-shape must be C,H,W (three positive integers), got {text!r}")
    return shape


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def report(info: dict, out: Path) -> str:
    """The short report printed after an export."""
    lines = [f"wrote {out}/"]
    for f in info["files"].values():
        lines.append(f"  {f['path']:<26} {f['bytes']:>10,} bytes  {_size(f['bytes'])}")
    lines.append(f"  {'vae.json':<26} {(out / 'vae.json').stat().st_size:>10,} bytes")
    p = info["parity"]
    lines.append(f"parity vs PyTorch (max abs, batch sizes {', '.join(map(str, p['batch_sizes']))}; "
                 f"tolerance {p['tolerance']:g}): mu {p['mu']:.2g}, logvar {p['logvar']:.2g}, x {p['x']:.2g}")
    q = info.get("int8")
    if q and "method" in q:
        lines.append(f"int8 ({q['method']['encoder']} encoder, {q['method']['decoder']} decoder; {q['calibration']}) "
                     f"vs PyTorch, abs error max / mean: mu {q['mu_max_abs']:.2g} / {q['mu_mean_abs']:.2g}, "
                     f"x {q['x_max_abs']:.2g} / {q['x_mean_abs']:.2g} (the files' own, on every CPU)")
    if info.get("ort_format"):
        p = info["ort_format"]["parity"]
        lines.append(f"ORT format parity vs PyTorch (max abs): mu {p['mu']:.2g}, logvar {p['logvar']:.2g}, "
                     f"x {p['x']:.2g}; needs onnxruntime >= {info['ort_format']['made_by_onnxruntime']}")
    o = info["onnx"]
    lines.append(f"ONNX IR version {o['ir_version']}, opset {o['opset']}: "
                 f"runs on onnxruntime >= {o['min_onnxruntime']}")
    lines.append(f"sample: vae-sample --model {shlex.quote(str(out))} --n 64")
    return "\n".join(lines)


@app.command()
def main(
    model_pt: Path = typer.Argument(..., metavar="MODEL_PT", show_default=False,
                                    help="A checkpoint from vae-train, or a reference VAE state_dict (fc1..fc4)."),
    out: Path = typer.Option(Path("vae-onnx"), "--out", help="The folder to write."),
    input_shape: str = typer.Option("1,28,28", "--input-shape",
                                    help="Image shape C,H,W for a plain state_dict; a vae-train checkpoint "
                                         "records its own."),
    opset: Optional[int] = typer.Option(None, "--opset", show_default="17: onnxruntime >= 1.12 reads it",
                                        help="ONNX opset to write, 14 to 23; the files get the lowest IR version "
                                             "it allows, and vae.json records the oldest onnxruntime that reads them."),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="int8",
                                           help="Also write encoder.int8.onnx and decoder.int8.onnx: static "
                                                "(calibrated), mixed or dynamic int8, the fastest within the "
                                                "error bound."),
    calibration: Optional[str] = typer.Option(
        None, "--calibration", metavar="N|FILE.npy", show_default="512",
        help="int8: calibrate activation scales on N training images of the checkpoint's dataset, or on the "
             "images of an .npy (N, C, H, W) or (N, H, W), uint8 or float in [0, 1]."),
    force_int8: bool = typer.Option(False, "--force-int8",
                                    help="Write the int8 files even when their error against PyTorch is over the "
                                         "bound (mean abs: pixels 0.002, mu 0.02)."),
    ort: bool = typer.Option(False, "--ort", help="Also write each file in ORT format (.ort) with "
                                                  "required_operators.config, for onnxruntime's mobile and "
                                                  "minimal builds."),
    force: bool = typer.Option(False, "--force", help="Replace the output folder if it exists (an earlier export, "
                                                      "swapped so that a kill leaves the old or the new one)."),
) -> None:
    """Write encoder.onnx, decoder.onnx and vae.json with a dynamic batch, after a parity check."""
    from vae_edge.export import ExportError, export_checkpoint  # torch is slow to import: not for --help

    shape = _shape(input_shape)
    if not out.parent.is_dir():  # the project's run folders make their own; an output the user names does not
        fail(f"--out {out}: there is no folder {out.parent}; make it first")
    if quantize is not None and quantize != "int8":
        fail(f"--quantize takes int8, got {quantize!r}")
    try:
        info = export_checkpoint(model_pt, out, input_shape=shape, opset=opset, quantize=quantize,
                                 calibration=calibration, force_int8=force_int8, ort_format=ort, force=force,
                                 say=lambda line: typer.echo(line, err=True))
    except ExportError as e:
        fail(str(e))
    typer.echo(report(info, out))


if __name__ == "__main__":
    app()

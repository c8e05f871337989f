"""Command line: vae-sample, vae-encode, vae-decode and vae-info, on an exported model folder, without torch.

Bad input ends with one line `error: ...` on stderr and exit code 2; outputs are written to a
temporary file and renamed (outputs.py), so a failed command leaves no half-written file, and an output
path that is not a regular file, or whose folder is missing, is refused before any work.

Each command is a plain function whose defaults declare its options; the console scripts (`sample_main`, ...)
parse the command line with argparse (args.py), so a plain run imports numpy, onnxruntime and the standard
library, nothing else. The values go to the API unchecked: VAE.load, iter_samples and encode refuse bad ones;
this module checks only what is the command line's own (output paths, option combinations, --nrow).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import List, Optional

import numpy as np

from .. import __version__
from . import bundled, compat, prior, walk
from .args import Argument, Option, run
from .images import (image_format, save_grid, save_grid_and_npy, save_npy_chunks,
                     write_image_files, write_index, write_npy, write_npy_chunks, write_npy_rows)
from .errors import ModelFolderError, RuntimeInputError, fail
from .folder import PRECISIONS, read_folder, read_meta, verify_files
from .inputs import latents_like
from .model import DEFAULT_BATCH_SIZE, VAE
from .outputs import STDOUT, atomic_files, check_out_dir, check_output

# A PNG grid of more images than this is unreadable and costly; larger runs must use --npy.
MAX_GRID = 4096


_loaded: dict = {}  # the model the running command loaded (_load): what an out-of-memory message looks at


@contextmanager
def _errors():
    """Turn expected failures into `error: ...` on stderr and exit code 2."""
    _loaded.clear()
    try:
        yield
    except (RuntimeInputError, ModelFolderError) as e:
        fail(str(e))
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}")
    except MemoryError:
        fail(_out_of_memory(_loaded.get("vae")))


def _out_of_memory(vae: Optional[VAE]) -> str:
    """A smaller --batch-size or --n is the way out, unless one image of the model alone needs more than this
    process may hold: then vae.json's sizes are the cause (a damaged or hostile folder), and no option helps."""
    if vae is not None:
        c, h, w = vae.input_shape
        one = 8 * vae.latent_dim + 4 * c * h * w  # an image's noise (float64, as numpy draws it) and its pixels
        if one > _memory_limit():
            return (f"out of memory: {vae.folder} needs {one} bytes for one image (vae.json's input_shape "
                    f"{list(vae.input_shape)} and latent_dim {vae.latent_dim}), more than this process may use; "
                    f"the model folder is at fault")
    return "out of memory; lower --batch-size or --n"


def _memory_limit() -> float:
    """The memory this process may use: the machine's, or less where its address-space limit says so."""
    try:
        import resource

        limit = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        return min(limit, soft) if soft != resource.RLIM_INFINITY else limit
    except (ImportError, ValueError, OSError):  # not a Unix: no way to know, so no blame on the folder
        return float("inf")


def _echo(text: str, file=None) -> None:
    """One line, in one write, so a reader that quits early sees whole lines."""
    file = file or sys.stdout
    file.write(f"{text}\n")
    file.flush()




def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise RuntimeInputError(msg)


def _check_nrow(nrow: int) -> None:
    _check(nrow >= 1, f"--nrow must be >= 1, got {nrow}")


def _outputs(out: Optional[Path], npy: Optional[Path], default_png: str, n: Optional[int],
             out_dir: Optional[Path] = None, force: bool = False) -> Optional[Path]:
    """The PNG path to write: --out, else default_png unless only --npy or --out-dir was asked for. Each output is
    checked here, before anything is loaded or written."""
    png = out if out is not None else (Path(default_png) if npy is None and out_dir is None else None)
    if png is not None:
        image_format(png)
        if n is not None and n > MAX_GRID:
            raise RuntimeInputError(f"{n} images are too many for one image grid (at most {MAX_GRID}); "
                                    f"write them with --npy FILE or --out-dir DIR alone")
    if png is not None and npy is not None and os.path.abspath(png) == os.path.abspath(npy):
        raise RuntimeInputError("--out and --npy name the same file")
    if png is not None:
        check_output(png, "--out")
    _check_npy_output(npy, "--npy")
    _check(out_dir is not None or not force, "--force writes into a folder that holds files: use it with --out-dir")
    if out_dir is not None:
        check_out_dir(out_dir, "--out-dir", force)
    return png


def _check_npy_output(path: Optional[Path], option: str) -> None:
    if path is None:
        return
    if not _is_stdout(path):
        check_output(path, option)
    elif sys.stdout.isatty():
        raise RuntimeInputError(f"{option} - writes binary .npy to standard output, which is a terminal; "
                                f"pipe it or redirect it to a file")


def _write_images(chunks, shape: tuple, png: Optional[Path], npy: Optional[Path], nrow: int,
                  out_dir: Optional[Path] = None) -> str:
    """Write decoded chunks as a PNG grid, .npy (- is standard output) and/or one PNG per image in out_dir; streamed
    when there is no grid."""
    if out_dir is not None:
        chunks = write_image_files(chunks, out_dir, shape[0])
    to_stdout = _is_stdout(npy)
    if png is None and npy is None:
        for _ in chunks:  # the files are written as the chunks pass
            pass
    elif png is None and npy is not None:
        if to_stdout:
            write_npy_chunks(sys.stdout.buffer, chunks, shape)
        else:
            save_npy_chunks(chunks, npy, shape)
    elif png is not None:
        x = np.concatenate(list(chunks))
        if npy is None or to_stdout:
            save_grid(x, png, nrow=nrow)
            if to_stdout:
                write_npy(sys.stdout.buffer, x)
        else:
            save_grid_and_npy(x, png, npy, nrow=nrow)
    names = [_name(p) for p in (png, npy) if p is not None]
    return ", ".join(names + ([f"{out_dir}/ ({shape[0]} PNG files)"] if out_dir is not None else []))


def _write_rows(named: walk.Chunks, out: Path, index: Optional[Path], column: str, row_shape: tuple) -> int:
    """Rows (of a count known only at the end) into the .npy out, their names into index (CSV), published together
    by the one atomic write; for out -, the rows are spooled to a temporary file and sent once all are written.
    Returns the count."""
    to_stdout = _is_stdout(out)
    targets = [p for p in (None if to_stdout else out, index) if p is not None]
    with atomic_files(*targets) as files, (tempfile.TemporaryFile() if to_stdout else nullcontext(files[0])) as array:
        rows = write_index(files[-1], named, column) if index is not None else (x for _, x in named)
        n = write_npy_rows(array, rows, row_shape)
        if to_stdout:
            array.seek(0)
            shutil.copyfileobj(array, sys.stdout.buffer)
    return n


def _index_path(out: Path, index: Optional[Path]) -> Optional[Path]:
    """--index, else NAME.index.csv beside --out NAME.npy; none for standard output unless asked for."""
    if index is None and not _is_stdout(out):
        stem = out.name[:-4] if out.name.lower().endswith(".npy") else out.name
        index = out.with_name(f"{stem}.index.csv")
    if index is not None:
        same = not _is_stdout(out) and os.path.abspath(index) == os.path.abspath(out)
        _check(not same, "--out and --index name the same file")
        check_output(index, "--index")
    return index


def _is_stdout(path: Optional[Path]) -> bool:
    return path is not None and str(path) == STDOUT


def _name(path: Path) -> str:
    return "standard output" if _is_stdout(path) else str(path)


def _report(text: str, outputs: tuple) -> None:
    """The closing line: on stdout, unless an array went there."""
    _echo(text, sys.stderr if any(map(_is_stdout, outputs)) else None)


def _close(line: str, walked: walk.Walk, quiet: bool, outputs: tuple) -> None:
    """The closing line with the count of files skipped; with --quiet, that count alone (on stderr), if any."""
    if not quiet:
        _report(line + walked.skips(), outputs)
    elif walked.skipped:
        _echo(walked.skips().removeprefix("; "), sys.stderr)


def _load(model: Optional[str], precision: str, threads: Optional[int], batch_size: int, provider: str,
          decoder_only=False) -> VAE:
    vae = VAE.load(model, precision=precision, threads=threads, providers=[provider], batch_size=batch_size,
                   decoder_only=decoder_only)
    _loaded["vae"] = vae
    return vae


def _using(vae: VAE) -> None:
    """Which model runs, when it is the bundled one: said once the API has taken the arguments, so that a refused
    argument is the only line."""
    if vae.bundled:
        _echo(f"using the bundled model {vae.bundled} (vae-info --list; --model FOLDER for your own)", sys.stderr)


MODEL_OPT = Option(None, "--model", "-m",
                   help="Model folder (made by vae-export), or the name of a bundled model (vae-info --list). "
                        "Default: ./vae-onnx if it exists, else the bundled fashion-mnist model.")
PRECISION_OPT = Option("fp32", "--precision", help="fp32, or int8 where the export wrote int8 files.")
THREADS_OPT = Option(None, "--threads", help="onnxruntime intra-op threads (default: onnxruntime decides).")
PROVIDER_OPT = Option("CPUExecutionProvider", "--provider",
                      help="onnxruntime execution provider; one it lists but cannot use here is an error.")
BATCH_OPT = Option(DEFAULT_BATCH_SIZE, "--batch-size", help="Images per onnxruntime call; bounds memory.")
NROW_OPT = Option(8, "--nrow", help="Images per row of the grid.")
GLOB_OPT = Option(None, "--glob", help="In folders, the files whose path below the folder matches this pattern "
                                       "(* crosses /), e.g. '*.png'.")
STRICT_OPT = Option(False, "--strict", help="Stop at the first unreadable file (exit 2) instead of skipping it.")
QUIET_OPT = Option(False, "--quiet", "-q", help="No progress line and no closing line.")
OUT_DIR_OPT = Option(None, "--out-dir", help="Also write each image as its own PNG in this folder, named by row "
                                             "(00000.png, ...); made if missing, refused if it holds files.")
FORCE_OPT = Option(False, "--force", help="With --out-dir: write into a folder that holds files, replacing those of "
                                          "the same names.")


def sample(
    n: int = Option(64, "--n", "-n", help="Number of images to sample."),
    model: Optional[str] = MODEL_OPT,
    out: Optional[Path] = Option(
        None, "--out", "-o", help="Image grid to write (default: samples.png; none when only --npy or --out-dir is "
                                  f"given). At most {MAX_GRID} images."),
    npy: Optional[Path] = Option(
        None, "--npy", help="Also write the images as float32 (n, C, H, W) .npy (- for standard output); streamed "
                            "in chunks when no grid is written, so any n fits in memory."),
    out_dir: Optional[Path] = OUT_DIR_OPT,
    force: bool = FORCE_OPT,
    seed: int = Option(0, "--seed", help="Seed of the noise that draws z (docs/noise.md): Python's, JavaScript's and "
                                         "C's z alike."),
    temperature: float = Option(1.0, "--temperature", "-t", help="z = temperature * N(0, I)."),
    nrow: int = NROW_OPT,
    precision: str = PRECISION_OPT,
    threads: Optional[int] = THREADS_OPT,
    provider: str = PROVIDER_OPT,
    batch_size: int = BATCH_OPT,
) -> None:
    """Decode n random latents to images: a PNG grid (--out), an .npy array (--npy) and/or PNG files (--out-dir)."""
    with _errors():
        _check_nrow(nrow)
        png = _outputs(out, npy, "samples.png", n, out_dir, force)
        vae = _load(model, precision, threads, batch_size, provider, decoder_only=True)  # no encoder needed
        chunks = vae.iter_samples(n, seed=seed, temperature=temperature)  # checks n, seed and temperature now
        _using(vae)
        written = _write_images(chunks, (n, *vae.input_shape), png, npy, nrow, out_dir)
        _report(f"wrote {n} samples to {written}", (npy,))


def encode(
    inputs: List[str] = Argument(
        ..., metavar="INPUTS",
        help="Image files and folders (walked recursively: image suffixes, or --glob), converted to the model's "
             "channels and resized to its H x W; or one .npy of shape (N, C, H, W) or (N, C*H*W), float in [0, 1] "
             "or uint8 in [0, 255] (- reads it from standard input)."),
    out: Path = Option(Path("latents.npy"), "--out", "-o",
                      help="Latents to write, float32 (N, latent_dim) .npy (- for standard output, once all are "
                           "encoded)."),
    index: Optional[Path] = Option(
        None, "--index", help="Which row came from which file: CSV, a path (or an .npy's row index) per row. "
                              "Default: NAME.index.csv beside --out NAME.npy; none for --out - unless given."),
    model: Optional[str] = MODEL_OPT,
    sample: bool = Option(False, "--sample", help="Write z = mu + exp(logvar / 2) * eps instead of mu."),
    seed: int = Option(0, "--seed", help="Seed of the noise that draws eps for --sample (docs/noise.md)."),
    glob: Optional[str] = GLOB_OPT,
    strict: bool = STRICT_OPT,
    quiet: bool = QUIET_OPT,
    precision: str = PRECISION_OPT,
    threads: Optional[int] = THREADS_OPT,
    provider: str = PROVIDER_OPT,
    batch_size: int = BATCH_OPT,
) -> None:
    """Encode images to latents: mu by default, or a reparameterized sample with --sample. Images stream in chunks
    of --batch-size, so memory stays bounded whatever their count."""
    with _errors():
        walk.is_npy(inputs)  # a mix of .npy and images refused before any work
        if out.suffix.lower() in (".png", ".jpg", ".jpeg"):
            raise RuntimeInputError(f"--out {out} is an image name; latents are written as .npy")
        _check_npy_output(out, "--out")
        index = _index_path(out, index)
        vae = _load(model, precision, threads, batch_size, provider)
        _using(vae)
        walked = walk.Walk(inputs, glob, vae.input_shape, batch_size, strict, quiet, "vae-encode",
                           vae.background)
        # the seed goes to encode with or without --sample, which refuses a bad one either way
        encoded = walked.map(lambda x, start: vae.encode(x, sample=True, seed=seed, start=start) if sample
                             else vae.encode(x, seed=seed)[0])
        n = _write_rows(encoded, out, index, "index" if walked.npy else "path", (vae.latent_dim,))
        also = f" (rows named in {index})" if index is not None else ""
        _close(f"wrote {'sampled z' if sample else 'mu'} of shape {(n, vae.latent_dim)} to {_name(out)}{also}",
               walked, quiet, (out,))


def decode(
    latents: str = Argument(..., metavar="LATENTS.npy",
                            help="An .npy of latents, float (N, latent_dim) (- reads it from standard input)."),
    out: Optional[Path] = Option(
        None, "--out", "-o", help="Image grid to write (default: grid.png; none when only --npy or --out-dir is "
                                  f"given). At most {MAX_GRID} images."),
    npy: Optional[Path] = Option(
        None, "--npy", help="Also write the images as float32 (N, C, H, W) .npy (- for standard output); streamed "
                            "in chunks when no grid is written."),
    out_dir: Optional[Path] = OUT_DIR_OPT,
    force: bool = FORCE_OPT,
    model: Optional[str] = MODEL_OPT,
    nrow: int = NROW_OPT,
    precision: str = PRECISION_OPT,
    threads: Optional[int] = THREADS_OPT,
    provider: str = PROVIDER_OPT,
    batch_size: int = BATCH_OPT,
) -> None:
    """Decode latents to images: a PNG grid (--out), an .npy array (--npy) and/or PNG files (--out-dir)."""
    with _errors():
        _check_nrow(nrow)
        shape, dtype, rows = walk.npy_rows(latents, batch_size)
        png = _outputs(out, npy, "grid.png", shape[0] if shape else None, out_dir, force)
        vae = _load(model, precision, threads, batch_size, provider, decoder_only=True)
        latents_like(shape, dtype, vae.latent_dim)  # before any row is read
        _using(vae)
        chunks = (x for z in rows for x in vae.iter_decode(z))
        written = _write_images(chunks, (shape[0], *vae.input_shape), png, npy, nrow, out_dir)
        _report(f"decoded {shape[0]} latents to {written}", (npy,))


def requirement(meta: dict) -> str:
    """What the files need, against what is installed: 'onnxruntime >= 1.12 (installed: 1.32.0, ok)'."""
    import onnxruntime

    onnx_facts: dict = meta["onnx"] if isinstance(meta.get("onnx"), dict) else {}
    need = onnx_facts.get("min_onnxruntime")
    if not need:
        return f"not recorded (exported before vae-edge recorded it); opset {meta.get('opset')}"
    ok = compat.parse_version(onnxruntime.__version__) >= compat.parse_version(need)
    return f"onnxruntime >= {need} (installed: {onnxruntime.__version__}, {'ok' if ok else 'TOO OLD'})"


def recorded_iwae(meta: dict) -> dict | None:
    """vae.json's metrics.iwae (vae-eval FOLDER --record) where it holds a figure, else None."""
    m = meta.get("metrics")
    iwae = m.get("iwae") if isinstance(m, dict) else None
    return iwae if isinstance(iwae, dict) and isinstance(iwae.get("nll"), (int, float)) else None


def likelihood(meta: dict) -> str:
    """metrics.iwae in one line: '226.10 nats (IWAE k=5000, 10000 test images, ...)'."""
    iwae = recorded_iwae(meta)
    if iwae is None:
        return "not recorded (vae-eval FOLDER --iwae-k 5000 --record computes it)"
    images, of = iwae.get("images"), iwae.get("test_images")
    which = (f"the first {images} of {of}" if isinstance(of, int) and isinstance(images, int) and images < of
             else f"{images}")  # vae-eval --record --limit: a figure on part of the test set says so
    return (f"{iwae['nll']:.2f} nats = -log p(x) per image (IWAE k={iwae.get('k')}, {which} "
            f"{iwae.get('split', 'test')} images; {iwae.get('route', '?')}; {iwae.get('seconds', '?')} s on "
            f"{iwae.get('cpu', '?')})")


def _fmt(v) -> str:
    if isinstance(v, dict) and v:
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    if isinstance(v, float):
        return f"{v:.6g}"
    return "-" if v is None or v == {} else str(v)


def info(
    model: Optional[str] = MODEL_OPT,
    as_json: bool = Option(False, "--json", help="Print vae.json as JSON instead of a summary."),
    list_bundled: bool = Option(False, "--list", help="List the models bundled with the package: metrics, sizes."),
    version: bool = Option(False, "--version", help="Print the version of vae-edge and exit."),
) -> None:
    """Print the model's metadata, verify each file's sha256, and check encoder and decoder agree."""
    with _errors():
        if version:
            return _echo(f"vae-edge {__version__}")
        if list_bundled:
            return _list_bundled()
        where, _ = bundled.resolve(model)
        folder = read_folder(where).keeping()  # vae.json read once, each file read and hashed once
        meta = folder.meta
        if as_json:
            _echo(json.dumps(meta, indent=2, sort_keys=True))
        else:
            _echo(f"folder:   {where}")
            _echo(f"format:   {meta['format']} v{meta['format_version']}")
            _echo(f"prior:    {prior.describe(meta)}")
            _echo(f"nll:      {likelihood(meta)}")
            for key in ("model", "dataset", "metrics", "onnx", "versions", "parity", "int8"):
                value = meta.get(key)
                if key == "metrics" and isinstance(value, dict):  # its iwae has the line above
                    value = {k: v for k, v in value.items() if k != "iwae"}
                _echo(f"{key + ':':<9} {_fmt(value)}")
            _echo(f"needs:    {requirement(meta)}")
            _echo("files:")
        checks = verify_files(folder)
        if not as_json:
            for key, path, problem in checks:
                entry = meta["files"][key]
                size = entry.get("bytes", "?") if isinstance(entry, dict) else "?"
                digest = str(entry.get("sha256", "?"))[:16] if isinstance(entry, dict) else "?"
                _echo(f"  {key:<13} {path}  {size} bytes  sha256 {digest}...  "
                           f"{'ok' if problem is None else 'MISMATCH'}")
        bad = [problem for _, _, problem in checks if problem is not None]
        if bad:
            raise ModelFolderError(f"{len(bad)} of {len(checks)} files failed verification: {bad[0]}")
        # Hashes only prove the files are the exported ones; loading proves they fit together.
        for precision, keys in PRECISIONS.items():
            if all(folder.has(k) for k in keys):
                VAE.load(folder, precision=precision)
        if not as_json:
            _echo(f"ok: {len(checks)} files verified")


def _list_bundled() -> None:
    names = bundled.names()
    if not names:
        _echo("no bundled models in this installation")
    for name in names:
        meta = read_meta(bundled.path(name))
        m, metrics = meta["model"], meta.get("metrics") or {}
        sizes = ", ".join(f"{f['path']} {f['bytes'] / 2**20:.2f} MiB" for f in meta["files"].values())
        scores = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if k.startswith("test_") and isinstance(v, float))
        iwae = recorded_iwae(meta)
        if iwae is not None:
            scores += f", NLL {iwae['nll']:.2f} (IWAE k={iwae.get('k')})"
        _echo(f"{name}{' (default)' if name == bundled.DEFAULT else ''}: {m['arch']} VAE, "
              f"{'x'.join(map(str, m['input_shape']))} images, latent_dim {m['latent_dim']}, "
              f"trained on {meta.get('dataset')}; {scores}")
        _echo(f"  {bundled.path(name)}: {sizes}")


def sample_main() -> None:
    run(sample)


def encode_main() -> None:
    run(encode)


def decode_main() -> None:
    run(decode)


def info_main() -> None:
    run(info)

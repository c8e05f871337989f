"""Trained models side by side: export sizes and decoder throughput, for the README's model-quality table, and int8
against fp32 per graph and batch (docs/export-and-int8.md).

For each export folder (from vae-export --quantize int8): the bytes of each file, images/s of VAE.decode
at batch 1024 in fp32 and int8, and of VAE.sample(1024) in fp32 (noise, prior.onnx where the folder has one,
then the decoder: what a user's sample call costs), measured in interleaved rounds in one run, with each
model's ratio to the first folder's. Then, in a second run, encode and decode in fp32 and int8 at batch 1, 64
and 1024 (images on the model's own pixel rule: 0/1 bits for a binarized model), and int8's speed-up.
onnxruntime's threads do not spin: sessions timed in turn would otherwise steal each other's cores.
    python bench/models.py FOLDER [FOLDER ...] [--threads N] [--seconds S] [--int8-seconds S]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OtherLoad, header, interleaved, load_before, median, rate, ratio, table  # noqa: E402

from vae_edge.runtime import VAE, read_folder, sessions  # noqa: E402

BATCH = 1024
FILES = ("encoder", "decoder", "encoder_int8", "decoder_int8", "prior", "score")
INT8_BATCHES = (1, 64, 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--int8-seconds", type=float, default=30.0, help="the int8 table's budget (0: no table)")
    args = ap.parse_args()
    sessions.SESSION_CONFIG = {**sessions.SESSION_CONFIG, "session.intra_op.allow_spinning": "0"}
    print(header("Model sizes and decoder throughput", "onnxruntime"))
    print(load_before())
    rng = np.random.default_rng(0)
    fns, sizes = {}, {}
    for folder in args.folders:
        meta = json.loads((folder / "vae.json").read_text())
        sizes[folder] = {k: f["bytes"] for k, f in meta["files"].items()}
        z = rng.standard_normal((BATCH, int(meta["model"]["latent_dim"])), dtype=np.float32)
        for precision in ("fp32", "int8"):
            vae = VAE.load(folder, precision=precision, threads=args.threads, batch_size=BATCH)
            fns[(folder, precision)] = lambda vae=vae, z=z: vae.decode(z)
        vae = VAE.load(folder, threads=args.threads, batch_size=BATCH)
        fns[(folder, "sample")] = lambda vae=vae: vae.sample(BATCH, seed=0)
    load = OtherLoad()
    times = interleaved(fns, args.seconds)
    print(f"Other processes' CPU use during the measurement: {load.text()}\n")
    base = BATCH / (median(times[(args.folders[0], "fp32")]) / 1e9)
    sample_base = BATCH / (median(times[(args.folders[0], "sample")]) / 1e9)
    rows = []
    for folder in args.folders:
        s = sizes[folder]
        speed = {p: BATCH / (median(times[(folder, p)]) / 1e9) for p in ("fp32", "int8", "sample")}
        rows.append([str(folder), *(f"{s[k] / 1e6:.2f} MB" if k in s else "-" for k in FILES),
                     f"{sum(s.values()) / 1e6:.2f} MB", rate(speed["fp32"]), rate(speed["int8"]),
                     ratio(speed["fp32"] / base), rate(speed["sample"]), ratio(speed["sample"] / sample_base)])
    print(table(["export", "encoder", "decoder", "encoder int8", "decoder int8", "prior", "score", "all files",
                 f"decode img/s fp32 (batch {BATCH})", "int8", "fp32 vs first", f"sample({BATCH}) img/s fp32",
                 "vs first"], rows))
    if args.int8_seconds > 0:
        print("\n" + int8_table(args.folders, args.threads, args.int8_seconds))


def int8_table(folders: list[Path], threads: int | None, seconds: float) -> str:
    """encode and decode, fp32 and int8, at each of INT8_BATCHES, interleaved in one run: images/s and int8's ratio."""
    rng = np.random.default_rng(1)
    fns = {}
    for folder in folders:
        vaes = {p: VAE.load(folder, precision=p, threads=threads, batch_size=BATCH) for p in ("fp32", "int8")}
        grey = rng.random((BATCH, *vaes["fp32"].input_shape), dtype=np.float32)
        binarized = read_folder(folder).binarized
        x = (rng.random(grey.shape, dtype=np.float32) < grey).astype(np.float32) if binarized else grey
        z = rng.standard_normal((BATCH, vaes["fp32"].latent_dim), dtype=np.float32)
        for precision, vae in vaes.items():
            for b in INT8_BATCHES:
                fns[(folder, "encode", b, precision)] = lambda vae=vae, x=x[:b]: vae.encode(x)
                fns[(folder, "decode", b, precision)] = lambda vae=vae, z=z[:b]: vae.decode(z)
    load = OtherLoad()
    times = interleaved(fns, seconds)
    rows = []
    for folder in folders:
        for graph in ("encode", "decode"):
            for b in INT8_BATCHES:
                speed = {p: b / (median(times[(folder, graph, b, p)]) / 1e9) for p in ("fp32", "int8")}
                rows.append([str(folder), graph, str(b), rate(speed["fp32"]), rate(speed["int8"]),
                             ratio(speed["int8"] / speed["fp32"])])
    return (f"int8 against fp32 (spinning off; other processes' CPU use: {load.text()})\n\n"
            + table(["export", "graph", "batch", "img/s fp32", "img/s int8", "int8 vs fp32"], rows))


if __name__ == "__main__":
    main()

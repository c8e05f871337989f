"""Trained models side by side: export sizes and decoder throughput, for the README's model-quality table.

For each export folder (from vae-export --quantize int8): the bytes of each file, images/s of VAE.decode
at batch 1024 in fp32 and int8, and of VAE.sample(1024) in fp32 (noise, prior.onnx where the folder has one,
then the decoder: what a user's sample call costs), measured in interleaved rounds in one run, with each
model's ratio to the first folder's.
    python bench/models.py FOLDER [FOLDER ...] [--threads N] [--seconds S]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OtherLoad, header, interleaved, load_before, median, rate, ratio, table  # noqa: E402

from vae_edge.runtime import VAE  # noqa: E402

BATCH = 1024
FILES = ("encoder", "decoder", "encoder_int8", "decoder_int8", "prior", "score")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()

"""The noise's share of the bundled model's fp32 sample(1024): today's generator (docs/noise.md) against the one
before it (numpy's default_rng, eps from SeedSequence(seed), u from a spawned stream), both timed in one run.

Each route is timed whole (noise, prior.onnx, decoder) and its noise alone, in interleaved rounds (bench/common.py),
with onnxruntime's threads told not to spin, so that a spinning pool does not steal the core the noise runs on; the
noise's CPU time too (one thread: on a quiet machine its wall time).
A fresh seed each call. Prints a markdown table of medians over --repeats runs of the whole measurement.
    nice -n 10 python bench/noise.py [--seconds 20] [--repeats 3]
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

import common
from vae_edge.runtime import VAE, bundled, random, sessions

N = 1024


def old_noise(seed: int, latent: int, temperature: float = 1.0):
    """eps and u as 0.2's development builds drew them (runtime/prior.py's Noise before docs/noise.md)."""
    seq = np.random.SeedSequence(seed)
    eps = np.random.default_rng(seq).standard_normal((N, latent)) * temperature
    return eps, np.random.default_rng(seq.spawn(1)[0]).random(N)


def new_noise(seed: int, latent: int, temperature: float = 1.0):
    """eps and u as sample() draws them now (runtime/model.py's _iter_samples, one batch of N)."""
    return (random.scaled(random.gaussian(N * latent, seed), temperature).reshape(N, latent),
            random.uniform(N, seed))


def measure(vae: VAE, seconds: float) -> dict:
    seeds = itertools.count(12345)
    d = vae.latent_dim

    def sample_with(noise):
        eps, u = noise(next(seeds), d)
        return vae._decode_chunk(vae._prior.z(eps, u))  # what _iter_samples does with one batch

    times = common.interleaved({
        "before: sample(1024)": lambda: sample_with(old_noise),
        "before: its noise": lambda: old_noise(next(seeds), d),
        "now: sample(1024)": lambda: vae.sample(N, seed=next(seeds)),
        "now: its noise": lambda: new_noise(next(seeds), d),
    }, seconds)
    out = {k: common.median(v) for k, v in times.items()}
    for route, noise in (("before", old_noise), ("now", new_noise)):  # CPU time: what preemption leaves out
        t0 = time.process_time()
        for _ in range(50):
            noise(next(seeds), d)
        out[f"{route}: its noise, CPU"] = (time.process_time() - t0) / 50 * 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="timing budget of one measurement")
    ap.add_argument("--repeats", type=int, default=3, help="measurements; the table shows their medians")
    args = ap.parse_args()
    sessions.SESSION_CONFIG = {**sessions.SESSION_CONFIG, "session.intra_op.allow_spinning": "0"}
    vae = VAE.load(bundled.path(bundled.DEFAULT))
    assert vae.batch_size >= N and vae.prior == "vamp"  # one batch, through prior.onnx
    print(common.header("The noise's share of sample(1024), bundled model, fp32", "numpy", "onnxruntime"))
    print(common.load_before())
    load = common.OtherLoad()
    runs = [measure(vae, args.seconds) for _ in range(args.repeats)]
    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    rows = []
    for route in ("before", "now"):
        call, noise = med[f"{route}: sample(1024)"], med[f"{route}: its noise"]
        spread = [r[f"{route}: its noise"] / r[f"{route}: sample(1024)"] for r in runs]
        rows.append([route, common.us(call), common.us(noise), f"{noise / call:.1%}",
                     f"{min(spread):.1%} - {max(spread):.1%}", common.us(med[f"{route}: its noise, CPU"])])
    print(common.table(["noise", "sample(1024)", "its noise", "share", f"share in each of {args.repeats} runs",
                        "its noise, CPU time"], rows))
    print(f"Other processes' CPU use during the runs: {load.text()}.")


if __name__ == "__main__":
    main()

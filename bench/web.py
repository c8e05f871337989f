"""The sampler in JavaScript: decode latency in headless Chromium (onnxruntime-web, WebAssembly, 1 and 2 threads)
and in Node (onnxruntime-node), next to the Python runtime on the same model in the same run; and the size of the
site that `make web` assembles.

The model is the one `make web` uses: runtime/models/fashion-mnist if the package ships it, else vae-onnx/
(`make demo`), or --model. All variants decode the same z, in interleaved rounds (each round runs every variant
for a block of time), so that load from elsewhere on the machine hits them all alike; the other processes'
CPU use over the run is printed, and the figures should be taken again when it is high. The pages are served
cross-origin isolated, so that performance.now() resolves 5 µs; the thread count is set per page (?threads=N).
Needs web/node_modules (make web-deps) and Chromium.
    python bench/web.py [--model DIR] [--seconds S] [--rounds R]
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OtherLoad, cores, header, load_before, median, p99, rate, ratio, table, us  # noqa: E402

from vae_edge.runtime import VAE  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"
MODELS = [REPO / "runtime" / "models" / "fashion-mnist", REPO / "vae-onnx"]
BATCHES = (1, 64)
THREADS = (1, 2)
SEED = 0


def default_model() -> Path:
    for folder in MODELS:
        if (folder / "vae.json").is_file():
            return folder
    sys.exit("error: no model: run `make demo` (writes vae-onnx/) or pass --model")


def python_times(vae: VAE, z: np.ndarray, seconds: float) -> list[int]:
    """Per-call ns of vae.decode(z) for about `seconds`, after one untimed call (as tools/bench.mjs does)."""
    vae.decode(z)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t0 = time.perf_counter_ns()
        vae.decode(z)
        times.append(time.perf_counter_ns() - t0)
    return times


class JS:
    """tools/bench.mjs: Chromium pages and Node, answering one timing request a line."""

    def __init__(self, site: Path, model: Path):
        self.proc = subprocess.Popen(["node", "tools/bench.mjs", "--site", str(site), "--model", str(model),
                                      "--threads", ",".join(map(str, THREADS))],
                                     cwd=WEB, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.facts = self._read()["ready"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"error: tools/bench.mjs stopped (exit {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            sys.exit(f"error: {reply['error']}")
        return reply

    def times(self, target: str, z: np.ndarray, seconds: float) -> list[int]:
        self.proc.stdin.write(json.dumps({"target": target, "z": z.ravel().tolist(), "n": len(z),
                                          "seconds": seconds}) + "\n")
        self.proc.stdin.flush()
        return self._read()["ns"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def build_site(model: Path, out: Path) -> dict:
    subprocess.run(["node", "build.mjs", "--model", str(model), "--out", str(out)], cwd=WEB, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((out / "build.json").read_text())


def gzipped(folder: Path) -> int:
    """What the site weighs sent with gzip (level 6, as most static servers do)."""
    return sum(len(gzip.compress(p.read_bytes(), 6)) for p in folder.rglob("*") if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="export folder (default: the bundled model, else vae-onnx/)")
    p.add_argument("--seconds", type=float, default=0.4, help="measuring time per variant per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = p.parse_args()
    model = (args.model or default_model()).resolve()

    print(header("Decode in JavaScript against the Python runtime", "onnxruntime", "numpy"))
    print()
    print(load_before())
    probe = OtherLoad()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        info = build_site(model, site)
        gz = gzipped(site)
        js = JS(site, model)
        try:
            vae = {t: VAE.load(model, threads=t) for t in THREADS}
            latent = vae[1].latent_dim
            rng = np.random.default_rng(SEED)
            z = {b: rng.standard_normal((b, latent), dtype=np.float32) for b in BATCHES}
            variants = {f"{kind}-{t}": (kind, t) for t in THREADS for kind in ("python", "browser", "node")}
            times = {(v, b): [] for v in variants for b in BATCHES}
            for _ in range(args.rounds):
                for b in BATCHES:
                    for v, (kind, t) in variants.items():
                        got = (python_times(vae[t], z[b], args.seconds) if kind == "python"
                               else js.times(v, z[b], args.seconds))
                        times[v, b] += got
        finally:
            js.close()

    arch = json.loads((model / "vae.json").read_text())["model"]
    browser = js.facts["targets"]["browser-1"]
    print(f"Model: {model.relative_to(REPO) if model.is_relative_to(REPO) else model} ({arch['arch']}, "
          f"{'x'.join(map(str, arch['input_shape']))}, latent_dim {arch['latent_dim']}, fp32). Browser: "
          f"{browser['userAgent'].split(') ')[-1]}, headless, onnxruntime-web {info['onnxruntime_web']} (WebAssembly, "
          f"SIMD), page cross-origin isolated; Node {js.facts['node']}, onnxruntime-node; "
          f"{args.rounds} rounds x {args.seconds} s per variant and batch.")
    print()
    names = {"python": "Python runtime (onnxruntime)", "browser": "Chromium, onnxruntime-web wasm",
             "node": "Node, onnxruntime-node"}
    rows = []
    for v, (kind, t) in variants.items():
        base1, base64 = median(times[f"python-{t}", 1]), median(times[f"python-{t}", 64])
        m1, m64 = median(times[v, 1]), median(times[v, 64])
        rows.append([names[kind], t, us(m1), us(p99(times[v, 1])), ratio(m1 / base1),
                     us(m64), rate(64 / (m64 / 1e9)), ratio(m64 / base64)])
    print(table(["decode", "threads", "batch 1 median", "p99", "vs Python", "batch 64 median", "img/s",
                 "vs Python"], rows))
    print()
    mb = lambda b: f"{b / 1e6:.2f} MB"  # noqa: E731
    sizes = info["bytes"]
    print(f"Site (`make web`): {mb(sizes['total'])} in all, {mb(gz)} gzipped: onnxruntime-web {mb(sizes['ort'])} "
          f"(ort.wasm.min.mjs, ort-wasm-simd-threaded.mjs/.wasm), model {mb(sizes['model'])} "
          f"(vae.json and every file it lists), library {mb(sizes['vae-edge'])}, page "
          f"{mb(sizes['total'] - sizes['ort'] - sizes['model'] - sizes['vae-edge'])}.")
    share = probe.share()
    print()
    print(f"Other processes' CPU use during the run: {probe.text()} of {cores()} cores"
          + (" -- **busy: run it again on a quiet machine**" if share is not None and share > 0.05 else "") + ".")


if __name__ == "__main__":
    main()

"""Where a decoder's (or encoder's) time goes, node by node: onnxruntime's own profiler, fp32 against int8.

Runs each graph of an export folder at one batch size for a number of calls with profiling on, then sums the
kernel time of each node (onnxruntime's "Node" events) and prints a table per graph: node, operator, its share of
the graph's time and the time per call, the slowest first.
    python bench/node_profile.py [FOLDER] [--graph decoder] [--batch 1024] [--calls 20] [--threads N]
FOLDER defaults to the bundled model.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, load_before  # noqa: E402

import onnxruntime as ort  # noqa: E402

from vae_edge.runtime import bundled  # noqa: E402


def profile(path: Path, array: np.ndarray, calls: int, threads: int | None) -> tuple[dict, float]:
    """{(node, op): microseconds per call} and the wall time per call in ms, from onnxruntime's profile of
    the graph in `path` fed `array` as its one input."""
    so = ort.SessionOptions()
    so.enable_profiling = True
    if threads:
        so.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: array}
        for _ in range(3):  # warm-up, left out below
            sess.run(None, feed)
        t0 = time.perf_counter()
        for _ in range(calls):
            sess.run(None, feed)
        wall_ms = (time.perf_counter() - t0) * 1e3 / calls
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = runs[3]["ts"] if len(runs) > 3 else 0  # skip the warm-up runs
    per_node = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            per_node[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))] += e["dur"] / calls
    return per_node, wall_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=Path, default=None)
    ap.add_argument("--graph", default="decoder", choices=["decoder", "encoder"])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    folder = args.folder or bundled.resolve(None)[0]
    meta = json.loads((folder / "vae.json").read_text())
    rng = np.random.default_rng(0)
    if args.graph == "decoder":
        array = rng.standard_normal((args.batch, int(meta["model"]["latent_dim"])), dtype=np.float32)
    else:
        array = rng.random((args.batch, *meta["model"]["input_shape"]), dtype=np.float32)
    print(header(f"Per-node profile of {folder.name}'s {args.graph} at batch {args.batch}", "onnxruntime"))
    print(load_before())
    for key in (args.graph, f"{args.graph}_int8"):
        if key not in meta["files"]:
            print(f"\n{key}: not in {folder}")
            continue
        per_node, wall_ms = profile(folder / meta["files"][key]["path"], array, args.calls, args.threads)
        total = sum(per_node.values())
        method = meta.get("int8", {}).get("method", {}).get(args.graph, "") if key.endswith("int8") else "fp32"
        print(f"\n**{key}** ({method}): {wall_ms:.2f} ms a call, {total / 1e3:.2f} ms in nodes")
        print("\n| node | op | share | µs a call |\n|---|---|---:|---:|")
        for (node, op), us in sorted(per_node.items(), key=lambda kv: -kv[1]):
            if us / total >= 0.005:
                print(f"| {node} | {op} | {us / total:.1%} | {us:,.0f} |")


if __name__ == "__main__":
    main()

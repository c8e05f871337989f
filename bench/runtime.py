"""Runtime speed: onnxruntime fp32 and int8 against PyTorch eager, same weights, same threads, one run.

For the mlp and conv VAEs (trained a few seconds on Fashion-MNIST so that outputs are realistic; speed
does not depend on the weights' values), exported with vae_edge.export.export_model(quantize="int8"):
- encode and decode: batch-1 latency (median, p99) and throughput (images/s) at batch 64 and 1024,
  for PyTorch eager, vae_edge.runtime fp32 and int8, with ratios to PyTorch;
- batch-1 latency with 1 thread;
- the decoder's GFLOP/s at batch 1024 next to a ceiling measured in the same run: float32 matrix
  products of the decoder's shapes (its Linear layers, its transposed convolutions as im2col GEMMs)
  in onnxruntime, the faster of that and torch.mm;
- the int8 decoder's pixel error and speed-up at batch 1024;
- onnxruntime session options against the runtime's defaults (before/after), and the profiler's time
  per node of the decoder, each matrix product next to the same product as a bare MatMul.
Prints markdown tables, ready for the README.
    python bench/runtime.py [--threads N] [--seconds S]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (OtherLoad, cores, header, interleaved, load_before, median, p99, rate, ratio,  # noqa: E402
                    table, trained_vae, us, verdict)

from vae_edge.export import export_model  # noqa: E402
from vae_edge.runtime import VAE  # noqa: E402
from vae_edge.runtime import sessions as runtime_sessions  # noqa: E402
from vae_edge.runtime.folder import read_folder  # noqa: E402

ARCHS = {"mlp": 300, "conv": 100}  # arch -> training steps (a few seconds each)
BATCHES = (1, 64, 1024)
BIG = 1024
SEED = 0
TARGETS = {"latency": 0.7, "int8_speedup": 1.8, "int8_error": 0.002, "ceiling": 0.70}


# -----------------------------------------------------------------------------
# what we run

class Subject:
    """One model in its three forms: PyTorch, and the exported folder loaded by the runtime in fp32 and int8."""

    def __init__(self, arch: str, folder: Path, threads: int):
        self.arch, self.folder = arch, folder
        self.torch, self.note = trained_vae(arch, ARCHS[arch], seed=SEED)
        export_model(self.torch, folder, quantize="int8")
        self.fp32 = VAE.load(folder, threads=threads)
        self.int8 = VAE.load(folder, precision="int8", threads=threads)
        rng = np.random.default_rng(SEED)
        self.x = {b: rng.random((b, *self.torch.input_shape), dtype=np.float32) for b in BATCHES}
        self.z = {b: rng.standard_normal((b, self.torch.latent_dim), dtype=np.float32) for b in BATCHES}

    def calls(self, op: str, batch: int, runtimes: dict) -> dict:
        """Zero-argument functions doing `op` on one batch: PyTorch eager, then each runtime."""
        m = self.torch
        if op == "encode":
            xt = torch.from_numpy(self.x[batch])

            def eager():
                with torch.inference_mode():
                    return [t.numpy() for t in m.encode(xt)]
            fns = {"PyTorch eager": eager}
            fns.update({name: (lambda v=v: v.encode(self.x[batch])) for name, v in runtimes.items()})
        else:
            zt = torch.from_numpy(self.z[batch])

            def eager():
                with torch.inference_mode():
                    return m.probs(zt).numpy()
            fns = {"PyTorch eager": eager}
            fns.update({name: (lambda v=v: v.decode(self.z[batch])) for name, v in runtimes.items()})
        return fns


def session(path: Path, threads: int, **options) -> ort.InferenceSession:
    """A plain onnxruntime session: ORT's defaults but for the thread count and the options given."""
    return session_from_bytes(path.read_bytes(), threads, **options)


def session_from_bytes(model: bytes, threads: int, **options) -> ort.InferenceSession:
    """Options with a dot are session config keys (session.intra_op.allow_spinning), the rest SessionOptions
    attributes; none given: onnxruntime's defaults."""
    config = {k: v for k, v in options.items() if "." in k}
    return runtime_sessions.new_session(model, threads, config=config,
                                        **{k: v for k, v in options.items() if "." not in k})


# -----------------------------------------------------------------------------
# FLOPs and the matrix-product ceiling

def decoder_gemms(m, batch: int) -> list[tuple[int, int, int]]:
    """The decoder's multiply-adds as matrix products (M, K, N): Linear layers, and ConvTranspose as im2col."""
    shapes = [(batch, m.fc3.in_features, m.fc3.out_features), (batch, m.fc4.in_features, m.fc4.out_features)]
    if m.arch == "conv":
        h, w = m.feat[1:]
        for layer in m.dec_conv:
            if isinstance(layer, torch.nn.ConvTranspose2d):
                k, s = layer.kernel_size[0], layer.stride[0]
                # every input pixel meets every weight once: [N*H*W, Cin] @ [Cin, Cout*k*k], then col2im
                shapes.append((batch * h * w, layer.in_channels, layer.out_channels * k * k))
                h, w = h * s, w * s
    return shapes


def flops(shapes) -> float:
    return float(sum(2 * mm * k * n for mm, k, n in shapes))


def matmuls_model(shapes, rng) -> bytes:
    """One ONNX graph holding each product A_i [M, K] @ W_i [K, N], W_i constant (prepacked, as a Gemm's weights)."""
    nodes, inputs, outputs, weights = [], [], [], []
    for i, (_, k, n) in enumerate(shapes):
        w = rng.standard_normal((k, n), dtype=np.float32) / np.float32(np.sqrt(k))
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [f"a{i}", f"w{i}"], [f"y{i}"], name=f"matmul{i}"))
        inputs.append(helper.make_tensor_value_info(f"a{i}", TensorProto.FLOAT, [f"m{i}", k]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [f"m{i}", n]))
    graph = helper.make_graph(nodes, "matmuls", inputs, outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def ceiling_calls(shapes, threads: int) -> dict:
    """The decoder's matrix products alone: in one onnxruntime session (one run), and with torch.mm."""
    rng = np.random.default_rng(SEED)
    s = session_from_bytes(matmuls_model(shapes, rng), threads, **runtime_sessions.SESSION_CONFIG)
    feed = {f"a{i}": rng.standard_normal((m, k), dtype=np.float32) for i, (m, k, _) in enumerate(shapes)}
    pairs = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]

    def in_torch():
        with torch.inference_mode():
            for a, w in pairs:
                torch.mm(a, w)
    return {"ceiling: onnxruntime MatMul": lambda: s.run(None, feed), "ceiling: torch.mm": in_torch}


# -----------------------------------------------------------------------------
# the profiler

def node_times(model: bytes, feed: dict, threads: int, runs: int = 30) -> list[tuple[str, str, float]]:
    """(node, operator, median ns) per node in execution order, from onnxruntime's profiler (enable_profiling).

    The median over the runs, so a stray slow run (the first, a hiccup) counts little.
    """
    with tempfile.TemporaryDirectory() as d:
        s = session_from_bytes(model, threads, enable_profiling=True, profile_file_prefix=str(Path(d) / "p"),
                               **runtime_sessions.SESSION_CONFIG)
        for _ in range(runs):
            s.run(None, feed)
        events = json.loads(Path(s.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            key = (e["name"].removesuffix("_kernel_time"), e.get("args", {}).get("op_name", "?"))
            per_node.setdefault(key, []).append(e["dur"] * 1e3)  # the profiler counts microseconds
    return [(name, op, float(np.median(durs))) for (name, op), durs in per_node.items()]


# -----------------------------------------------------------------------------
# the tables

def speed_table(subjects: list[Subject], threads: int, seconds: float, results: dict) -> str:
    rows = []
    for s in subjects:
        runtimes = {"runtime fp32": s.fp32, "runtime int8": s.int8}
        for op in ("encode", "decode"):
            cells = {}
            for b in BATCHES:
                t = interleaved(s.calls(op, b, runtimes), seconds)
                cells[b] = t
                results[(s.arch, op, b)] = t
            base = {b: median(cells[b]["PyTorch eager"]) for b in BATCHES}
            for name in cells[1]:
                lat = cells[1][name]
                row = [s.arch, op, name, us(median(lat)), us(p99(lat)), ratio(median(lat) / base[1])]
                for b in BATCHES[1:]:
                    med = median(cells[b][name])
                    row += [rate(b / med * 1e9), ratio(base[b] / med)]
                rows.append(row)
    heads = ["model", "op", "backend", "batch 1 median", "batch 1 p99", "latency vs PyTorch",
             "batch 64 img/s", "speed vs PyTorch", "batch 1024 img/s", "speed vs PyTorch"]
    return (f"Latency and throughput, {threads} threads (torch.set_num_threads and intra_op_num_threads); "
            f"ratios: latency / PyTorch's, throughput / PyTorch's.\n\n" + table(heads, rows))


def one_thread_table(subjects: list[Subject], threads: int, seconds: float) -> str:
    torch.set_num_threads(1)
    rows = []
    try:
        for s in subjects:
            runtimes = {"runtime fp32": VAE.load(s.folder, threads=1),
                        "runtime int8": VAE.load(s.folder, precision="int8", threads=1)}
            for op in ("encode", "decode"):
                t = interleaved(s.calls(op, 1, runtimes), seconds)
                base = median(t["PyTorch eager"])
                rows += [[s.arch, op, name, us(median(v)), us(p99(v)), ratio(median(v) / base)]
                         for name, v in t.items()]
    finally:
        torch.set_num_threads(threads)
    return "Batch-1 latency, 1 thread.\n\n" + table(
        ["model", "op", "backend", "median", "p99", "vs PyTorch"], rows)


def ceiling_table(subjects: list[Subject], threads: int, seconds: float, results: dict) -> str:
    rows = []
    for s in subjects:
        shapes = decoder_gemms(s.torch, BIG)
        work = flops(shapes)
        fns = s.calls("decode", BIG, {"runtime fp32": s.fp32, "runtime int8": s.int8})
        fns.update(ceiling_calls(shapes, threads))
        t = {k: median(v) for k, v in interleaved(fns, seconds).items()}
        best = min(("ceiling: onnxruntime MatMul", "ceiling: torch.mm"), key=t.get)
        gflops = {k: work / v for k, v in t.items()}  # flop per ns = GFLOP/s
        results[("ceiling", s.arch)] = gflops["runtime fp32"] / gflops[best]
        gemm_text = ", ".join(f"{m}x{k}x{n}" for m, k, n in shapes)
        rows.append([s.arch, f"{work / 1e9:.2f}", f"{gflops['PyTorch eager']:.0f}", f"{gflops['runtime fp32']:.0f}",
                     f"{gflops['runtime int8']:.0f}", f"{gflops['ceiling: onnxruntime MatMul']:.0f}",
                     f"{gflops['ceiling: torch.mm']:.0f}",
                     f"{gflops['runtime fp32'] / gflops[best]:.0%}", gemm_text])
    heads = ["model", "GFLOP per call", "PyTorch GFLOP/s", "runtime fp32 GFLOP/s", "runtime int8 GOP/s",
             "ceiling: ORT MatMul GFLOP/s", "torch.mm GFLOP/s", "fp32 / best ceiling", "matrix products (MxKxN)"]
    return (f"Decoder at batch {BIG}, {threads} threads: achieved GFLOP/s (multiply-adds of its Linear and "
            f"ConvTranspose layers, x2) next to the same matrix products run alone in the same run.\n\n"
            + table(heads, rows))


def int8_table(subjects: list[Subject], results: dict) -> str:
    rows = []
    for s in subjects:
        z = s.z[BIG]
        fp32, int8 = s.fp32.decode(z), s.int8.decode(z)
        with torch.inference_mode():
            eager = s.torch.probs(torch.from_numpy(z)).numpy()
        err = np.abs(int8.astype(np.float64) - fp32)
        t = results[(s.arch, "decode", BIG)]
        speedup = median(t["runtime fp32"]) / median(t["runtime int8"])
        results[("int8", s.arch)] = (speedup, float(err.mean()))
        results[("int8 way", s.arch)] = f"{s.int8.meta['int8']['method']['decoder']} int8, {s.note.split(' on ')[0]}"
        rows.append([s.arch, f"{err.mean():.5f}", f"{err.max():.4f}", f"{np.abs(fp32 - eager).max():.1e}",
                     ratio(speedup), f"{fp32.mean():.3f} ± {fp32.std():.3f}"])
    heads = ["model", "int8 mean abs pixel error", "int8 max abs", "fp32 vs PyTorch max abs",
             f"int8 / fp32 img/s at {BIG}", "fp32 pixels mean ± std"]
    return (f"int8 decoder (as vae-export chose it) against fp32 on {BIG} latents z ~ N(0, I); pixels in [0, 1].\n\n"
            + table(heads, rows))


TUNING = {
    "no spinning threads": {"session.intra_op.allow_spinning": "0"},
    "graph optimization: basic only": {"graph_optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC},
    "no memory arena": {"enable_cpu_mem_arena": False},
    "no memory pattern": {"enable_mem_pattern": False},
}


def tuning_table(subjects: list[Subject], threads: int, seconds: float) -> str:
    """decode and reconstruct (encoder, then decoder) under other session options, against the runtime's."""
    ours, before = "vae_edge.runtime defaults (after)", "onnxruntime defaults (before)"
    rows = {name: [name] for name in [ours, before, *(f"+ {k}" for k in TUNING), "+ 1 thread"]}
    heads = ["session options, fp32"]
    for s in subjects:
        enc, dec = s.folder / "encoder.onnx", s.folder / "decoder.onnx"

        def vae(n_threads=threads, **opts):
            checked = runtime_sessions.CheckedSession
            return VAE(checked(session(enc, n_threads, **opts), str(enc)),
                       checked(session(dec, n_threads, **opts), str(dec)), read_folder(s.folder))
        variants = {ours: s.fp32, before: vae()}
        variants.update({f"+ {name}": vae(**runtime_sessions.SESSION_CONFIG, **opts) for name, opts in TUNING.items()})
        variants["+ 1 thread"] = vae(1, **runtime_sessions.SESSION_CONFIG)
        for op, b in (("decode", 1), ("decode", BIG), ("reconstruct", BIG)):
            if op == "decode":
                fns = {k: (lambda v=v: v.decode(s.z[b])) for k, v in variants.items()}
            else:
                fns = {k: (lambda v=v: v.reconstruct(s.x[b])) for k, v in variants.items()}
            t = interleaved(fns, seconds)
            base = median(t[ours])
            for name, v in t.items():
                rows[name].append(f"{us(median(v))} ({median(v) / base:.2f})")
            heads.append(f"{s.arch} {op} batch {b}")
    return (f"onnxruntime session options, {threads} threads unless said: median time per call, and relative to "
            f"the runtime's defaults ({runtime_defaults()}); '+' rows add one change to them. Lower is better. "
            f"reconstruct = encoder then decoder: two sessions, two thread pools.\n\n"
            + table(heads, list(rows.values())))


PRODUCT_OPS = {"Gemm", "FusedGemm", "MatMul", "ConvTranspose", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def profile_table(subjects: list[Subject], threads: int) -> str:
    """Per node of the decoder at batch 1024: time, and for matrix products GFLOP/s next to a bare MatMul's."""
    rows = []
    for s in subjects:
        shapes = decoder_gemms(s.torch, BIG)
        rng = np.random.default_rng(SEED)
        bare = {name: t for name, _, t in node_times(matmuls_model(shapes, rng), {
            f"a{i}": rng.standard_normal((m, k), dtype=np.float32) for i, (m, k, _) in enumerate(shapes)}, threads)}
        for precision, name in (("fp32", "decoder.onnx"), ("int8", "decoder.int8.onnx")):
            nodes = node_times((s.folder / name).read_bytes(), {"z": s.z[BIG]}, threads)
            total = sum(t for _, _, t in nodes)
            layer = 0
            for node, op, t in nodes:
                row = [s.arch, precision, node, op, us(t), f"{t / total:.0%}", "", "", ""]
                if op in PRODUCT_OPS and layer < len(shapes):
                    m, k, n = shapes[layer]
                    work = 2 * m * k * n
                    row[6:] = [f"{m}x{k}x{n}", f"{work / t:.0f}", f"{work / bare[f'matmul{layer}']:.0f}"]
                    layer += 1
                rows.append(row)
    return (f"Where the decoder's time goes at batch {BIG}, {threads} threads: onnxruntime's profiler "
            f"(enable_profiling), median per node after graph optimization (FusedGemm = Gemm + Relu), and for "
            f"each matrix product the same product as a bare MatMul (int8 rows: GOP/s).\n\n"
            + table(["model", "precision", "node", "operator", "time", "share", "product (MxKxN)",
                     "GFLOP/s", "bare MatMul GFLOP/s"], rows))


def targets_table(results: dict) -> str:
    lat = {arch: median(results[(arch, "decode", 1)]["runtime fp32"])
           / median(results[(arch, "decode", 1)]["PyTorch eager"])
           for arch in ARCHS}
    rows = []
    for arch in ARCHS:
        rows.append([f"{arch}: batch-1 decode latency vs PyTorch", f"<= {TARGETS['latency']}x", ratio(lat[arch]),
                     verdict(lat[arch] <= TARGETS["latency"])])
    for arch in ARCHS:
        sp, err = results[("int8", arch)]
        rows.append([f"{arch} ({results[('int8 way', arch)]}): int8 decoder img/s at {BIG} vs fp32",
                     f">= {TARGETS['int8_speedup']}x", ratio(sp),
                     verdict(sp >= TARGETS["int8_speedup"])])
        rows.append([f"{arch}: int8 mean abs pixel error", f"<= {TARGETS['int8_error']}", f"{err:.5f}",
                     verdict(err <= TARGETS["int8_error"])])
    for arch in ARCHS:
        c = results[("ceiling", arch)]
        rows.append([f"{arch}: decoder at {BIG}, share of the matrix-product ceiling", f">= {TARGETS['ceiling']:.0%}",
                     f"{c:.0%}", verdict(c >= TARGETS["ceiling"])])
    if "bundled_decoder_int8_speedup" in results:
        sp, err = results["bundled_decoder_int8_speedup"], results["bundled_int8_error"]["x"]
        rows.append([f"bundled conv (fully trained): int8 decoder img/s at {BIG} vs fp32",
                     f">= {TARGETS['int8_speedup']}x", ratio(sp), verdict(sp >= TARGETS["int8_speedup"])])
        rows.append(["bundled conv: int8 mean abs pixel error on real images", f"<= {TARGETS['int8_error']}",
                     f"{err:.5f}", verdict(err <= TARGETS["int8_error"])])
    return "Targets (issues 5 and 13).\n\n" + table(["target", "goal", "measured", ""], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=cores(),
                   help="threads for torch and onnxruntime (default: all cores)")
    p.add_argument("--seconds", type=float, default=1.5, help="measuring time per table cell (all backends together)")
    args = p.parse_args()
    threads, sec = args.threads, args.seconds
    t_start = time.perf_counter()
    print(header("bench/runtime.py", "onnxruntime", "torch", "numpy"))
    print(load_before())
    during = OtherLoad()
    torch.set_num_threads(threads)
    results: dict = {}
    with tempfile.TemporaryDirectory() as d:
        subjects = [Subject(arch, Path(d) / arch, threads) for arch in ARCHS]
        ways = "; ".join(f"{s.arch} {s.int8.meta['int8']['method']}" for s in subjects)
        print(f"\nModels: {'; '.join(f'{s.arch} {s.note}' for s in subjects)}. Exported by "
              f"vae_edge.export (opset {subjects[0].fp32.meta['opset']}, int8 as vae-export chose it: {ways}). "
              f"Weights' values do not change the speed. Runtime session defaults: "
              f"{runtime_defaults()}.\n", flush=True)
        sections = [lambda: speed_table(subjects, threads, sec, results),
                    lambda: one_thread_table(subjects, threads, sec * 0.6),
                    lambda: ceiling_table(subjects, threads, sec * 1.5, results),
                    lambda: int8_table(subjects, results),
                    lambda: tuning_table(subjects, threads, sec * 1.5),
                    lambda: profile_table(subjects, threads)]
        sections.append(lambda: bundled_int8_table(threads, sec * 2, results))
        for section in sections:
            print(section() + "\n", flush=True)
        print(targets_table(results))
    print(f"\n({time.perf_counter() - t_start:.0f} s; other processes used {during.text()} of the "
          f"{cores()} cores meanwhile)")


def bundled_int8_table(threads: int, seconds: float, results: dict) -> str:
    """The fully trained bundled model: its int8 files (the way vae-export chose for each) against fp32 at batch
    1024, and their error on real Fashion-MNIST test images (mu of 1000 images, and as many prior draws)."""
    import gzip

    from vae_edge.runtime import bundled

    folder = bundled.path(bundled.DEFAULT)
    fp32, int8 = VAE.load(folder, threads=threads), VAE.load(folder, precision="int8", threads=threads)
    rng = np.random.default_rng(SEED)
    x = rng.random((BIG, *fp32.input_shape), dtype=np.float32)
    z = rng.standard_normal((BIG, fp32.latent_dim), dtype=np.float32)
    times = interleaved({"enc fp32": lambda: fp32.encode(x), "enc int8": lambda: int8.encode(x),
                         "dec fp32": lambda: fp32.decode(z), "dec int8": lambda: int8.decode(z)}, seconds)
    real = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    if real.is_file():
        with gzip.open(real) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:1000]
        mu, mu8 = fp32.encode(images)[0], int8.encode(images)[0]
        zz = np.concatenate([mu, rng.standard_normal(mu.shape).astype(np.float32)])
        err = {"mu": float(np.abs(mu8 - mu).mean()), "x": float(np.abs(int8.decode(zz) - fp32.decode(zz)).mean())}
    else:
        err = {"mu": float("nan"), "x": float("nan")}
    method = int8.meta["int8"]["method"]
    rows = []
    for role, key in (("encoder", "enc"), ("decoder", "dec")):
        speed = median(times[f"{key} fp32"]) / median(times[f"{key} int8"])
        results[f"bundled_{role}_int8_speedup"] = speed
        rows.append([role, method[role], rate(BIG / median(times[f"{key} fp32"]) * 1e9),
                     rate(BIG / median(times[f"{key} int8"]) * 1e9), ratio(speed),
                     f"{err['mu' if role == 'encoder' else 'x']:.5f}"])
    results["bundled_int8_error"] = err
    return (f"The bundled model ({folder.name}: {fp32.meta['model']['arch']}, {fp32.meta['recipe']['epochs']} "
            f"epochs) at batch {BIG}, images/s, int8 as vae-export chose it; error = mean abs against fp32 on "
            f"real test images (mu; pixels of decoded mu and prior draws).\n\n"
            + table(["graph", "int8 way", "fp32 img/s", "int8 img/s", "int8 / fp32", "mean abs error"], rows))


def runtime_defaults() -> str:
    """The session options vae_edge.runtime sets beyond onnxruntime's own defaults."""
    config = getattr(runtime_sessions, "SESSION_CONFIG", {})
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "onnxruntime's own"


if __name__ == "__main__":
    main()

"""Anomaly detection on Fashion-MNIST: a model trained without one class scores the test set, and the held-out
class (the anomalies) is told from the other nine by AUROC and by the true-positive rate at 1% false positives.

For each --held-out class C, four commands, each printed as it runs so that any row can be reproduced by hand:
  vae-train   conv, Gaussian prior, binarized, --exclude-classes C (both splits lose class C)
  vae-export  with int8
  vae-score   the whole test set (10,000 images, 1,000 of them class C) at k = 1, fp32 and int8
  vae-score   at k = 100 on a fixed subset: every image of class C and --k-normals of the others
A step whose output exists is skipped, so a stopped run resumes where it stopped. Scores are written by
vae-score; the metrics are computed here from them and the test labels. Prints a markdown table and writes
OUT/results.json.
    python bench/anomaly.py [--held-out 1,5,8] [--epochs 30] [--out runs/anomaly] [--k-normals 1000] [--threads 0]
"""
from __future__ import annotations

import argparse
import io
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import header, table
from vae_edge.train.data import load_data

BIN = Path(sys.executable).parent
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FPR = 0.01


def auroc(scores: np.ndarray, anomalous: np.ndarray) -> float:
    """P(an anomaly scores above a normal image), ties counted half: the Mann-Whitney statistic from mid-ranks."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # tied scores share their mean rank
    n_pos, n_neg = int(anomalous.sum()), int((~anomalous).sum())
    return float((ranks[anomalous].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tpr_at_fpr(scores: np.ndarray, anomalous: np.ndarray, fpr: float = FPR) -> tuple[float, float]:
    """The threshold vae-score --calibrate picks on the normal images (the largest score that leaves at most
    floor(n fpr) of them above it), and the share of anomalies above it; with the normal images' own rate."""
    normal = np.sort(scores[~anomalous])[::-1]
    threshold = normal[int(len(normal) * fpr)]
    return float((scores[anomalous] > threshold).mean()), float((normal > threshold).mean())


def png_nats(images: np.ndarray) -> np.ndarray:
    """Each binarized image's length as a 1-bit PNG, in nats: a rough measure of its complexity. Subtracting it
    from the score is the input-complexity correction of Serra et al. (ICLR 2020); vae-score does not ship it."""
    def size(image: np.ndarray) -> int:
        buf = io.BytesIO()
        Image.fromarray((image[0] >= 128).astype(np.uint8) * 255).convert("1").save(buf, "PNG", optimize=True)
        return len(buf.getvalue())
    return np.array([size(i) for i in images], np.float64) * 8 * np.log(2)


def run(cmd: list[str], log: Path | None = None) -> float:
    """Run one command (printed first), its output to `log` if given; its wall time in seconds."""
    print("$ " + " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    start = time.perf_counter()
    cmd = [str(c) for c in cmd]
    if log:
        with open(log, "w") as out:
            r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    else:
        r = subprocess.run(cmd)
    if r.returncode:
        sys.exit(f"bench/anomaly.py: the command above failed (exit {r.returncode})" + (f"; see {log}" if log else ""))
    return time.perf_counter() - start


def read_scores(path: Path, n: int) -> np.ndarray:
    """vae-score's JSON Lines for an .npy input: one {"index", "score"} per row, in order."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(n)), f"{path}: not one score per row"
    return np.array([r["score"] for r in rows], np.float64)


def held_out(c: int, args, test: Path, labels: np.ndarray, complexity: np.ndarray) -> list[dict]:
    d = args.out / f"held-out-{c}"
    if not (d / "model.pt").is_file():
        run([BIN / "vae-train", "--dataset", "fashion-mnist", "--arch", "conv", "--hidden-dim", "256",
             "--latent-dim", "32", "--binarize", "--exclude-classes", str(c), "--epochs", str(args.epochs),
             "--seed", "1", "--out-dir", args.out, "--name", d.name, "--force"], args.out / f"train-{c}.log")
    folder = d / "vae-onnx"
    if not (folder / "vae.json").is_file():
        run([BIN / "vae-export", d / "model.pt", "--out", folder, "--quantize", "int8", "--force"],
            args.out / f"export-{c}.log")
    anomalous = labels == c
    # the k = 100 subset: every anomaly and a fixed draw of the normal images, in test-set order
    normal_rows = np.flatnonzero(~anomalous)
    pick = np.sort(np.concatenate([np.flatnonzero(anomalous),
                                   np.random.default_rng(c).choice(normal_rows, args.k_normals, replace=False)]))
    subset = args.out / f"test-subset-{c}.npy"
    np.save(subset, np.load(test)[pick])
    rows, threads = [], ["--threads", str(args.threads)] if args.threads else []
    for k, images, rows_of in ((1, test, np.arange(len(labels))), (100, subset, pick)):
        for precision in ("fp32", "int8"):
            out = d / f"scores-k{k}-{precision}.jsonl"
            seconds = None
            if not out.is_file():
                seconds = run([BIN / "vae-score", images, "--model", folder, "--k", str(k), "--precision", precision,
                               "--jsonl", "--quiet", "--out", out, *threads])
            scores = read_scores(out, len(rows_of))
            tpr, fpr = tpr_at_fpr(scores, anomalous[rows_of])
            rows.append({"held_out": c, "name": NAMES[c], "k": k, "precision": precision, "images": len(rows_of),
                         "anomalies": int(anomalous[rows_of].sum()), "auroc": auroc(scores, anomalous[rows_of]),
                         "tpr_at_1pct_fpr": tpr, "fpr": fpr, "seconds": seconds,
                         "auroc_minus_png": auroc(scores - complexity[rows_of], anomalous[rows_of]),
                         "tpr_minus_png": tpr_at_fpr(scores - complexity[rows_of], anomalous[rows_of])[0],
                         "mean_score_normal": float(scores[~anomalous[rows_of]].mean()),
                         "mean_score_anomalous": float(scores[anomalous[rows_of]].mean())})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held-out", default="1,5,8", help="classes to hold out, one model each (0-9)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--k-normals", type=int, default=1000, help="normal images in the k = 100 subset")
    ap.add_argument("--out", type=Path, default=Path("runs/anomaly"))
    ap.add_argument("--threads", type=int, default=0, help="vae-score's onnxruntime threads (0: onnxruntime decides)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_data("fashion-mnist", download=False)
    test, labels = args.out / "test.npy", data.test_labels.numpy()
    np.save(test, data.test.numpy())  # uint8 (10000, 1, 28, 28): vae-score thresholds it by the model's pixel rule
    complexity = png_nats(data.test.numpy())
    results = [row for c in map(int, args.held_out.split(",")) for row in held_out(c, args, test, labels, complexity)]
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    threads = f"{args.threads} onnxruntime thread(s)" if args.threads else "onnxruntime's default threads"
    print(header(f"Anomaly detection, Fashion-MNIST, conv Gaussian {args.epochs} epochs; scores with {threads}",
                 "torch", "onnxruntime"))
    print(table(["held out", "k", "precision", "images (anomalies)", "AUROC", "TPR at 1% FPR",
                 "AUROC, score - PNG", "TPR, score - PNG", "images/s"],
                [[f"{r['held_out']} {r['name']}", r["k"], r["precision"], f"{r['images']:,} ({r['anomalies']:,})",
                  f"{r['auroc']:.3f}", f"{r['tpr_at_1pct_fpr']:.1%}", f"{r['auroc_minus_png']:.3f}",
                  f"{r['tpr_minus_png']:.1%}",
                  f"{r['images'] / r['seconds']:,.0f}" if r["seconds"] else "(kept)"] for r in results]))


if __name__ == "__main__":
    main()

"""Training speed: vae-train against the plain DataLoader loop of the reference recipe, on one device; with
--recipes, on the CPU, each recipe's epoch in fp32, bf16 and bf16 with channels-last, and their test -ELBO.

Every contender is a whole process (imports, data, CUDA start-up, training, a test pass and the pictures
each epoch), timed from outside, in alternating rounds, all on the device named by --device:
  plain      the reference recipe (pytorch/examples vae/main.py): torchvision dataset, ToTensor, DataLoader
  vae-train  eager steps (on CUDA: --no-cuda-graphs)
  graphs     on CUDA only: vae-train's default, the step captured once as a CUDA graph and replayed
Prints the whole-process and per-epoch times, the final test losses, ratios to the plain loop, and where
vae-train's time went (its closing `time:` line).
    python bench/train_speed.py [--device cpu|cuda] [--epochs 10] [--rounds 2] [--arch mlp] [--extra amp,compile]

--recipes mlp,conv,vamp100,vamp500 (the CPU mode): each recipe (mlp: vae-train's defaults; conv: the bundled
recipe, MODEL_RECIPE in the Makefile, with a Gaussian prior; vamp100: the bundled recipe itself; vamp500: with K = 500;
each with its --epochs, --seed and --kl-warmup replaced by this script's, its IWAE fine-tuning left out) in each of
--variants (fp32: --no-amp; bf16: --amp; bf16-cl: --amp --channels-last; fp32-cl: --no-amp --channels-last;
bf16-cl-b256: bf16-cl at batch 256, which spreads the VampPrior's pseudo-input pass, one per step, over twice the
images; bf16-cl-b256-lr2: that with Adam at 2e-3; the -cl ones on conv recipes only),
one whole vae-train process each, trained on the first --images training images for --epochs epochs and scored on
the first --test-images test images, once per seed of --seeds; the seeds are the interleaved rounds. Prints each
variant's training time per 60,000-image epoch (the run's `time:` line, training alone) and its ratio to fp32's, and
its final test -ELBO over the seeds (mean and range) against fp32's: within fp32's range, or within 0.3 nats of its
mean, is what issue 36 asks of a new default.
    python bench/train_speed.py --recipes mlp,conv,vamp100,vamp500 --images 25000 --epochs 2 --seeds 1,2,3
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import OtherLoad, header, table

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
RECIPES = {"mlp": None, "conv": ["--prior", "gaussian"], "vamp100": ["--prior", "vamp", "--prior-components", "100"],
           "vamp500": ["--prior", "vamp", "--prior-components", "500"]}  # None: vae-train's defaults; else bundled
VARIANTS = {"fp32": ["--no-amp"], "bf16": ["--amp"], "bf16-cl": ["--amp", "--channels-last"],
            "bf16-cl-b256": ["--amp", "--channels-last", "--batch-size", "256"],
            "bf16-cl-b256-lr2": ["--amp", "--channels-last", "--batch-size", "256", "--lr", "2e-3"],
            "fp32-cl": ["--no-amp", "--channels-last"]}
SET_HERE = ("--dataset", "--data-dir", "--epochs", "--seed", "--kl-warmup", "--amp", "--no-amp", "--channels-last",
            "--no-channels-last", "--prior", "--prior-components", "--device", "--train-k", "--train-k-epochs",
            "--batch-size", "--lr")
MARGIN = 0.3  # nats: issue 36's margin on a new default's mean test -ELBO, where fp32's seed range is narrower
EPOCH = 60_000  # Fashion-MNIST's training images: times are given per epoch of these


def plain_loop(root: Path, out: Path, epochs: int, device: str) -> float:
    """The reference recipe, as pytorch/examples vae/main.py runs it (its DataLoader settings on CUDA too):
    a training and a test pass per epoch, and its pictures (reconstructions, 64 samples) after each epoch."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchvision import datasets, transforms
    from torchvision.utils import save_image

    class ReferenceVAE(nn.Module):
        """The reference network as published: sigmoid output, BCE on probabilities."""

        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

        def decode(self, z):
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

        def forward(self, x):
            h = F.relu(self.fc1(x.view(-1, 784)))
            mu, logvar = self.fc21(h), self.fc22(h)
            return self.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)), mu, logvar

    def loss_fn(recon, x, mu, logvar):
        bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
        return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    dev = torch.device(device)
    kw = {"num_workers": 1, "pin_memory": True} if dev.type == "cuda" else {}
    torch.manual_seed(1)
    train_loader = torch.utils.data.DataLoader(
        datasets.FashionMNIST(root, train=True, transform=transforms.ToTensor()), batch_size=128, shuffle=True, **kw)
    test_loader = torch.utils.data.DataLoader(
        datasets.FashionMNIST(root, train=False, transform=transforms.ToTensor()), batch_size=128, **kw)
    model = ReferenceVAE().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        model.train()
        for x, _ in train_loader:
            x = x.to(dev)
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_fn(recon, x, mu, logvar)
            loss.backward()
            opt.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for i, (x, _) in enumerate(test_loader):
                x = x.to(dev)
                recon, mu, logvar = model(x)
                test_loss += loss_fn(recon, x, mu, logvar).item()
                if i == 0:
                    save_image(torch.cat([x[:8], recon.view(-1, 1, 28, 28)[:8]]).cpu(),
                               out / f"reconstruction_{epoch}.png")
            save_image(model.decode(torch.randn(64, 20, device=dev)).view(64, 1, 28, 28).cpu(),
                       out / f"sample_{epoch}.png")
    return test_loss / len(test_loader.dataset)


def torchvision_root(data: Path, tmp: Path) -> Path:
    """Lay the IDX files out as torchvision's FashionMNIST expects them (raw, uncompressed)."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in data.glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def run(name: str, cmd: list[str], out: Path, env: dict) -> dict:
    """One whole process, timed from outside; its figures from what it printed and wrote."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{name} failed ({r.returncode}): {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")
    result = {"wall": wall, "notes": [ln for ln in r.stdout.splitlines() if ln.startswith("note:")]}
    if name == "plain":
        result["test_loss"] = json.loads(r.stdout.strip().splitlines()[-1])["test_loss"]
        return result
    metrics = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    result["test_loss"] = metrics[-1]["test_loss"]
    result["epoch"] = statistics.median(m["seconds"] for m in metrics[1:] or metrics)  # the first holds the capture
    result["time"] = next((ln for ln in r.stdout.splitlines() if ln.startswith("time:")), "")
    return result


# -----------------------------------------------------------------------------
# --recipes: the CPU's precision and memory format, per recipe

def without(options: list[str], names) -> list[str]:
    """A command line less the named options and their values."""
    out, skip = [], False
    for i, tok in enumerate(options):
        if skip:
            skip = False
        elif tok in names:
            skip = i + 1 < len(options) and not options[i + 1].startswith("--")
        else:
            out.append(tok)
    return out


def recipe_options(name: str) -> list[str]:
    """vae-train's options for a recipe of RECIPES."""
    if RECIPES[name] is None:
        return []
    bundled = re.search(r"^MODEL_RECIPE := (.*)$", (REPO / "Makefile").read_text(), re.M)[1].split()
    return without(bundled, SET_HERE) + RECIPES[name]


def write_subset(src: Path, dst: Path, images: int, test_images: int) -> tuple[int, int]:
    """The first `images` training and `test_images` test images of Fashion-MNIST (with their labels) as IDX files in
    dst, where vae-train --data-dir dst finds them; returns how many of each there are."""
    from vae_edge.train.data import load_data

    data = load_data("fashion-mnist", str(src), download=False)
    dst.mkdir(parents=True)
    counts = []
    for prefix, x, y, n in (("train", data.train, data.train_labels, images),
                            ("t10k", data.test, data.test_labels, test_images)):
        x, y = x[:n].numpy(), y[:n].numpy()
        (dst / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4I", 0x803, *x.shape[:1], *x.shape[2:])
                                                          + x.tobytes())
        (dst / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2I", 0x801, len(y)) + y.astype("u1").tobytes())
        counts.append(len(x))
    return counts[0], counts[1]


def recipe_run(cmd: list[str], out: Path, env: dict, variant: str) -> dict:
    """One vae-train process: its training seconds (its `time:` line) and final test -ELBO."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): "
                 f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    want = ("bf16" if variant.startswith("bf16") else "fp32", "channels_last" if "-cl" in variant else "contiguous")
    if (last.get("precision"), last.get("memory_format")) != want:
        sys.exit(f"{variant} ran as {last.get('precision')}, {last.get('memory_format')}: {last.get('precision_why')}")
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("time:"))
    return {"train": float(re.search(r"training ([\d.]+)", line)[1]), "elbo": last["test_loss"]}


def recipes_main(args) -> None:
    import torch

    from vae_edge.train.precision import cpu_bf16_flag

    recipes, seeds = args.recipes.split(","), [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    unknown = [r for r in recipes if r not in RECIPES] + [v for v in variants if v not in VARIANTS]
    if unknown or "fp32" not in variants:
        sys.exit(f"unknown recipe or variant: {', '.join(unknown)} (recipes: {', '.join(RECIPES)}; variants: "
                 f"{', '.join(VARIANTS)}, fp32 among them)" if unknown else "--variants must hold fp32, the baseline")
    flag = cpu_bf16_flag()
    if flag is None and any(v.startswith("bf16") for v in variants):
        print("note: this CPU has no bf16 instructions (avx512_bf16, amx_bf16): the bf16 variants are left out")
        variants = [v for v in variants if not v.startswith("bf16")]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    times = {(r, v): [] for r in recipes for v in variants if v in ("fp32", "bf16") or RECIPES[r] is not None}
    elbos = {k: [] for k in times}
    load = OtherLoad()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n, m = write_subset(args.data, tmp / "data", args.images, args.test_images)
        print(header("Training speed per recipe, fp32 against bf16 autocast (vae-train on the CPU)", "torch"))
        print(f"{n} training and {m} test images of Fashion-MNIST, {args.epochs} epochs, seeds {args.seeds} (the "
              f"rounds), {args.threads or torch.get_num_threads()} threads, bf16 instructions: {flag}; times are "
              f"training alone, scaled to a {EPOCH:,}-image epoch\n", flush=True)
        for seed in seeds:
            for recipe, variant in times:
                name = f"{recipe}-{variant}-{seed}"
                cmd = [str(BIN / "vae-train"), *recipe_options(recipe), *VARIANTS[variant], "--dataset",
                       "fashion-mnist", "--data-dir", str(tmp / "data"), "--epochs", str(args.epochs), "--seed",
                       str(seed), "--kl-warmup", str(args.kl_warmup), "--device", "cpu", "--out-dir",
                       str(tmp / "runs"), "--name", name, "--force"]
                res = recipe_run(cmd, tmp / "runs" / name, env, variant)
                per_epoch = res["train"] / args.epochs * EPOCH / n
                times[recipe, variant].append(per_epoch)
                elbos[recipe, variant].append(res["elbo"])
                print(f"seed {seed} {recipe} {variant}: {per_epoch:.2f} s an epoch, test -ELBO {res['elbo']:.2f}",
                      flush=True)
                shutil.rmtree(tmp / "runs" / name)
    print()
    print(table(["recipe", "variant", "s / epoch (median)", "each seed", "fp32 / this", "test -ELBO (mean)",
                 "range", "against fp32's"], [recipe_row(times, elbos, key) for key in times]))
    print(f"\nOther processes' CPU use during the runs: {load.text()}; ratios hold better than absolute times.")


def recipe_row(times: dict, elbos: dict, key: tuple[str, str]) -> list[str]:
    recipe, variant = key
    t, base = statistics.median(times[key]), statistics.median(times[recipe, "fp32"])
    e, ref = elbos[key], elbos[recipe, "fp32"]
    mean, ref_mean = statistics.fmean(e), statistics.fmean(ref)
    within = min(ref) <= mean <= max(ref) or abs(mean - ref_mean) <= MARGIN
    verdict = "" if variant == "fp32" else (f"{mean - ref_mean:+.2f}: " + ("within" if within else "**outside**"))
    return [recipe, variant, f"{t:.2f}", ", ".join(f"{x:.2f}" for x in times[key]), f"{base / t:.2f}x",
            f"{mean:.2f}", f"{min(e):.2f} to {max(e):.2f}", verdict]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda: every contender runs there")
    ap.add_argument("--epochs", type=int, help="10; with --recipes, 1")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of all contenders")
    ap.add_argument("--arch", default="mlp", help="vae-train's --arch (the plain loop is the reference mlp)")
    ap.add_argument("--extra", default="", help="comma-separated vae-train variants to add: amp, compile")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads of every contender (OMP_NUM_THREADS; 0: torch's default)")
    ap.add_argument("--data", type=Path, default=DEBIAN, help="folder with Fashion-MNIST's IDX .gz files")
    ap.add_argument("--recipes", help="the CPU mode: comma-separated recipes of " + ", ".join(RECIPES))
    ap.add_argument("--variants", default="fp32,bf16,bf16-cl", help="--recipes: of " + ", ".join(VARIANTS))
    ap.add_argument("--images", type=int, default=EPOCH, help="--recipes: the first N training images")
    ap.add_argument("--test-images", type=int, default=10_000, help="--recipes: the first N test images")
    ap.add_argument("--seeds", default="1,2,3", help="--recipes: one run of each variant per seed")
    ap.add_argument("--kl-warmup", type=float, default=0.0, help="--recipes: vae-train's --kl-warmup")
    ap.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # internal: run the plain loop once
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.recipes:
        args.epochs = args.epochs or 1
        return recipes_main(args)
    args.epochs = args.epochs or 10
    if args.plain:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps({"test_loss": plain_loop(args.root, Path(tmp), args.epochs, args.device)}))
        return
    import torch

    cuda = args.device.startswith("cuda")
    where = (f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}" if cuda
             else f"CPU, {args.threads or torch.get_num_threads()} threads, torch {torch.__version__}")
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = torchvision_root(args.data, tmp / "tv")
        train_cmd = [str(BIN / "vae-train"), "--device", args.device, "--epochs", str(args.epochs), "--arch", args.arch,
                     "--data-dir", str(args.data), "--out-dir", str(tmp / "runs"), "--force"]
        contenders = {"plain": [sys.executable, __file__, "--plain", "--root", str(root), "--device", args.device,
                                "--epochs", str(args.epochs)]} if args.arch == "mlp" else {}
        contenders["vae-train"] = train_cmd + ["--name", "vae-train"] + (["--no-cuda-graphs"] if cuda else [])
        if cuda:
            contenders["graphs"] = train_cmd + ["--name", "graphs"]
        for extra in filter(None, args.extra.split(",")):
            contenders[f"graphs --{extra}"] = train_cmd + ["--name", extra, f"--{extra}"]
        print(f"Fashion-MNIST, {args.arch}, batch 128, Adam 1e-3, {args.epochs} epochs, {where}; "
              f"{args.rounds} alternating rounds", flush=True)
        results = {k: [] for k in contenders}
        for r in range(args.rounds):
            for name, cmd in contenders.items():
                res = run(name, cmd, tmp / "runs" / cmd[cmd.index("--name") + 1] if "--name" in cmd else tmp, env)
                results[name].append(res)
                print(f"round {r + 1} {name}: {res['wall']:.1f} s"
                      + (f", {res['epoch']:.3f} s/epoch" if "epoch" in res else "")
                      + f", test loss {res['test_loss']:.2f}", flush=True)
    print()
    base = statistics.median(x["wall"] for x in results["plain"]) if "plain" in results else None
    print("| process | whole process (s), each round | median | per epoch (s) | final test loss | plain / this |")
    print("|---|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        wall = statistics.median(x["wall"] for x in runs)
        epoch = f"{statistics.median(x['epoch'] for x in runs):.3f}" if "epoch" in runs[0] else ""
        ratio = f"{base / wall:.2f}x" if base else ""
        each = ", ".join(f"{x['wall']:.1f}" for x in runs)
        print(f"| {name} | {each} | {wall:.1f} | {epoch} | "
              f"{runs[-1]['test_loss']:.2f} | {ratio} |")
    for name, runs in results.items():
        if runs[-1].get("time"):
            print(f"\n{name}, last round: {runs[-1]['time']}")
        for note in runs[-1]["notes"]:
            print(f"{name}: {note}")


if __name__ == "__main__":
    main()

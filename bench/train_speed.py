"""Training speed: vae-train against the plain DataLoader loop of the reference recipe, on one device.

Every contender is a whole process (imports, data, CUDA start-up, training, a test pass and the pictures
each epoch), timed from outside, in alternating rounds, all on the device named by --device:
  plain      the reference recipe (pytorch/examples vae/main.py): torchvision dataset, ToTensor, DataLoader
  vae-train  eager steps (on CUDA: --no-cuda-graphs)
  graphs     on CUDA only: vae-train's default, the step captured once as a CUDA graph and replayed
Prints the whole-process and per-epoch times, the final test losses, ratios to the plain loop, and where
vae-train's time went (its closing `time:` line).
    python bench/train_speed.py [--device cpu|cuda] [--epochs 10] [--rounds 2] [--arch mlp] [--extra amp,compile]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda: every contender runs there")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of all contenders")
    ap.add_argument("--arch", default="mlp", help="vae-train's --arch (the plain loop is the reference mlp)")
    ap.add_argument("--extra", default="", help="comma-separated vae-train variants to add: amp, compile")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads of every contender (OMP_NUM_THREADS; 0: torch's default)")
    ap.add_argument("--data", type=Path, default=DEBIAN, help="folder with Fashion-MNIST's IDX .gz files")
    ap.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # internal: run the plain loop once
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
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

"""Training speed: our loop against a plain DataLoader loop of the reference recipe, same data, one process.

Both train the reference MLP on Fashion-MNIST for 10 epochs (batch 128, Adam 1e-3) on the CPU and
evaluate on the test set after every epoch. Prints both times, both final test losses and the ratio.
    python bench/train_speed.py [--epochs 10] [--threads N]
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vae_edge.train.config import Config
from vae_edge.train.data import DEBIAN_DIRS
from vae_edge.train.train import train


class ReferenceVAE(nn.Module):
    """The reference network as published: sigmoid output, BCE on probabilities."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def reference_loss(recon, x, mu, logvar):
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def plain_loop(root: Path, out: Path, epochs: int) -> tuple[float, float]:
    """The reference recipe: torchvision dataset + ToTensor + DataLoader, a training and a test pass per epoch,
    and the reference's pictures (reconstructions, 64 samples) after each epoch, as vae-train draws them too."""
    from torchvision import datasets, transforms
    from torchvision.utils import save_image

    t0 = time.perf_counter()  # from the data's loading, as vae-train's time is measured
    torch.manual_seed(1)
    train_loader = torch.utils.data.DataLoader(
        datasets.FashionMNIST(root, train=True, transform=transforms.ToTensor()), batch_size=128, shuffle=True)
    test_loader = torch.utils.data.DataLoader(
        datasets.FashionMNIST(root, train=False, transform=transforms.ToTensor()), batch_size=128)
    model = ReferenceVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        model.train()
        for x, _ in train_loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = reference_loss(recon, x, mu, logvar)
            loss.backward()
            opt.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for i, (x, _) in enumerate(test_loader):
                recon, mu, logvar = model(x)
                test_loss += reference_loss(recon, x, mu, logvar).item()
                if i == 0:
                    save_image(torch.cat([x[:8], recon.view(-1, 1, 28, 28)[:8]]), out / f"reconstruction_{epoch}.png")
            sample = torch.sigmoid(model.fc4(F.relu(model.fc3(torch.randn(64, 20)))))
            save_image(sample.view(64, 1, 28, 28), out / f"sample_{epoch}.png")
    return time.perf_counter() - t0, test_loss / len(test_loader.dataset)


def torchvision_root(tmp: Path) -> Path:
    """Lay Debian's files out as torchvision's FashionMNIST expects them (raw, uncompressed)."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in DEBIAN_DIRS["fashion-mnist"].glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(tmp))
        print(f"Fashion-MNIST, mlp 784-400-20, batch 128, Adam 1e-3, {args.epochs} epochs, CPU, "
              f"{args.threads} threads, torch {torch.__version__}", flush=True)
        plain_s, plain_loss = plain_loop(root, Path(tmp), args.epochs)
        print(f"plain DataLoader loop done: {plain_s:.1f}s", flush=True)
        t0 = time.perf_counter()
        _, history = train(Config(epochs=args.epochs, data_dir=str(root), out_dir=tmp, name="bench"), quiet=True)
        ours_s = time.perf_counter() - t0  # includes loading the data, writing checkpoints and pictures
    ours_loss = history[-1]["test_loss"]
    print()
    print("| loop | time (s) | final test loss (nats) |")
    print("|---|---:|---:|")
    print(f"| plain DataLoader + ToTensor (reference recipe) | {plain_s:.1f} | {plain_loss:.2f} |")
    print(f"| vae-train (uint8 tensor, sliced batches, fused Adam) | {ours_s:.1f} | {ours_loss:.2f} |")
    print(f"\nratio vae-train / plain: {ours_s / plain_s:.2f}  (target <= 0.5; loss target <= 244.5)")


if __name__ == "__main__":
    main()

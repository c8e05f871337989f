"""The test figures of a run: negative ELBO and its terms each epoch, the IWAE bound at the end, what each means,
and the line printed per epoch. Ranks share the test images; every figure is the whole test set's."""
from __future__ import annotations

import torch

from .config import Config
from .data import TEST_BITS_SEED
from .devices import Ranks, job_sums
from .iwae import iwae_sum
from .model import VAE, elbo_terms

EVAL_BATCH = 1000  # test examples per evaluation step; memory stays small, results don't depend on it


@torch.no_grad()
def evaluate(model: VAE, test_x: torch.Tensor, cfg: Config, ranks: Ranks, device: torch.device,
             amp: bool = False) -> dict:
    """Test negative ELBO (beta = 1, one z per image, analytic KL) and its two terms, per example, in nats.

    test_x: the pixels the likelihood is defined on (`data.pixels`: binary under --binarize).
    """
    model.eval()
    g = torch.Generator(device).manual_seed(cfg.seed + 2)  # the same noise every epoch and every run
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for i in range(0, test_x.shape[0], EVAL_BATCH):
        x = test_x[i:i + EVAL_BATCH]
        eps = torch.randn((x.shape[0], cfg.latent_dim), generator=g, device=device)
        x, eps = x.tensor_split(ranks.world)[ranks.rank], eps.tensor_split(ranks.world)[ranks.rank]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            rec, kld = elbo_terms(model, x, eps)
        sums += torch.stack([rec.sum().double(), kld.sum().double(),
                             torch.tensor(float(x.shape[0]), dtype=torch.float64, device=device)])
    rec, kld, count = job_sums(list(sums), ranks, device)
    return {"test_loss": (rec + kld) / count, "test_rec": rec / count, "test_kl": kld / count}


def iwae(model: VAE, test_x: torch.Tensor, k: int, seed: int, ranks: Ranks = Ranks(),
         device: torch.device = torch.device("cpu"), backend: str = "auto") -> float:
    """Mean IWAE estimate of log p(x) over test_x with k samples an image, in nats (iwae.py); ranks share the images."""
    total, count = iwae_sum(model, test_x.tensor_split(ranks.world)[ranks.rank], k, seed, backend, ranks.main)
    total, count = job_sums([total, float(count)], ranks, device)
    return total / count


def describe(metrics: dict, binarize: bool) -> dict:
    """What each test figure is and the data it was computed on, to travel with the figures."""
    how = {"test_loss": "negative ELBO (test_rec + test_kl): one z per image, analytic KL (with a learned prior or "
                        "two latent layers, the one-z Monte Carlo KL); nats per image"}
    for key in metrics:
        if key.startswith("test_iwae_"):
            how[key] = f"IWAE bound on log p(x), k={key.rsplit('_', 1)[1]} importance samples per image; nats per image"
    pixels = (f"binary: the test set binarized once with seed {TEST_BITS_SEED}, the same bits for every evaluation"
              if binarize else "grey levels in [0, 1]")
    return {"test_pixels": pixels, "estimators": how}


def summary(m: dict, epochs: int) -> str:
    """The line printed after each epoch."""
    line = (f"epoch {m['epoch']}/{epochs}  train {m['train_loss']:.2f}  test -ELBO {m['test_loss']:.2f} "
            f"(rec {m['test_rec']:.2f} + kl {m['test_kl']:.2f})  {m['seconds']:.1f}s  "
            f"{m['examples_per_s']:,.0f} ex/s")
    for k, v in m.items():
        if k.startswith("test_iwae"):
            line += f"  log p(x) >= {v:.2f} (IWAE, k={k.rsplit('_', 1)[1]})"
    return line

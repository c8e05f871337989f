"""The test figures of a run: negative ELBO and its terms each epoch, the IWAE bound at the end, what each means,
and the line printed per epoch. Ranks share the test images; every figure is the whole test set's."""
from __future__ import annotations

import torch

from .config import Config
from .data import TEST_BITS_SEED
from .devices import Ranks, job_sums
from .iwae import iwae_log_likelihood
from .model import VAE, elbo_terms
from .progress import Bar

EVAL_BATCH = 1000  # test examples per evaluation step; memory stays small, results don't depend on it
DECODES_PER_CALL = 4096  # IWAE samples x images decoded per step: big enough to keep the cores busy, small for memory
IMAGES_PER_BATCH = 100  # test images encoded at a time by the IWAE


@torch.no_grad()
def evaluate(model: VAE, test_x: torch.Tensor, cfg: Config, ranks: Ranks, device: torch.device) -> dict:
    """Test negative ELBO (beta = 1, one z per image, analytic KL) and its two terms, per example, in nats.

    test_x: the pixels the likelihood is defined on (`data.pixels`: binary under --binarize). In float32 whatever
    the run trains in (the model is in eval mode: precision.layers).
    """
    model.eval()
    g = torch.Generator(device).manual_seed(cfg.seed + 2)  # the same noise every epoch and every run
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for i in range(0, test_x.shape[0], EVAL_BATCH):
        x = test_x[i:i + EVAL_BATCH]
        eps = torch.randn((x.shape[0], cfg.latent_dim), generator=g, device=device)
        x, eps = x.tensor_split(ranks.world)[ranks.rank], eps.tensor_split(ranks.world)[ranks.rank]
        rec, kld = elbo_terms(model, x, eps)
        sums += torch.stack([rec.sum().double(), kld.sum().double(),
                             torch.tensor(float(x.shape[0]), dtype=torch.float64, device=device)])
    rec, kld, count = job_sums(list(sums), ranks, device)
    return {"test_loss": (rec + kld) / count, "test_rec": rec / count, "test_kl": kld / count}


def iwae(model: VAE, test_x: torch.Tensor, k: int, seed: int, ranks: Ranks = Ranks(),
         device: torch.device = torch.device("cpu"), score=None, route: str = "torch") -> float:
    """Mean IWAE estimate of log p(x) over test_x with k samples an image, in nats (iwae.py); ranks share the images.

    score, route: as in iwae_sum."""
    total, count = iwae_sum(model, test_x.tensor_split(ranks.world)[ranks.rank], k, seed, ranks.main, score, route)
    total, count = job_sums([total, float(count)], ranks, device)
    return total / count


@torch.no_grad()
def iwae_sum(model: VAE, x: torch.Tensor, k: int, seed: int, show_progress: bool = True, score=None,
             route: str = "torch") -> tuple[float, int]:
    """(sum over the images of their IWAE estimates of log p(x) with k samples, number of images), in nats.

    x holds the pixels the likelihood is defined on (`data.pixels`: binary for a --binarize model),
    IMAGES_PER_BATCH at a time. The noise comes from `seed`, whatever computes the log-weights: score (see
    iwae_log_likelihood; Score in torch by default), named `route` on the progress bar.
    """
    model.eval()
    g = torch.Generator(x.device).manual_seed(seed + 3)
    total = 0.0
    with Bar(x.shape[0] * k, f"IWAE k={k} ({route})", show_progress, unit="decodes") as bar:
        for i in range(0, x.shape[0], IMAGES_PER_BATCH):
            batch = x[i:i + IMAGES_PER_BATCH]
            chunk = max(1, DECODES_PER_CALL // batch.shape[0])
            ll = iwae_log_likelihood(model, batch, k, g, chunk=chunk, score=score)
            total += ll.sum().item()
            bar.advance(batch.shape[0] * k)
    return total, x.shape[0]


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

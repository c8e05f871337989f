"""`vae-train`: a thin command line over vae_edge.train (vae-eval is export/evaluate.py: it scores folders too)."""
from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: vae-train's closing time line counts them as start-up

import os
import sys
from typing import Annotated, Optional

import typer

from vae_edge.runtime.errors import fail, os_error

from .config import BF16_ON_CPU_BY_DEFAULT, Config

D = Config()  # the defaults live in one place
train_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                        help="Fit the VAE and write runs/<name>/model.pt.")


@train_app.command()
def train_cmd(
    dataset: Annotated[str, typer.Option(
        help="fashion-mnist, mnist, kmnist, a folder of PNG/JPEG images, or an .npy file (N x H x W or N x C x H x W, "
             "uint8 or float in [0, 1]).")] = D.dataset,
    data_dir: Annotated[str, typer.Option(
        help="Where named datasets are looked for (and downloaded to when missing).")] = D.data_dir,
    arch: Annotated[str, typer.Option(
        help="mlp (the reference network) or conv (stride-2 stages picked from H and W: docs/training.md).")] = D.arch,
    hidden_dim: Annotated[int, typer.Option(help="Width of the hidden layer.")] = D.hidden_dim,
    latent_dim: Annotated[int, typer.Option(
        help="Size of z, the decoder's input; with --latent-layers 2, of [z1, z2] together (half "
             "each).")] = D.latent_dim,
    prior: Annotated[str, typer.Option(
        help="gaussian: N(0, I); vamp: the VampPrior, a mixture of the encoder's posteriors at --prior-components "
             "learned pseudo-inputs.")] = D.prior,
    prior_components: Annotated[int, typer.Option(
        help="--prior vamp: the number of pseudo-inputs K.")] = D.prior_components,
    latent_layers: Annotated[int, typer.Option(
        help="1, or 2: a hierarchy p(z2) p(z1|z2) p(x|z1,z2) inferred as q(z2|x) q(z1|x,z2) "
             "(HVAE).")] = D.latent_layers,
    likelihood: Annotated[str, typer.Option(
        help="Pixel likelihood: bernoulli (the reference's BCE; a proper likelihood with --binarize), or "
             "continuous-bernoulli (a normalised density for grey levels).")] = D.likelihood,
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = D.epochs,
    batch_size: Annotated[int, typer.Option(
        help="Examples per step (global, across torchrun processes).")] = D.batch_size,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = D.lr,
    lr_schedule: Annotated[str, typer.Option(
        help="constant, or cosine: from --lr down to 0 at the last step.")] = D.lr_schedule,
    beta: Annotated[float, typer.Option(help="Weight of the KL term (1 is the ELBO).")] = D.beta,
    kl_warmup: Annotated[float, typer.Option(
        help="Epochs over which the KL weight ramps up from 0 to beta (0: none).")] = D.kl_warmup,
    train_k: Annotated[int, typer.Option(
        help="Importance samples per image in the training objective: 1 trains the ELBO (analytic KL), K > 1 the IWAE "
             "bound with K samples (K decodes per image).")] = D.train_k,
    train_k_epochs: Annotated[int, typer.Option(
        help="With --train-k K: the last N epochs alone train the IWAE bound, the epochs before the ELBO (IWAE "
             "fine-tuning); 0: every epoch.")] = D.train_k_epochs,
    ema: Annotated[float, typer.Option(
        help="Average the weights as training goes, average <- d * average + (1 - d) * weights after each step, "
             "with decay d (0.9995: about the last 2,000 steps); the test figures and model.pt use the average. "
             "0: off.")] = D.ema,
    binarize: Annotated[bool, typer.Option(
        help="Binarize training pixels afresh each batch, the test set once with a fixed seed (a proper Bernoulli "
             "likelihood; comparable to published numbers).")] = D.binarize,
    classes: Annotated[Optional[str], typer.Option(
        help="Labelled data sets: train (and test) on these classes only, e.g. 0,3.")] = None,
    exclude_classes: Annotated[Optional[str], typer.Option(
        help="Labelled data sets: train (and test) on every class but these, e.g. 0,3: a model of normal data "
             "for anomaly detection (vae-score).")] = None,
    image_size: Annotated[str, typer.Option(
        help="Image folders: N (N x N) or HxW (as 64x48); each image is stretched to it (bilinear), not cropped or "
             "padded.")] = str(D.image_size),
    channels: Annotated[int, typer.Option(help="Image folders: 1 (grayscale) or 3 (RGB).")] = D.channels,
    background: Annotated[str, typer.Option(
        help="Image folders: transparent pixels are composited onto this colour: white, black or #RRGGBB (recorded "
             "in the recipe; vae-encode and vae-score composite onto it too).")] = D.background,
    cache_dir: Annotated[Optional[str], typer.Option(
        help="Image folders are decoded once into a cache here; default $VAE_EDGE_CACHE_DIR, else "
             "$XDG_CACHE_HOME/vae-edge/images, else ~/.cache/vae-edge/images.")] = None,
    clear_cache: Annotated[bool, typer.Option(
        help="Empty the image cache (of --cache-dir, or the default) and exit.")] = False,
    strict: Annotated[bool, typer.Option(
        help="Image folders: an unreadable file stops the run (else it is named, skipped and counted).")] = False,
    data_access: Annotated[str, typer.Option(
        help="auto: the train split of an image folder or uint8 .npy is read into memory where it takes at most half "
             "the memory available, else read from its memory map a batch at a time (bounded memory); memory; "
             "mapped.")] = D.data_access,
    test_fraction: Annotated[float, typer.Option(
        help="Folders and .npy files: share held out as the test split.")] = D.test_fraction,
    seed: Annotated[int, typer.Option(
        help="Seeds the weights, the batch order and the noise; CPU runs with one seed are identical.")] = D.seed,
    device: Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")] = D.device,
    amp: Annotated[Optional[bool], typer.Option(
        "--amp/--no-amp", show_default=False,
        help="bf16 autocast over the network's layers (the likelihood, the KL, log-sum-exp and every test figure "
             "stay float32), on CUDA or a CPU with bf16 instructions (avx512_bf16, amx_bf16). Default: "
             + ("bf16 on such a CPU, float32 elsewhere" if BF16_ON_CPU_BY_DEFAULT else "float32")
             + "; the run's first line says which and why.")] = D.amp,
    channels_last: Annotated[bool, typer.Option(
        help="--arch conv: weights and batches in channels-last (NHWC) memory.")] = D.channels_last,
    compile: Annotated[bool, typer.Option(help="Compile the model with torch.compile.")] = D.compile,
    cuda_graphs: Annotated[bool, typer.Option(
        help="On CUDA, capture the training step once as a CUDA graph and replay it (no per-kernel launch cost); "
             "--no-cuda-graphs trains eagerly. Off under torchrun.")] = D.cuda_graphs,
    iwae_k: Annotated[int, typer.Option(
        help="After the last epoch, estimate the test log-likelihood with K importance samples (0: skip).")] = D.iwae_k,
    out_dir: Annotated[str, typer.Option(help="Folder that holds the runs.")] = D.out_dir,
    name: Annotated[str, typer.Option(help="The run's name: outputs go to OUT_DIR/NAME/.")] = D.name,
    resume: Annotated[Optional[str], typer.Option(
        help="Continue the run in this folder (runs/<name>) from its last.pt; its saved settings are used.")] = None,
    force: Annotated[bool, typer.Option(help="Start over in a run folder that already holds a run.")] = False,
):
    """Fit the VAE and write model.pt (final), last.pt (resumable), metrics.jsonl and sample grids.

    Ctrl-C or SIGTERM saves last.pt and exits; --resume continues exactly where it stopped.
    """
    from .checkpoint import CheckpointError
    from .data import DataError, parse_classes
    from .train import Interrupted, TrainError, train

    if clear_cache:
        _clear_cache(cache_dir)
        return
    try:
        classes, exclude_classes = parse_classes(classes, "--classes"), parse_classes(exclude_classes,
                                                                                       "--exclude-classes")
    except DataError as e:
        fail(str(e))
    cfg = Config(arch=arch, hidden_dim=hidden_dim, latent_dim=latent_dim, likelihood=likelihood, prior=prior,
                 prior_components=prior_components, latent_layers=latent_layers, dataset=dataset,
                 data_dir=data_dir, image_size=int(image_size) if image_size.isdigit() else image_size,
                 channels=channels, background=background, data_access=data_access, test_fraction=test_fraction,
                 binarize=binarize, classes=classes, exclude_classes=exclude_classes, epochs=epochs,
                 batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, beta=beta,
                 kl_warmup=kl_warmup, train_k=train_k, train_k_epochs=train_k_epochs, ema=ema, seed=seed, device=device,
                 amp=amp, channels_last=channels_last, compile=compile,
                 cuda_graphs=cuda_graphs, iwae_k=iwae_k, out_dir=out_dir, name=name)
    try:
        train(cfg, resume=resume, force=force, started=STARTED, cache_dir=cache_dir, strict=strict)
    except Interrupted as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one message for the one checkpoint
            typer.echo(f"interrupted: saved {e.path}; continue with: vae-train --resume {e.path.parent}", err=True)
        raise typer.Exit(128 + e.signum)
    except (TrainError, DataError, CheckpointError, ValueError) as e:
        fail(str(e))
    except OSError as e:  # a failed write (a full disk, a file too large): name the file
        fail(os_error(e))
    finally:
        _leave_process_group()


def _clear_cache(cache_dir: str | None) -> None:
    from .image_cache import cache_root, clear

    root = cache_root(cache_dir)
    try:
        count, freed = clear(root)
    except OSError as e:
        fail(os_error(e))
    typer.echo(f"removed {count} image cache{'s' * (count != 1)} ({freed / 1e6:,.1f} MB) from {root}")


def _leave_process_group() -> None:
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

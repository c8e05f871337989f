"""`vae-train` and `vae-eval`: thin command lines over vae_edge.train."""
from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: vae-train's closing time line counts them as start-up

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import Config

D = Config()  # the defaults live in one place
train_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                        help="Fit the VAE and write runs/<name>/model.pt.")
eval_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                       help="Evaluate a saved model.pt, or an exported folder, on its test split.")


def _fail(msg: str, code: int = 2):
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@train_app.command()
def train_cmd(
    dataset: Annotated[str, typer.Option(
        help="fashion-mnist, mnist, kmnist, a folder of PNG/JPEG images, or an .npy file (N x H x W or N x C x H x W, "
             "uint8 or float in [0, 1]).")] = D.dataset,
    data_dir: Annotated[str, typer.Option(
        help="Where named datasets are looked for (and downloaded to when missing).")] = D.data_dir,
    arch: Annotated[str, typer.Option(
        help="mlp (the reference network) or conv (needs H and W divisible by 4).")] = D.arch,
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
    binarize: Annotated[bool, typer.Option(
        help="Binarize training pixels afresh each batch, the test set once with a fixed seed (a proper Bernoulli "
             "likelihood; comparable to published numbers).")] = D.binarize,
    classes: Annotated[Optional[str], typer.Option(
        help="Labelled data sets: train (and test) on these classes only, e.g. 0,3.")] = None,
    exclude_classes: Annotated[Optional[str], typer.Option(
        help="Labelled data sets: train (and test) on every class but these, e.g. 0,3: a model of normal data "
             "for anomaly detection (vae-score).")] = None,
    image_size: Annotated[int, typer.Option(help="Image folders: resize to this height and width.")] = D.image_size,
    channels: Annotated[int, typer.Option(help="Image folders: 1 (grayscale) or 3 (RGB).")] = D.channels,
    test_fraction: Annotated[float, typer.Option(
        help="Folders and .npy files: share held out as the test split.")] = D.test_fraction,
    seed: Annotated[int, typer.Option(
        help="Seeds the weights, the batch order and the noise; CPU runs with one seed are identical.")] = D.seed,
    device: Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")] = D.device,
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = D.amp,
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

    try:
        classes, exclude_classes = parse_classes(classes, "--classes"), parse_classes(exclude_classes,
                                                                                       "--exclude-classes")
    except DataError as e:
        _fail(str(e))
    cfg = Config(arch=arch, hidden_dim=hidden_dim, latent_dim=latent_dim, likelihood=likelihood, prior=prior,
                 prior_components=prior_components, latent_layers=latent_layers, dataset=dataset,
                 data_dir=data_dir, image_size=image_size, channels=channels, test_fraction=test_fraction,
                 binarize=binarize, classes=classes, exclude_classes=exclude_classes, epochs=epochs,
                 batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, beta=beta,
                 kl_warmup=kl_warmup, train_k=train_k, seed=seed, device=device, amp=amp, compile=compile,
                 cuda_graphs=cuda_graphs, iwae_k=iwae_k, out_dir=out_dir, name=name)
    try:
        train(cfg, resume=resume, force=force, started=STARTED)
    except Interrupted as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one message for the one checkpoint
            typer.echo(f"interrupted: saved {e.path}; continue with: vae-train --resume {e.path.parent}", err=True)
        raise typer.Exit(128 + e.signum)
    except (TrainError, DataError, CheckpointError, ValueError) as e:
        _fail(str(e))
    except OSError as e:  # a failed write (a full disk, a file too large): name the file
        _fail(_os_error(e))
    finally:
        _leave_process_group()


@eval_app.command()
def eval_cmd(
    model: Annotated[Path, typer.Argument(
        help="A model.pt (or last.pt) written by vae-train, or a folder written by vae-export (scored from its "
             "score.onnx alone).")],
    iwae_k: Annotated[int, typer.Option(
        help="Importance samples per test example for log p(x) (0: ELBO only; published binarized-MNIST figures use "
             "5000).")] = 1000,
    iwae_backend: Annotated[str, typer.Option(
        help="auto (onnxruntime on the CPU, else torch), torch or onnxruntime: the same estimate from the same "
             "noise.")] = "auto",
    dataset: Annotated[Optional[str], typer.Option(
        help="Evaluate on this dataset instead of the one it was trained on.")] = None,
    data_dir: Annotated[Optional[str], typer.Option(help="Where named datasets are looked for.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    limit: Annotated[int, typer.Option(help="Use only the first LIMIT test examples (0: all).")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", 
        help="Also write the results to this JSON file.")] = None,
    record: Annotated[bool, typer.Option(
        help="A folder: write the IWAE figure, and how it was computed, into its vae.json's metrics (vae-info prints "
             "it).")] = False,
):
    """Test negative ELBO and, with --iwae-k, the importance-sampled log-likelihood of a saved model.

    Both are computed on the pixels the model's likelihood is defined on: for a --binarize model, the test
    set binarized once with a fixed seed (the bits vae-train evaluated on). An exported folder gets the IWAE
    alone, from its own files (train/score.py).
    """
    import time

    from vae_edge.runtime import RuntimeInputError
    from vae_edge.runtime.outputs import check_output

    from . import checkpoint
    from .data import DataError, load_data, pixels, select_classes
    from .iwae import pick_backend
    from .model import VAE
    from .devices import Ranks, pick_device
    from .errors import TrainError
    from .evaluation import describe, evaluate, iwae

    if json_out is not None:
        try:
            check_output(json_out, "--json")
        except RuntimeInputError as e:
            _fail(str(e))
    if model.is_dir():
        return _eval_folder(model, iwae_k, data_dir, limit, json_out, record)
    if record:
        _fail("--record writes into an exported folder's vae.json; give the folder, not a checkpoint")
    try:
        ckpt = checkpoint.load(model)
        if not checkpoint.is_vae_edge(ckpt):
            raise TrainError(f"{model} is not a vae-train checkpoint")
        cfg = Config.from_dict(ckpt["config"])
        cfg.dataset, cfg.data_dir = dataset or cfg.dataset, data_dir or cfg.data_dir
        dev = pick_device(device)
        if iwae_k < 0:
            raise TrainError(f"--iwae-k must be 0 or more, got {iwae_k}")
        backend = pick_backend(iwae_backend, dev)
        net = VAE.from_config(cfg.model()).to(dev)
        net.load_state_dict(ckpt["state_dict"])
        data = load_data(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.channels, cfg.test_fraction, cfg.seed)
        data = select_classes(data, cfg.classes, cfg.exclude_classes)
        if data.shape != tuple(cfg.input_shape):
            raise TrainError(f"{cfg.dataset} has images of {data.shape}, the model takes {tuple(cfg.input_shape)}")
    # typer.Exit is a RuntimeError too: raise our own errors in here, and fail only below.
    except (checkpoint.CheckpointError, DataError, TrainError, RuntimeError, KeyError, ValueError) as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    test_x = pixels(data.test, cfg.binarize)  # binarized as a whole, so --limit keeps the same bits
    test_x = (test_x[:limit] if limit > 0 else test_x).to(dev)
    result = {"model": str(model), "dataset": cfg.dataset, "examples": int(test_x.shape[0])}
    result.update(evaluate(net, test_x, cfg, Ranks(), dev))
    if iwae_k > 0:
        t0 = time.perf_counter()
        result[f"test_iwae_{iwae_k}"] = iwae(net, test_x, iwae_k, cfg.seed, Ranks(), dev, backend)
        result["iwae_seconds"] = time.perf_counter() - t0
        result["iwae_backend"] = backend
    result.update(describe(result, cfg.binarize))
    _report(result, json_out)


def _eval_folder(folder: Path, k: int, data_dir, limit: int, json_out, record: bool) -> None:
    from vae_edge.runtime import ModelFolderError, RuntimeInputError

    from .data import DataError
    from .errors import TrainError
    from .score import score_folder

    if k < 1:
        _fail(f"an exported folder is scored by the IWAE alone: --iwae-k must be 1 or more, got {k}")
    if record and limit:
        _fail("--record keeps the whole test set's figure: drop --limit")
    try:
        result = score_folder(folder, k, data_dir, limit, record)
    except (ModelFolderError, RuntimeInputError, DataError, TrainError) as e:
        _fail(str(e).splitlines()[0])
    except OSError as e:  # --record could not write vae.json
        _fail(_os_error(e))
    _report(result, json_out)
    if record:
        typer.echo(f"recorded in {folder / 'vae.json'} (metrics.iwae)")


def _report(result: dict, json_out) -> None:
    how = result.get("estimators", {})
    for k, v in result.items():
        if k == "estimators":
            continue
        text = f"{v:.3f}" if isinstance(v, float) else str(v)
        typer.echo(f"{k:>16}: {text}" + (f"  ({how[k]})" if k in how else ""))
    if json_out:
        from vae_edge.runtime.outputs import write_text

        try:
            write_text(json_out, json.dumps(result, indent=2) + "\n")
        except OSError as e:
            _fail(_os_error(e))


def _os_error(e: OSError) -> str:
    return f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)


def _leave_process_group() -> None:
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

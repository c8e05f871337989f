"""`vae-eval`: the test figures of a vae-train checkpoint (negative ELBO, IWAE in torch or onnxruntime), or an exported
folder's IWAE from its own score.onnx (score.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vae_edge.runtime.errors import fail, one_line, os_error
from vae_edge.train.config import Config

eval_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                       help="Evaluate a saved model.pt, or an exported folder, on its test split.")


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
             "it); with --limit N, the first N test images' figure, recorded as that.")] = False,
):
    """Test negative ELBO and, with --iwae-k, the importance-sampled log-likelihood of a saved model.

    Both are computed on the pixels the model's likelihood is defined on: for a --binarize model, the test
    set binarized once with a fixed seed (the bits vae-train evaluated on). An exported folder gets the IWAE
    alone, from its own files (export/score.py).
    """
    import time

    from vae_edge.train import checkpoint
    from vae_edge.train.data import DataError, load_data, pixels, select_classes
    from vae_edge.train.devices import Ranks, pick_device
    from vae_edge.train.errors import TrainError
    from vae_edge.train.evaluation import describe, evaluate, iwae
    from vae_edge.train.model import VAE

    from vae_edge.runtime import RuntimeInputError
    from vae_edge.runtime.outputs import check_output

    from .score_graph import pick_backend, scorer

    if json_out is not None:
        try:
            check_output(json_out, "--json")
        except RuntimeInputError as e:
            fail(str(e))
    if model.is_dir():
        return _eval_folder(model, iwae_k, data_dir, limit, json_out, record)
    if record:
        fail("--record writes into an exported folder's vae.json; give the folder, not a checkpoint")
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
        net = VAE.from_config(cfg.architecture()).to(dev)
        net.load_state_dict(ckpt["state_dict"])
        data = load_data(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.channels, cfg.test_fraction, cfg.seed,
                         background=cfg.background, keep_mapped=True)  # the train split is not read
        data = select_classes(data, cfg.classes, cfg.exclude_classes)
        if data.shape != tuple(cfg.input_shape):
            raise TrainError(f"{cfg.dataset} has images of {data.shape}, the model takes {tuple(cfg.input_shape)}")
    except (checkpoint.CheckpointError, DataError, TrainError, RuntimeError, KeyError, ValueError) as e:
        fail(one_line(e))
    test_x = pixels(data.test_tensor(), cfg.binarize)  # binarized as a whole, so --limit keeps the same bits
    test_x = (test_x[:limit] if limit > 0 else test_x).to(dev)
    result = {"model": str(model), "dataset": cfg.dataset, "examples": int(test_x.shape[0])}
    result.update(evaluate(net, test_x, cfg, Ranks(), dev))
    if iwae_k > 0:
        t0 = time.perf_counter()
        result[f"test_iwae_{iwae_k}"] = iwae(net, test_x, iwae_k, cfg.seed, Ranks(), dev, scorer(net, backend), backend)
        result["iwae_seconds"] = time.perf_counter() - t0
        result["iwae_backend"] = backend
    result.update(describe(result, cfg.binarize))
    _report(result, json_out)


def _eval_folder(folder: Path, k: int, data_dir, limit: int, json_out, record: bool) -> None:
    from vae_edge.runtime import ModelFolderError, RuntimeInputError

    from vae_edge.train.data import DataError
    from vae_edge.train.errors import TrainError

    from .score import score_folder

    if k < 1:
        fail(f"an exported folder is scored by the IWAE alone: --iwae-k must be 1 or more, got {k}")
    try:
        result = score_folder(folder, k, data_dir, limit, record)
    except (ModelFolderError, RuntimeInputError, DataError, TrainError) as e:
        fail(one_line(e))
    except OSError as e:  # --record could not write vae.json
        fail(os_error(e))
    _report(result, json_out)
    if record:
        part = f", the first {limit} test images" if limit else ""
        typer.echo(f"recorded in {folder / 'vae.json'} (metrics.iwae{part})")


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
            fail(os_error(e))


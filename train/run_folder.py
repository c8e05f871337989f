"""A run's folder (runs/NAME/): model.pt at the end; after each epoch last.pt (to resume), metrics.jsonl, the
learning curves (curves.png) and the pictures (samples.png, reconstructions.png). Every file is written
atomically; the PNGs by the runtime's writer (vae_edge.runtime.images, on runtime/png.py: no onnxruntime, no
torchvision)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from vae_edge.runtime.outputs import not_a_file, write_text

from . import checkpoint, curves
from .config import Config
from .errors import TrainError
from .model import VAE
from .step import portable_state


OUTPUTS = ("model.pt", "last.pt", "metrics.jsonl", "curves.png", "samples.png", "reconstructions.png")
RECONSTRUCTIONS = 32  # test images shown above their reconstructions each epoch


def run_dir(cfg: Config) -> Path:
    return Path(cfg.out_dir) / cfg.name


def load_resumable(resume: str) -> tuple[dict, Path]:
    """(the checkpoint, its path) of the run to continue: a run folder (its last.pt) or a last.pt."""
    last = Path(resume) / "last.pt" if Path(resume).is_dir() else Path(resume)
    if not last.is_file():
        raise TrainError(f"nothing to resume: {last} does not exist")
    state = checkpoint.load(last)
    if not checkpoint.is_vae_edge(state) or "optimizer" not in state:
        raise TrainError(f"{last} is not a resumable vae-train checkpoint")
    return state, last


def check_run_folder(out: Path) -> None:
    """Before a run starts: its folder is a folder (or not there yet), and each file it writes is a regular file
    (or not there yet), so that no output replaces a symlink, a device or a FIFO."""
    if os.path.lexists(out) and not out.is_dir():  # a symlink to a folder is a folder to write in
        raise TrainError(f"the run folder {out} is {not_a_file(out) or 'a file'}, not a folder; "
                         f"pick another --name or --out-dir")
    for name in OUTPUTS:
        what = not_a_file(out / name)
        if what:
            raise TrainError(f"{out / name} is {what}, not a regular file; refusing to replace it")


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """A PNG grid laid out as torchvision's save_image does (importing torchvision would cost a second)."""
    from vae_edge.runtime.images import save_grid as write_grid

    write_grid(images.float().cpu().numpy(), path, nrow=nrow)


def final_checkpoint(model: VAE, cfg: Config, history: list[dict]) -> dict:
    """The exportable checkpoint: config, weights and metrics, no training state."""
    return {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "config": cfg.to_dict(),
            # contiguous: a channels-last run's conv weights saved in the usual layout
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            "metrics": history}


def resume_state(model, opt, cfg, history, epoch, step, perm_state, noise_gen, sums, ema=None) -> dict:
    """final_checkpoint of the trained weights plus what continuing needs: the optimizer, where the loop is, the
    generators, the sums of the epoch so far, and the weights' average (--ema)."""
    ckpt = final_checkpoint(model, cfg, history)
    ckpt.update(optimizer=portable_state(opt), epoch=epoch, step=step, perm_rng=perm_state,
                noise_rng=noise_gen.get_state(), partial=sums)
    if ema is not None:
        ckpt["ema_state_dict"] = final_checkpoint(ema.model, cfg, history)["state_dict"]
    return ckpt


def save_epoch(out: Path, model, opt, cfg, history, epoch, perm_gen, noise_gen, test_images, device, clock,
               ema=None) -> None:
    """After an epoch: last.pt, metrics.jsonl, curves.png, samples.png and reconstructions.png (of the weights'
    average where there is one)."""
    checkpoint.save(resume_state(model, opt, cfg, history, epoch + 1, 0, perm_gen.get_state(), noise_gen, [0.0, 0.0],
                                 ema), out / "last.pt")
    model = ema.model if ema is not None else model
    write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in history))
    clock.lap("checkpoints")
    curves.draw(history, out / "curves.png")
    model.eval()
    with torch.no_grad():
        g = torch.Generator(device).manual_seed(cfg.seed)  # the same 64 z every epoch, to watch them improve
        z = torch.randn((64, cfg.latent_dim), generator=g, device=device)
        z = model.prior.sample(z, torch.rand(64, generator=g, device=device))  # z itself under N(0, I), one layer
        save_grid(model.probs(z), out / "samples.png")
        x = test_images[:RECONSTRUCTIONS].float() / 255
        recon = model.probs(model.encode(x)[0])
        # Rows of 8 originals, each above its row of reconstructions.
        rows = [r for pair in zip(x.split(8), recon.split(8)) for r in pair]
        save_grid(torch.cat(rows), out / "reconstructions.png", nrow=min(8, x.shape[0]))
    clock.lap("pictures")

"""Training runs on the real data, kept between test runs in .cache/trained/ (as .cache/compat keeps venvs).

A run of train() is a function of its config, the training code, the data, the libraries and the CPU that ran it:
the slow tests' runs on Fashion-MNIST (minutes of the suite) would repeat unchanged on every make test. The file's
name is a hash of all of those, so a change to any of them (a line of vae_edge, a torch release, another thread
count) trains again, and a test reads the weights and figures of a run of the code as it stands; where .cache/
is empty (a fresh clone), each test trains.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import torch

import vae_edge
import vae_edge.export
import vae_edge.runtime
import vae_edge.train
from conftest import REPO
from vae_edge.train import checkpoint
from vae_edge.train.config import Config
from vae_edge.train.data import load_data
from vae_edge.train.model import VAE
from vae_edge.train.train import train

CACHE = REPO / ".cache" / "trained"
KEEP = 16  # runs kept, the most recently used: each change to the package makes new ones (a few MB each)


def cpu_name() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


@functools.cache
def source_digest() -> str:
    """sha256 of every source file of vae_edge, as it stands when a test run first asks."""
    h = hashlib.sha256()
    for package in (vae_edge, vae_edge.train, vae_edge.export, vae_edge.runtime):
        code = Path(package.__file__).parent
        for path in sorted(code.glob("*.py")):
            h.update(f"{package.__name__}/{path.name}".encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def keep(kept: Path, write, most: int) -> None:
    """write(part) makes the file, which then becomes `kept` whole (or not at all); of the files of its suffix in its
    folder, the `most` most recently used stay."""
    kept.parent.mkdir(parents=True, exist_ok=True)
    part = kept.with_suffix(f".{os.getpid()}.part")
    write(part)
    os.replace(part, kept)
    for old in sorted(kept.parent.glob(f"*{kept.suffix}"), key=_last_used, reverse=True)[most:]:
        old.unlink(missing_ok=True)


def _last_used(path: Path) -> float:
    """A file's mtime, or 0 where another process has just dropped it (processes share the cache)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def run_key(cfg: Config) -> str:
    """sha256 of what decides the run: the config (less where it writes), every source file of vae_edge (the
    training code and what it imports from the export and the runtime), the images that load_data gives for the
    config, torch's and numpy's versions, the CPU and torch's thread count."""
    h = hashlib.sha256()
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("out_dir", "name")}
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(source_digest().encode())
    data = load_data(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.channels, cfg.test_fraction, cfg.seed,
                     download=False, background=cfg.background)
    for images in (data.train, data.test):
        h.update(str(tuple(images.shape)).encode() + images.numpy().tobytes())
    h.update(f"{torch.__version__} {np.__version__} {cpu_name()} {torch.get_num_threads()}".encode())
    return h.hexdigest()


def train_cached(cfg: Config) -> tuple[VAE, list[dict]]:
    """train(cfg, quiet=True): the model (from its model.pt, in eval mode) and the metrics of each epoch; the
    model.pt is kept in .cache/trained/ and read instead of training when the key matches."""
    kept = CACHE / f"{run_key(cfg)}.pt"
    try:
        os.utime(kept)  # used now: the last to be dropped
        ckpt = checkpoint.load(kept)
    except (FileNotFoundError, checkpoint.CheckpointError):  # not kept, dropped by another process since, or damaged
        train(cfg, quiet=True)
        made = Path(cfg.out_dir) / cfg.name / "model.pt"
        keep(kept, lambda part: shutil.copyfile(made, part), KEEP)
        ckpt = checkpoint.load(made)
    model = VAE.from_config(Config.from_dict(ckpt["config"]).architecture())
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt["metrics"]

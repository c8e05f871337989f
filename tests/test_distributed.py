"""Training under torchrun: two CPU processes with gloo train like one process would."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import BIN, REPO
from vae_edge.train import checkpoint
from vae_edge.train.config import Config
from vae_edge.train.train import train


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """One epoch of 2-process training on the tiny blobs (85 examples: the last global batch is uneven)."""
    import numpy as np

    from conftest import blobs

    out = tmp_path_factory.mktemp("ddp")
    np.save(out / "tiny.npy", blobs(94))
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "ddp_worker.py"), str(out / "tiny.npy"), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.slow
def test_both_ranks_end_with_identical_parameters(ddp_run):
    r0, r1 = torch.load(ddp_run / "rank0.pt"), torch.load(ddp_run / "rank1.pt")
    assert all(torch.equal(r0[k], r1[k]) for k in r0)


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(ddp_run, tmp_path):
    cfg = Config(dataset=str(ddp_run / "tiny.npy"), out_dir=str(tmp_path), name="single", epochs=1,
                 hidden_dim=32, latent_dim=4, batch_size=16, amp=False)  # as ddp_worker.py: float32
    model, history = train(cfg, quiet=True)
    ddp = torch.load(ddp_run / "rank0.pt")
    for k, v in model.state_dict().items():
        assert torch.allclose(v, ddp[k], atol=1e-4, rtol=0), k
    ddp_metrics = checkpoint.load(ddp_run / "ddp" / "model.pt")["metrics"][-1]
    for key in ("train_loss", "test_loss", "test_rec", "test_kl"):
        assert ddp_metrics[key] == pytest.approx(history[-1][key], rel=1e-4), key


@pytest.mark.slow
def test_only_rank_0_writes_and_its_checkpoint_holds_the_plain_module(ddp_run):
    run = ddp_run / "ddp"
    assert {p.name for p in run.iterdir()} == {"model.pt", "last.pt", "metrics.jsonl", "curves.png", "samples.png",
                                               "reconstructions.png"}
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    state = checkpoint.load(run / "model.pt")["state_dict"]
    assert not any(k.startswith("module.") for k in state)


@pytest.mark.slow
def test_the_distributed_checkpoint_exports_with_parity(ddp_run, tmp_path):
    from vae_edge.export import export_checkpoint

    info = export_checkpoint(ddp_run / "ddp" / "model.pt", tmp_path / "onnx")
    assert max(info["parity"][k] for k in ("mu", "logvar", "x")) <= 1e-5

"""Weight averaging (--ema): the average follows the weights step by step, the test figures and model.pt use it, and
last.pt keeps the trained weights to go on from (resume: tests/test_precision.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import blobs, run_cli
from vae_edge.train import checkpoint
from vae_edge.train import train as train_mod
from vae_edge.train.config import Config
from vae_edge.train.ema import Ema


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "blobs.npy"
    np.save(path, blobs(120, seed=3))
    return path


def _cfg(tmp_path, npy, name, **kw):
    base = dict(dataset=str(npy), out_dir=str(tmp_path / "runs"), name=name, arch="conv", hidden_dim=8, latent_dim=4,
                batch_size=16, epochs=2, test_fraction=0.1, binarize=True, amp=False, ema=0.9)
    return Config(**{**base, **kw})


def test_each_update_moves_the_average_one_minus_decay_of_the_way_to_the_weights():
    net = torch.nn.Linear(5, 3)
    ema = Ema(net, 0.75)
    before = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    ema.update()
    for avg, old, new in zip(ema.model.parameters(), before, net.parameters()):
        torch.testing.assert_close(avg, 0.75 * old + 0.25 * new, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_model_pt_holds_the_average_and_last_pt_the_trained_weights_beside_it(tmp_path, npy):
    returned, _ = train_mod.train(_cfg(tmp_path, npy, "run"), quiet=True)
    model = checkpoint.load(tmp_path / "runs" / "run" / "model.pt")
    last = checkpoint.load(tmp_path / "runs" / "run" / "last.pt")
    assert model["config"]["ema"] == 0.9
    for k, v in model["state_dict"].items():
        assert torch.equal(v, last["ema_state_dict"][k]), k
        assert torch.equal(v, returned.state_dict()[k].contiguous()), k
    assert any(not torch.equal(v, last["state_dict"][k]) for k, v in model["state_dict"].items())


def test_the_last_epoch_records_the_trained_weights_test_loss_beside_the_averages(tmp_path, npy):
    train_mod.train(_cfg(tmp_path, npy, "run"), quiet=True)
    metrics = [json.loads(s) for s in (tmp_path / "runs" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "test_loss_trained_weights" not in metrics[0]
    assert metrics[-1]["test_loss_trained_weights"] != metrics[-1]["test_loss"]


def test_without_ema_no_average_is_kept(tmp_path, npy):
    train_mod.train(_cfg(tmp_path, npy, "run", ema=0.0, epochs=1), quiet=True)
    assert "ema_state_dict" not in checkpoint.load(tmp_path / "runs" / "run" / "last.pt")


@pytest.mark.parametrize("decay", ["1", "-0.1"])
def test_a_decay_outside_0_to_1_is_refused_in_one_line(tmp_path, tiny_npy, decay):
    r = run_cli("vae-train", "--dataset", tiny_npy, "--ema", decay, "--out-dir", tmp_path / "runs", "--epochs", 1)
    assert r.returncode == 2
    assert r.stderr.startswith("error: --ema is a decay in [0, 1)") and "Traceback" not in r.stderr

"""On a CUDA GPU: the training step captured as a CUDA graph, resume, and torchrun with NCCL.

Marked `gpu`: skipped, with the reason, where torch sees no CUDA device (CI has none).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from conftest import BIN, blobs
from vae_edge.train import checkpoint
from vae_edge.train.config import Config
from vae_edge.train.train import train

pytestmark = pytest.mark.gpu


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "blobs.npy"
    np.save(path, blobs(400, seed=3))  # 360 training images: 22 full batches of 16 and one of 8 an epoch
    return path


def _train(npy, tmp_path, name, capsys=None, **kw):
    cfg = Config(dataset=str(npy), out_dir=str(tmp_path), name=name, hidden_dim=64, latent_dim=4,
                 batch_size=16, device="cuda", **kw)
    model, history = train(cfg)
    return model, history, capsys.readouterr().out if capsys else ""


@pytest.mark.parametrize("arch,extra", [("mlp", {}), ("conv", {}),
                                        ("mlp", {"binarize": True, "kl_warmup": 1.0, "lr_schedule": "cosine"}),
                                        ("mlp", {"train_k": 3})])
def test_the_captured_step_equals_the_eager_step_after_20_steps(npy, tmp_path, capsys, arch, extra):
    # one epoch: 3 eager warm-up steps, the capture, 19 replays and the last, smaller batch eagerly
    graph, _, out = _train(npy, tmp_path, "graph", capsys, arch=arch, epochs=1, **extra)
    eager, _, _ = _train(npy, tmp_path, "eager", capsys, arch=arch, epochs=1, cuda_graphs=False, **extra)
    assert "graph capture" in out and "could not be captured" not in out
    for (name, a), b in zip(graph.named_parameters(), eager.parameters()):
        assert torch.allclose(a, b, atol=1e-4, rtol=0), name


def test_amp_is_captured_too(npy, tmp_path, capsys):
    _, history, out = _train(npy, tmp_path, "amp", capsys, epochs=2, amp=True)
    assert "graph capture" in out and np.isfinite(history[-1]["test_loss"])


def test_amp_runs_the_captured_step_in_bfloat16(npy, tmp_path, capsys):
    """--amp holds in the CUDA graph: every linear layer that runs while the step is captured gives bf16."""
    seen = []

    def record(module, args, output):
        if isinstance(module, torch.nn.Linear) and torch.cuda.is_current_stream_capturing():
            seen.append(output.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        _, _, out = _train(npy, tmp_path, "amp-dtype", capsys, epochs=1, amp=True)
    finally:
        hook.remove()
    assert "graph capture" in out and seen and set(seen) == {torch.bfloat16}, seen


@pytest.mark.slow
def test_a_seeded_fashion_mnist_run_with_graphs_ends_within_half_a_nat_of_eager(tmp_path, fashion_mnist):
    runs = {}
    for graphs in (True, False):
        cfg = Config(out_dir=str(tmp_path), name=f"g{graphs}", device="cuda", cuda_graphs=graphs)
        runs[graphs] = train(cfg, quiet=True)[1][-1]["test_loss"]
    assert abs(runs[True] - runs[False]) < 0.5, runs


def _cmd(npy, tmp_path, name, *extra):
    return [str(BIN / "vae-train"), "--dataset", str(npy), "--out-dir", str(tmp_path), "--name", name,
            "--hidden-dim", "64", "--latent-dim", "4", "--batch-size", "4", "--epochs", "40", "--device", "cuda",
            *extra]


def test_an_interrupted_gpu_run_resumes_to_the_weights_of_an_uninterrupted_one(npy, tmp_path):
    assert subprocess.run(_cmd(npy, tmp_path, "straight"), capture_output=True).returncode == 0
    proc = subprocess.Popen(_cmd(npy, tmp_path, "broken"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "broken" / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    state = checkpoint.load(tmp_path / "broken" / "last.pt")
    assert state["epoch"] < 40, "the run ended before the signal; nothing was resumed"
    resumed = subprocess.run([str(BIN / "vae-train"), "--resume", str(tmp_path / "broken")],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a = checkpoint.load(tmp_path / "straight" / "model.pt")["state_dict"]
    b = checkpoint.load(tmp_path / "broken" / "model.pt")["state_dict"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4, rtol=0), k


def test_a_gpu_checkpoint_resumed_on_the_cpu_is_refused_in_one_line(npy, tmp_path):
    proc = subprocess.Popen(_cmd(npy, tmp_path, "moved"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "moved" / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    state = checkpoint.load(tmp_path / "moved" / "last.pt")
    state["config"]["device"] = "cpu"  # as on a machine without a GPU
    checkpoint.save(state, tmp_path / "moved" / "last.pt")
    resumed = subprocess.run([str(BIN / "vae-train"), "--resume", str(tmp_path / "moved")],
                             capture_output=True, text=True)
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr
    assert resumed.stderr.count("\n") == 1 and "another kind of device than cpu" in resumed.stderr


def test_torchrun_with_nccl_on_one_process_trains_eagerly_with_a_note(npy, tmp_path):
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "1", "-m", "vae_edge.train",
           "--dataset", str(npy), "--out-dir", str(tmp_path), "--name", "ddp", "--epochs", "2",
           "--hidden-dim", "64", "--latent-dim", "4", "--device", "cuda"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "CUDA graphs are off under torchrun" in r.stdout
    assert np.isfinite(checkpoint.load(tmp_path / "ddp" / "model.pt")["metrics"][-1]["test_loss"])

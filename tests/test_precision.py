"""The training step's precision: bf16 autocast over the network's layers where the device has it, float32 for every
density, every test figure and the weights; channels-last memory for the conv models; resume with both on."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from conftest import blobs
from vae_edge.train import checkpoint, config, precision
from vae_edge.train import likelihood as lik
from vae_edge.train import prior as pr
from vae_edge.train import train as train_mod
from vae_edge.train.config import Config
from vae_edge.train.model import VAE
from vae_edge.train.precision import Precision, choose
from vae_edge.train.step import Inputs, loss_per_example

CPU = torch.device("cpu")


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "blobs.npy"
    np.save(path, blobs(300, seed=5))  # 270 training images: 16 full batches of 16 and one of 14 an epoch
    return path


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU with avx512_bf16, whatever this one has (bf16 autocast runs on any CPU, emulated where it must)."""
    monkeypatch.setattr(precision, "cpu_bf16_flag", lambda cpuinfo="/proc/cpuinfo": "avx512_bf16")


@pytest.fixture
def fp32_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flag", lambda cpuinfo="/proc/cpuinfo": None)


def _cfg(tmp_path, npy, name, **kw):
    base = dict(dataset=str(npy), out_dir=str(tmp_path / "runs"), name=name, arch="conv", hidden_dim=16,
                latent_dim=4, batch_size=16, epochs=2, test_fraction=0.1, binarize=True, prior="vamp",
                prior_components=5, amp=True)
    return Config(**{**base, **kw})


def _metrics(tmp_path, name):
    return [json.loads(s) for s in (tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()]


# --- the choice -----------------------------------------------------------------------------------

def test_the_cpu_bf16_flag_is_read_from_proc_cpuinfo(tmp_path):
    def flag(flags):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
        return precision.cpu_bf16_flag(tmp_path / "cpuinfo")

    assert flag("fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 vaes") == "avx512_bf16"
    assert flag("fpu avx512f amx_tile amx_bf16 avx512_bf16") == "amx_bf16"
    assert flag("fpu sse2 avx2 fma avx512f avx512_vnni") is None
    assert precision.cpu_bf16_flag(tmp_path / "no-such-file") is None


def test_a_cpu_without_bf16_instructions_trains_in_fp32_even_when_amp_is_asked_for(fp32_cpu):
    for amp in (None, True, False):
        assert choose(amp, CPU).name == "fp32"
    assert "no bf16 instructions" in choose(True, CPU).why


def test_a_cpu_with_bf16_follows_amp_and_the_one_default_constant(bf16_cpu, monkeypatch):
    assert (choose(True, CPU).name, choose(False, CPU).name) == ("bf16", "fp32")
    for default in (False, True):
        monkeypatch.setattr(config, "BF16_ON_CPU_BY_DEFAULT", default)
        assert choose(None, CPU).name == ("bf16" if default else "fp32")
    assert choose(None, torch.device("mps")).name == "fp32"


def test_cuda_keeps_its_default_fp32_and_amp_turns_bf16_on(monkeypatch):
    monkeypatch.setattr(config, "BF16_ON_CPU_BY_DEFAULT", True)
    cuda = torch.device("cuda")
    assert (choose(None, cuda).name, choose(True, cuda).name, choose(False, cuda).name) == ("fp32", "bf16", "fp32")


# --- what runs in bf16 and what in fp32 -------------------------------------------------------------

DENSITIES = [(pr, "log_mixture"), (pr, "log_normal"), (pr, "log_standard_normal"), (pr.Gaussian, "kl"),
             (lik, "log_prob"), (torch, "logsumexp")]


@pytest.fixture
def density_dtypes(monkeypatch):
    """The dtypes of every tensor that reaches a log density, the KL, the likelihood or log-sum-exp."""
    seen = {}

    def spy(owner, name):
        fn = getattr(owner, name)

        def wrapped(*args, **kw):
            dtypes = {a.dtype for a in [*args, *kw.values()] if isinstance(a, torch.Tensor)}
            seen.setdefault(name, set()).update(dtypes)
            return fn(*args, **kw)

        monkeypatch.setattr(owner, name, wrapped)

    for owner, name in DENSITIES:
        spy(owner, name)
    return seen


@pytest.fixture
def layer_dtypes():
    """The dtypes of every Linear, Conv2d and ConvTranspose2d output while the fixture is in use."""
    seen = set()

    def record(module, args, output):
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            seen.add(output.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    yield seen
    hook.remove()


@pytest.mark.parametrize("arch,prior,layers,train_k", [("conv", "gaussian", 1, 1), ("mlp", "vamp", 2, 1),
                                                        ("conv", "vamp", 2, 3)])
def test_with_bf16_the_layers_run_in_bf16_and_every_density_in_fp32(arch, prior, layers, train_k, density_dtypes,
                                                                    layer_dtypes):
    torch.manual_seed(0)
    model = VAE(arch, (1, 8, 8), 16, 4, prior=prior, prior_components=5, latent_layers=layers).train()
    precision.use(model, Precision("bf16", "test"))
    x = (torch.rand(6, 1, 8, 8) < 0.5).float()
    inputs = Inputs.empty(6, (1, 8, 8), 4, train_k, False, CPU)
    inputs.fill(torch.arange(6), torch.Generator().manual_seed(1), 1.0)
    loss = loss_per_example(model, x, inputs, "bernoulli", train_k, 1, 0)
    loss.sum().backward()
    assert layer_dtypes == {torch.bfloat16}
    assert loss.dtype == torch.float32 and all(p.grad.dtype == torch.float32 for p in model.parameters())
    expected = {"log_prob", "log_standard_normal"} | ({"logsumexp"} if train_k > 1 else set()) \
        | ({"log_mixture"} if prior == "vamp" else {"kl"}) | ({"log_normal"} if layers == 2 else set())
    assert expected <= set(density_dtypes), density_dtypes
    assert all(d == {torch.float32} for d in density_dtypes.values()), density_dtypes


def test_a_bf16_model_computes_its_test_figures_in_fp32(tmp_path, npy, bf16_cpu, layer_dtypes):
    model, _ = train_mod.train(_cfg(tmp_path, npy, "run", epochs=1), quiet=True)
    assert model.bf16
    layer_dtypes.clear()
    test_x = (torch.rand(20, 1, 8, 8) < 0.5).float()
    train_mod.evaluate(model, test_x, Config(latent_dim=4), train_mod.Ranks(), CPU)
    train_mod.iwae(model, test_x, 3, 0)
    assert layer_dtypes == {torch.float32}


# --- the run: its log line, metrics, checkpoints, export --------------------------------------------

def test_a_bf16_run_names_its_precision_in_its_first_line_its_metrics_and_its_config(tmp_path, npy, bf16_cpu, capsys):
    train_mod.train(_cfg(tmp_path, npy, "run"))
    first = capsys.readouterr().out.splitlines()[0]
    assert "bf16 autocast over the layers" in first and "avx512_bf16" in first
    assert [(m["precision"], m["memory_format"]) for m in _metrics(tmp_path, "run")] == [("bf16", "contiguous")] * 2
    assert checkpoint.load(tmp_path / "runs" / "run" / "model.pt")["config"]["amp"] is True


def test_amp_on_a_cpu_without_bf16_trains_in_fp32_with_a_note_and_records_it(tmp_path, npy, fp32_cpu, capsys):
    train_mod.train(_cfg(tmp_path, npy, "run", epochs=1))
    out = capsys.readouterr().out
    assert "note: --amp asked for bf16 autocast, but this CPU has no bf16 instructions" in out
    assert "; fp32: this CPU has no bf16 instructions" in out.splitlines()[1]
    assert _metrics(tmp_path, "run")[0]["precision"] == "fp32"
    assert checkpoint.load(tmp_path / "runs" / "run" / "model.pt")["config"]["amp"] is False


def test_a_bf16_checkpoint_holds_fp32_weights_and_exports_fp32_files(tmp_path, npy, bf16_cpu):
    from vae_edge.export import export_checkpoint

    train_mod.train(_cfg(tmp_path, npy, "run", epochs=1, channels_last=True), quiet=True)
    state = checkpoint.load(tmp_path / "runs" / "run" / "model.pt")["state_dict"]
    assert {v.dtype for v in state.values()} == {torch.float32} and all(v.is_contiguous() for v in state.values())
    meta = export_checkpoint(tmp_path / "runs" / "run" / "model.pt", tmp_path / "onnx")
    for name in meta["files"]:
        graph = onnx.load(tmp_path / "onnx" / meta["files"][name]["path"]).graph
        kinds = {i.data_type for i in graph.initializer} | {v.type.tensor_type.elem_type for v in graph.input}
        assert onnx.TensorProto.BFLOAT16 not in kinds and onnx.TensorProto.FLOAT in kinds, name


# --- channels-last --------------------------------------------------------------------------------

def test_channels_last_feeds_the_conv_layers_nhwc_tensors(tmp_path, npy, monkeypatch):
    seen = []

    def record(module, args):
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and module.training:
            seen.append(module.weight.is_contiguous(memory_format=torch.channels_last)
                        and args[0].is_contiguous(memory_format=torch.channels_last))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        train_mod.train(_cfg(tmp_path, npy, "run", epochs=1, channels_last=True, amp=False), quiet=True)
    finally:
        hook.remove()
    assert seen and all(seen)
    assert _metrics(tmp_path, "run")[0]["memory_format"] == "channels_last"


# --- resume -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"channels_last": True}, {"arch": "mlp", "latent_layers": 2, "train_k": 3},
                                   {"train_k": 3, "train_k_epochs": 1}, {"ema": 0.9, "channels_last": True}])
def test_an_interrupted_bf16_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, npy, bf16_cpu, monkeypatch,
                                                                                 extra):
    from vae_edge.train import stop

    straight, _ = train_mod.train(_cfg(tmp_path, npy, "straight", **extra), quiet=True)
    calls = {"n": 0}

    def stop_at_step_21(flag, ranks, device):  # in the second epoch
        calls["n"] += 1
        return calls["n"] == 21

    with monkeypatch.context() as m:
        m.setattr(stop.StopFlag, "should_stop", stop_at_step_21)
        with pytest.raises(train_mod.Interrupted):
            train_mod.train(_cfg(tmp_path, npy, "broken", **extra), quiet=True)
    train_mod.train(Config(), resume=str(tmp_path / "runs" / "broken"), quiet=True)
    a = checkpoint.load(tmp_path / "runs" / "straight" / "model.pt")["state_dict"]
    b = checkpoint.load(tmp_path / "runs" / "broken" / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [m["precision"] for m in _metrics(tmp_path, "broken")] == ["bf16", "bf16"]
    assert [m["test_loss"] for m in _metrics(tmp_path, "straight")] == [m["test_loss"] for m in
                                                                        _metrics(tmp_path, "broken")]

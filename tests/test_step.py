"""The training step (train/step.py), eagerly on the CPU: the function that a GPU captures as a CUDA graph."""
from __future__ import annotations

import subprocess
import sys

import torch

from conftest import blobs
from vae_edge.train.iwae import iwae_objective
from vae_edge.train.model import VAE, elbo_terms
from vae_edge.train.step import Inputs, Step, load_state, optimizer, portable_state, set_learning_rate


def _setup(seed: int = 0, binarize: bool = False, train_k: int = 1):
    torch.manual_seed(seed)
    model = VAE("mlp", (1, 8, 8), 16, 3)
    train_x = torch.from_numpy(blobs(40, seed=seed))
    inputs = Inputs.empty(8, (1, 8, 8), 3, train_k, binarize, torch.device("cpu"))
    return model, train_x, inputs


def test_fill_draws_the_bits_then_the_noise_from_the_generator():
    _, _, inputs = _setup(binarize=True)
    rows = torch.randperm(40)[:8]
    inputs.fill(rows, torch.Generator().manual_seed(7), 0.25)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(inputs.idx, rows)
    assert torch.equal(inputs.u, torch.rand((8, 1, 8, 8), generator=g))
    assert torch.equal(inputs.eps, torch.randn((8, 3), generator=g))
    assert inputs.kl_weight.item() == 0.25


def _one_step_and_by_hand(train_k: int, kl_weight: float, loss_by_hand):
    """Step.run once; then the same Adam step (lr 1e-2) by hand on a copy of the model as it was, minimising
    loss_by_hand(copy, x, eps). The two models must end equal; returns the step and the hand-made loss."""
    model, train_x, inputs = _setup(train_k=train_k)
    reference = VAE("mlp", (1, 8, 8), 16, 3)
    reference.load_state_dict(model.state_dict())
    inputs.fill(torch.randperm(40, generator=torch.Generator().manual_seed(1))[:8],
                torch.Generator().manual_seed(2), kl_weight)
    step = Step(model, optimizer(model.parameters(), 1e-2, torch.device("cpu"), graphs=False), train_x,
                "bernoulli", train_k)
    step.run(inputs)

    loss = loss_by_hand(reference, train_x[inputs.idx].float() / 255, inputs.eps)
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    loss.sum().backward()
    opt.step()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert abs(step.loss_sum.item() - loss.sum().item()) < 1e-3
    return step, loss


def test_one_step_is_the_adam_update_of_the_summed_weighted_loss():
    def weighted_loss(net, x, eps):
        rec, kld = elbo_terms(net, x, eps)
        return rec + 0.3 * kld

    _one_step_and_by_hand(1, 0.3, weighted_loss)


def test_one_iwae_step_is_the_adam_update_of_the_summed_negative_iwae_bound():
    step, _ = _one_step_and_by_hand(4, 0.5, lambda net, x, eps: -iwae_objective(net, x, eps, "bernoulli", 0.5))
    assert (step.last > 0).all()  # minus a bound on log p(x) of 64 grey pixels: positive nats


def test_the_device_loss_sum_adds_up_every_step_until_reset():
    model, train_x, inputs = _setup()
    step = Step(model, optimizer(model.parameters(), 1e-3, torch.device("cpu"), graphs=False), train_x,
                "bernoulli", 1)
    g, total = torch.Generator().manual_seed(3), 0.0
    for i in range(3):
        inputs.fill(torch.arange(8) + 8 * i, g, 1.0)
        step.run(inputs)
        total += step.last.sum().item()
    assert abs(step.loss_sum.item() - total) < 1e-6 * total
    step.loss_sum.zero_()
    assert step.loss_sum.item() == 0


def test_binarize_feeds_the_step_bits_drawn_from_the_uniform_noise():
    model, train_x, inputs = _setup(binarize=True)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    step = Step(model, optimizer(model.parameters(), 1e-3, torch.device("cpu"), graphs=False), train_x,
                "bernoulli", 1)
    inputs.fill(torch.arange(8), torch.Generator().manual_seed(4), 1.0)
    step.run(inputs)
    expected = (inputs.u < train_x[:8].float() / 255).float()
    assert torch.equal(seen[0], expected) and 0 < expected.mean() < 1


def test_the_iwae_step_takes_k_noise_draws_an_image():
    model, train_x, inputs = _setup(train_k=4)
    assert inputs.eps.shape == (4, 8, 3)
    step = Step(model, optimizer(model.parameters(), 1e-3, torch.device("cpu"), graphs=False), train_x,
                "bernoulli", 4)
    inputs.fill(torch.arange(8), torch.Generator().manual_seed(5), 1.0)
    step.run(inputs)
    assert step.last.shape == (8,) and torch.isfinite(step.last).all()


def test_a_saved_optimizer_state_resumes_with_the_same_rate_and_step_count():
    model, train_x, inputs = _setup()
    opt = optimizer(model.parameters(), 1e-3, torch.device("cpu"), graphs=False)
    step = Step(model, opt, train_x, "bernoulli", 1)
    inputs.fill(torch.arange(8), torch.Generator().manual_seed(6), 1.0)
    step.run(inputs)
    set_learning_rate(opt, 4e-4)
    saved = portable_state(opt)
    fresh = optimizer(model.parameters(), 1e-3, torch.device("cpu"), graphs=False)
    load_state(fresh, saved)
    assert fresh.param_groups[0]["lr"] == 4e-4
    first = next(iter(model.parameters()))
    assert fresh.state[first]["step"].item() == 1
    assert torch.equal(fresh.state[first]["exp_avg"], opt.state[first]["exp_avg"])


def test_a_training_run_imports_neither_torch_dynamo_nor_torchvision(tmp_path, tiny_npy):
    # torch.optim's public methods import torch._dynamo (1 s of start-up here, 4 s on an H100 host);
    # torchvision drew the pictures (another second). A run needs neither.
    code = (f"import sys; from vae_edge.train.config import Config; from vae_edge.train.train import train; "
            f"train(Config(dataset={str(tiny_npy)!r}, epochs=2, hidden_dim=16, latent_dim=2, "
            f"out_dir={str(tmp_path)!r}, lr_schedule='cosine'), quiet=True); "
            f"print(sorted(m for m in ('torch._dynamo', 'torchvision') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_a_refused_capture_falls_back_to_eager_with_a_one_line_note():
    from vae_edge.train.clock import Clock
    from vae_edge.train.step import capture

    class Refusing:
        graph = "stale"

        def capture(self, inputs):
            raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    said = []
    step = Refusing()
    assert capture(step, None, None, Clock(None), said.append) is False
    assert step.graph is None
    assert len(said) == 1 and said[0].startswith("note: the training step could not be captured as a CUDA graph")
    assert "(operation not permitted when stream is capturing)" in said[0] and said[0].endswith("training eagerly")

"""The likelihoods, checked against independent values: log p(x) by numerical integration, densities that
integrate to 1, and the loss and data the training loop really uses for --beta, --kl-warmup, --lr-schedule
and --binarize."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from conftest import blobs, run_cli
from trained import train_cached
from vae_edge.train import evaluation
from vae_edge.train import step as step_mod
from vae_edge.train import train as train_mod
from vae_edge.train.config import Config
from vae_edge.train.data import load_data, pixels
from vae_edge.train.devices import Ranks
from vae_edge.export.score_graph import OnnxScore, pick_backend, scorer
from vae_edge.train.iwae import iwae_log_likelihood, iwae_objective
from vae_edge.train.likelihood import cb_log_norm, cb_mean, log_prob
from vae_edge.train.model import VAE, elbo_terms
from vae_edge.train.train import train

BACKENDS = ["torch", "onnxruntime"]


# --- a tiny model whose log p(x) can be computed by brute force -------------------------------

def tiny_model() -> VAE:
    """latent_dim 2, 2x2 binary images; q(z|x) is fixed, off-centre and wider than the prior, so
    that the IWAE's terms all matter: an ELBO is about 0.5 nats below log p(x), logvar is 1.3 nats of log q."""
    torch.manual_seed(0)
    model = VAE("mlp", (1, 2, 2), hidden_dim=8, latent_dim=2)
    with torch.no_grad():
        for layer in (model.fc3, model.fc4):
            layer.weight.mul_(3.0)  # an informative likelihood: the posterior is narrower than the prior
        model.fc21.weight.zero_()
        model.fc21.bias.copy_(torch.tensor([0.3, -0.2]))
        model.fc22.weight.zero_()
        model.fc22.bias.copy_(torch.tensor([0.8, 0.5]))
    return model.eval()


TINY_X = torch.tensor([[1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 1, 0], [0, 1, 1, 0]], dtype=torch.float32).view(4, 1, 2, 2)


@torch.no_grad()
def log_px_by_integration(model: VAE, x: torch.Tensor, half_width: float = 8.0, points: int = 801) -> torch.Tensor:
    """log p(x) = log of the integral of p(x|z) N(z; 0, I) over a grid of z (float64, the rectangle rule)."""
    m = VAE("mlp", model.input_shape, model.hidden_dim, model.latent_dim).double()
    m.load_state_dict(model.state_dict())
    g = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    z = torch.cartesian_prod(g, g)  # [points^2, 2]
    cell = (g[1] - g[0]) ** 2
    logits = m.decode(z).flatten(1)  # [G, P]
    log_prior = -0.5 * (z.pow(2).sum(1) + 2 * math.log(2 * math.pi))
    out = []
    for xi in x.double().flatten(1):
        log_px_z = (xi * torch.nn.functional.logsigmoid(logits)
                    + (1 - xi) * torch.nn.functional.logsigmoid(-logits)).sum(1)
        out.append(torch.logsumexp(log_px_z + log_prior, 0) + torch.log(cell))
    return torch.stack(out)


@pytest.fixture(scope="module")
def tiny_score():
    """The onnxruntime route's score of the tiny model, exported once for the tests below."""
    return OnnxScore(tiny_model())


@pytest.mark.parametrize("backend", BACKENDS)
def test_iwae_with_many_samples_equals_log_px_by_numerical_integration(backend, tiny_score):
    model = tiny_model()
    exact = log_px_by_integration(model, TINY_X)
    g = torch.Generator().manual_seed(1)
    est = iwae_log_likelihood(model, TINY_X, k=20000, generator=g, chunk=4000,
                              score=tiny_score if backend == "onnxruntime" else None)
    # Monte Carlo error about 0.005 nats here; dropping - log k, logvar in log q, or the logsumexp
    # (max, or a k-sample ELBO) each moves the estimate by 0.4 nats or more.
    assert torch.allclose(est.float(), exact.float(), atol=0.03), (est, exact)


def test_the_elbo_of_the_tiny_model_is_well_below_log_px():
    """The tiny model is a fair test: a k-sample ELBO (a wrong IWAE) would miss log p(x) by far more than 0.03."""
    model = tiny_model()
    exact = log_px_by_integration(model, TINY_X)
    g = torch.Generator().manual_seed(2)
    mu, logvar = model.encode(TINY_X)
    eps = torch.randn((20000, *mu.shape), generator=g)
    rec, kld = zip(*(elbo_terms(model, TINY_X, e) for e in eps[:2000]))
    elbo = -(torch.stack(rec).mean(0) + torch.stack(kld).mean(0))
    assert (exact - elbo).min() > 0.3


@pytest.mark.parametrize("backend", BACKENDS)
def test_iwae_with_one_sample_is_log_p_x_given_z_plus_log_p_z_minus_log_q(backend, tiny_score):
    model = tiny_model()
    est = iwae_log_likelihood(model, TINY_X, k=1, generator=torch.Generator().manual_seed(3),
                              score=tiny_score if backend == "onnxruntime" else None)
    # the same draw by hand: eps of shape [1, N, D] is the estimator's first (and only) sample
    eps = torch.randn((1, 4, 2), generator=torch.Generator().manual_seed(3))[0]
    mu, logvar = model.encode(TINY_X)
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps
    p = torch.sigmoid(model.decode(z)).flatten(1).double()
    x = TINY_X.flatten(1).double()
    log_px_z = (x * p.log() + (1 - x) * (1 - p).log()).sum(1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z.double()).sum(1)
    log_qz = torch.distributions.Normal(mu.double(), std.double()).log_prob(z.double()).sum(1)
    assert torch.allclose(est, (log_px_z + log_pz - log_qz).detach(), atol=1e-5)


def test_both_iwae_backends_give_the_same_estimate_from_the_same_noise():
    torch.manual_seed(4)
    for arch in ("mlp", "conv"):
        model = VAE(arch, (1, 8, 8), 16, 3).eval()
        x = (torch.rand(9, 1, 8, 8) < 0.4).float()
        a, b = (iwae_log_likelihood(model, x, 50, torch.Generator().manual_seed(5), chunk=7,
                                    score=scorer(model, backend))
                for backend in BACKENDS)
        assert torch.allclose(a, b, atol=1e-4), arch


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli"])
def test_both_iwae_backends_agree_on_a_model_whose_logits_are_large(likelihood):
    """A trained conv model's logits reach tens: the exported graph once took log(sigmoid(l)), and onnxruntime's
    Sigmoid is 0 below l = -18 (so log w was -inf) and off by tenths of a nat a pixel near l = -15."""
    torch.manual_seed(6)
    model = VAE("conv", (1, 8, 8), 16, 3, likelihood=likelihood).eval()
    with torch.no_grad():
        model.dec_conv[2].weight.mul_(600.0)
    x = torch.rand(9, 1, 8, 8)
    if likelihood == "bernoulli":
        x = (x < 0.4).float()
    logits = model.decode(model.encode(x)[0])
    assert logits.min() < -40 and logits.max() > 40, (logits.min(), logits.max())
    a, b = (iwae_log_likelihood(model, x, 20, torch.Generator().manual_seed(7), chunk=6, score=scorer(model, backend))
            for backend in BACKENDS)
    assert torch.isfinite(a).all() and torch.isfinite(b).all(), (a, b)
    assert (a - b).abs().max() < 1e-3, (a, b)


def test_auto_picks_onnxruntime_on_the_cpu_and_torch_elsewhere():
    assert pick_backend("auto", torch.device("cpu")) == "onnxruntime"
    assert pick_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="runs on the CPU"):
        pick_backend("onnxruntime", torch.device("cuda"))


def test_the_iwae_training_objective_with_many_samples_equals_log_px_by_numerical_integration():
    model = tiny_model()
    eps = torch.randn((20000, 4, 2), generator=torch.Generator().manual_seed(7))
    bound = iwae_objective(model, TINY_X, eps, "bernoulli")
    assert torch.allclose(bound.double(), log_px_by_integration(model, TINY_X), atol=0.03)


def test_the_iwae_training_objective_with_one_sample_weighs_log_pz_minus_log_q_by_the_kl_weight():
    model = tiny_model()
    eps = torch.randn((1, 4, 2), generator=torch.Generator().manual_seed(8))
    mu, logvar = model.encode(TINY_X)
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps[0]
    p = torch.sigmoid(model.decode(z)).flatten(1)
    x = TINY_X.flatten(1)
    log_px_z = (x * p.log() + (1 - x) * (1 - p).log()).sum(1)
    log_ratio = (torch.distributions.Normal(0.0, 1.0).log_prob(z)
                 - torch.distributions.Normal(mu, std).log_prob(z)).sum(1)
    got = iwae_objective(model, TINY_X, eps, "bernoulli", kl_weight=0.25)
    assert torch.allclose(got, log_px_z + 0.25 * log_ratio, atol=1e-5)


def test_the_iwae_training_objective_has_gradients_for_encoder_and_decoder():
    model = tiny_model().train()
    iwae_objective(model, TINY_X, torch.randn(5, 4, 2), "bernoulli").sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.fc21.bias.grad.abs().sum() > 0 and model.fc4.weight.grad.abs().sum() > 0


# --- the continuous Bernoulli ---------------------------------------------------------------

# |l| across the series/closed-form switches (0.5 for log C, 1 for the mean), 0, and saturation.
LOGITS = [-60.0, -20.0, -3.0, -1.0001, -0.9999, -0.5001, -0.4999, -1e-3, -1e-8, 0.0, 1e-8, 1e-3, 0.4999, 0.5001,
          0.9999, 1.0001, 3.0, 20.0, 60.0]
GRID = torch.linspace(0, 1, 200001, dtype=torch.float64)


@pytest.mark.parametrize("logit", LOGITS)
def test_continuous_bernoulli_density_integrates_to_one(logit):
    density = log_prob(torch.full_like(GRID, logit), GRID, "continuous-bernoulli").exp()
    assert torch.trapezoid(density, GRID).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("logit", LOGITS)
def test_continuous_bernoulli_mean_is_the_integral_of_x_times_the_density(logit):
    density = log_prob(torch.full_like(GRID, logit), GRID, "continuous-bernoulli").exp()
    assert cb_mean(torch.tensor(logit, dtype=torch.float64)).item() == pytest.approx(
        torch.trapezoid(GRID * density, GRID).item(), abs=1e-6)


def test_bernoulli_is_not_a_density_on_grey_levels():
    """Why grey-level BCE nats compare with nothing: its 'density' integrates to less than 1."""
    density = log_prob(torch.full_like(GRID, 0.0), GRID, "bernoulli").exp()
    assert torch.trapezoid(density, GRID).item() == pytest.approx(0.5, abs=1e-6)


def test_continuous_bernoulli_is_smooth_and_finite_in_float32_near_lambda_one_half():
    logits = torch.linspace(-2, 2, 40001, requires_grad=True)  # steps of 1e-4, through 0 and both switches
    log_c = cb_log_norm(logits)
    log_c.sum().backward()
    assert torch.isfinite(log_c).all() and torch.isfinite(logits.grad).all()
    assert (log_c.detach().diff().abs() < 1e-4).all()  # no jump at the switch from the series
    l64 = logits.detach().double()
    slope = torch.where(l64 == 0, 0.0, 1 / l64 - 1 / torch.sinh(l64))  # d/dl log(l / tanh(l/2)), by hand
    assert torch.allclose(logits.grad.double(), slope, atol=1e-5)
    m = cb_mean(logits.detach())
    assert (m.diff() > 0).all() and (m.diff() < 1e-4).all()  # increasing, no jump
    assert cb_log_norm(torch.tensor(0.0)).item() == pytest.approx(math.log(2), abs=1e-7)


def test_continuous_bernoulli_matches_torch_distributions_away_from_one_half():
    # torch's own approximation near lambda = 1/2 is coarser (1e-5); compare where it is exact
    logits = torch.tensor([-12.0, -3.0, -0.7, 0.7, 3.0, 12.0], dtype=torch.float64)
    x = torch.tensor([0.05, 0.3, 0.5, 0.5, 0.8, 0.99], dtype=torch.float64)
    ref = torch.distributions.ContinuousBernoulli(logits=logits)
    assert torch.allclose(log_prob(logits, x, "continuous-bernoulli"), ref.log_prob(x), atol=1e-9)
    assert torch.allclose(cb_mean(logits), ref.mean, atol=1e-9)


# --- what the training loop really does -------------------------------------------------------

def small_cfg(tmp_path, npy, **kw) -> Config:
    base = dict(hidden_dim=16, latent_dim=3, batch_size=16, epochs=3, dataset=str(npy),
                out_dir=str(tmp_path / "runs"), name="t")
    return Config(**{**base, **kw})


class Spy:
    """Wraps elbo_terms in the training loop: records the data each call sees and the weight that the
    loss puts on the KL term (the gradient reaching it), and Adam's learning rate at each step."""

    def __init__(self, monkeypatch):
        self.x, self.kl_weights, self.rec_weights, self.lrs = [], [], [], []
        real = step_mod.elbo_terms

        def spy(model, x, eps):
            rec, kld = real(model, x, eps)
            if torch.is_grad_enabled() and model.training:
                self.x.append(x.detach().clone())
                kld.register_hook(lambda g: self.kl_weights.append(g.clone()))
                rec.register_hook(lambda g: self.rec_weights.append(g.clone()))
            return rec, kld

        monkeypatch.setattr(step_mod, "elbo_terms", spy)  # where the training step looks it up
        self._handle = register_optimizer_step_pre_hook(
            lambda opt, args, kwargs: self.lrs.append(opt.param_groups[0]["lr"]))

    def close(self):
        self._handle.remove()


@pytest.fixture
def spy(monkeypatch):
    s = Spy(monkeypatch)
    yield s
    s.close()


def test_beta_and_kl_warmup_give_the_kl_term_its_weight_at_every_step(tmp_path, tiny_npy, spy):
    cfg = small_cfg(tmp_path, tiny_npy, beta=0.5, kl_warmup=2)
    train(cfg, quiet=True)
    steps = math.ceil(86 / 16)  # 96 images, 10 held out
    expected = [0.5 * min(1.0, (e + s / steps) / 2) for e in range(3) for s in range(steps)]
    assert len(spy.kl_weights) == len(expected)
    for got, want, rec in zip(spy.kl_weights, expected, spy.rec_weights):
        assert torch.allclose(got, torch.full_like(got, want)), (got[0].item(), want)
        assert torch.allclose(rec, torch.ones_like(rec))  # the reconstruction term is never weighted


def test_without_warmup_the_kl_weight_is_beta_from_the_first_step(tmp_path, tiny_npy, spy):
    train(small_cfg(tmp_path, tiny_npy, beta=2.0, epochs=1), quiet=True)
    assert spy.kl_weights and all(torch.allclose(g, torch.full_like(g, 2.0)) for g in spy.kl_weights)


def test_cosine_schedule_takes_the_rate_from_lr_to_zero(tmp_path, tiny_npy, spy):
    train(small_cfg(tmp_path, tiny_npy, lr=2e-3, lr_schedule="cosine"), quiet=True)
    total = 3 * math.ceil(86 / 16)
    assert spy.lrs == pytest.approx([2e-3 * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(total)])


def test_constant_schedule_keeps_lr(tmp_path, tiny_npy, spy):
    train(small_cfg(tmp_path, tiny_npy, lr=2e-3, epochs=1), quiet=True)
    assert spy.lrs and set(spy.lrs) == {2e-3}


def test_train_k_trains_on_the_importance_weighted_bound_with_k_samples_and_the_kl_weight(tmp_path, tiny_npy,
                                                                                          monkeypatch):
    calls = []
    real = step_mod.iwae_objective

    def spy(net, x, eps, likelihood, kl_weight=1.0):
        calls.append((tuple(eps.shape), x.shape[0], float(kl_weight)))  # the step passes its buffer
        return real(net, x, eps, likelihood, kl_weight)

    monkeypatch.setattr(step_mod, "iwae_objective", spy)
    _, history = train(small_cfg(tmp_path, tiny_npy, train_k=3, kl_warmup=1, epochs=2), quiet=True)
    steps = math.ceil(86 / 16)
    assert len(calls) == 2 * steps
    assert all(shape[0] == 3 and shape[1] == n and shape[2] == 3 for shape, n, _ in calls)
    assert [w for *_, w in calls] == pytest.approx([min(1.0, (e + s / steps)) for e in range(2) for s in range(steps)])
    assert all(math.isfinite(m["train_loss"]) for m in history)


def test_train_k_epochs_trains_the_elbo_first_and_the_iwae_bound_in_the_last_epochs_alone(tmp_path, tiny_npy,
                                                                                          monkeypatch):
    iwae_calls, elbo_calls = [], []
    real_iwae, real_elbo = step_mod.iwae_objective, step_mod.elbo_terms
    monkeypatch.setattr(step_mod, "iwae_objective", lambda net, x, eps, *a: iwae_calls.append(eps.shape[0])
                        or real_iwae(net, x, eps, *a))
    monkeypatch.setattr(step_mod, "elbo_terms", lambda net, x, eps: elbo_calls.append(eps.dim()) or
                        real_elbo(net, x, eps))
    _, history = train(small_cfg(tmp_path, tiny_npy, train_k=4, train_k_epochs=1, epochs=3), quiet=True)
    steps = math.ceil(86 / 16)
    assert len(elbo_calls) == 2 * steps and set(elbo_calls) == {2}
    assert iwae_calls == [4] * steps
    assert [m["train_k"] for m in history] == [1, 1, 4]


@pytest.mark.parametrize("options,message", [({"train_k_epochs": 2}, "--train-k above 1"),
                                             ({"train_k": 3, "train_k_epochs": 9}, "--train-k-epochs must lie"),
                                             ({"train_k": 3, "train_k_epochs": -1}, "--train-k-epochs must lie")])
def test_train_k_epochs_without_k_or_beyond_the_run_is_refused(tmp_path, tiny_npy, options, message):
    with pytest.raises(train_mod.TrainError, match=message):
        train(small_cfg(tmp_path, tiny_npy, epochs=3, **options), quiet=True)


def test_train_k_below_one_is_refused(tmp_path, tiny_npy):
    with pytest.raises(train_mod.TrainError, match="--train-k"):
        train(small_cfg(tmp_path, tiny_npy, train_k=0), quiet=True)


@pytest.fixture
def grey_npy(tmp_path):
    """200 identical 8x8 images, every pixel 96/255: binarizing must draw bits with P(1) = 0.376."""
    path = tmp_path / "grey.npy"
    np.save(path, np.full((200, 8, 8), 96, np.uint8))
    return path


def test_binarize_feeds_the_loss_fresh_random_bits_with_the_grey_level_as_probability(tmp_path, grey_npy, spy):
    train(small_cfg(tmp_path, grey_npy, binarize=True, epochs=2), quiet=True)
    x = torch.cat(spy.x)
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert x.mean().item() == pytest.approx(96 / 255, abs=0.01)  # 23,000 bits: the s.d. is 0.003
    assert len({tuple(row.flatten().tolist()) for row in x}) == x.shape[0]  # every image its own bits


def test_without_binarize_the_loss_sees_the_grey_levels(tmp_path, grey_npy, spy):
    train(small_cfg(tmp_path, grey_npy, epochs=1), quiet=True)
    assert torch.equal(torch.cat(spy.x).unique(), torch.tensor([96 / 255]))


def test_binarized_test_pixels_are_drawn_once_and_are_the_same_for_every_run():
    images = torch.from_numpy(blobs(50))
    a, b = pixels(images, True), pixels(images, True)
    assert torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 1.0}
    assert a.mean().item() == pytest.approx(images.float().mean().item() / 255, abs=0.02)
    assert torch.equal(pixels(images, False), images.float() / 255)


def test_test_elbo_and_iwae_score_the_same_binarized_test_set(tmp_path, tiny_npy, monkeypatch):
    seen = {}
    real_eval, real_iwae = train_mod.evaluate, evaluation.iwae_sum
    monkeypatch.setattr(train_mod, "evaluate", lambda model, x, *a, **k: seen.setdefault("elbo", []).append(x.clone())
                        or real_eval(model, x, *a, **k))
    monkeypatch.setattr(evaluation, "iwae_sum", lambda model, x, *a, **k: seen.setdefault("iwae", []).append(x.clone())
                        or real_iwae(model, x, *a, **k))
    train(small_cfg(tmp_path, tiny_npy, binarize=True, epochs=2, iwae_k=5), quiet=True)
    bits = pixels(load_data(str(tiny_npy)).test, True)
    assert len(seen["elbo"]) == 2 and len(seen["iwae"]) == 1
    for x in seen["elbo"] + seen["iwae"]:
        assert torch.equal(x, bits)


def test_a_trained_binarized_model_has_an_iwae_above_its_test_elbo(tmp_path, tiny_npy):
    """The defect this guards against: the IWAE scored grey pixels while the ELBO scored bits, and came out
    below the ELBO, which no importance-sampled bound can be."""
    _, history = train(small_cfg(tmp_path, tiny_npy, binarize=True, epochs=8, lr=3e-3, iwae_k=200), quiet=True)
    final = history[-1]
    assert final["test_iwae_200"] > -final["test_loss"]
    assert final["test_pixels"].startswith("binary")
    assert "k=200" in final["estimators"]["test_iwae_200"]


def test_vae_eval_scores_the_bits_vae_train_scored(tmp_path, tiny_npy):
    _, history = train(small_cfg(tmp_path, tiny_npy, binarize=True, epochs=2, iwae_k=20), quiet=True)
    r = run_cli("vae-eval", tmp_path / "runs/t/model.pt", "--iwae-k", 20, "--json", tmp_path / "e.json")
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "e.json").read_text())
    assert got["test_loss"] == pytest.approx(history[-1]["test_loss"], abs=1e-6)
    assert got["test_iwae_20"] == pytest.approx(history[-1]["test_iwae_20"], abs=1e-4)
    assert got["test_pixels"] == history[-1]["test_pixels"]
    assert "IWAE" in r.stdout and "k=20" in r.stdout and "negative ELBO" in r.stdout


def test_continuous_bernoulli_with_binarize_is_refused(tmp_path, tiny_npy):
    with pytest.raises(train_mod.TrainError, match="--binarize"):
        train(small_cfg(tmp_path, tiny_npy, binarize=True, likelihood="continuous-bernoulli"), quiet=True)


def test_continuous_bernoulli_training_reports_a_normalised_test_likelihood(tmp_path, tiny_npy):
    _, history = train(small_cfg(tmp_path, tiny_npy, likelihood="continuous-bernoulli", epochs=4, lr=3e-3,
                                 iwae_k=50), quiet=True)
    final = history[-1]
    # a density on [0, 1]^64 can exceed 1: smooth blobs give log p(x) > 0, and the IWAE bound sits above the ELBO
    assert final["test_iwae_50"] > -final["test_loss"]
    saved = torch.load(tmp_path / "runs/t/model.pt", weights_only=True)
    model = VAE.from_config(Config.from_dict(saved["config"]).architecture())
    assert model.likelihood == "continuous-bernoulli"


# --- a continuous-Bernoulli model through export and the runtime --------------------------------

def test_a_continuous_bernoulli_decoder_exports_the_mean_at_parity_and_the_runtime_returns_it(tmp_path):
    from vae_edge.export import export_model
    from vae_edge.runtime import VAE as RuntimeVAE

    torch.manual_seed(6)
    model = VAE("conv", (1, 8, 8), 16, 3, likelihood="continuous-bernoulli").eval()
    with torch.no_grad():
        model.fc4.weight.mul_(8.0)  # logits from about -10 to 10: both branches of the mean are used
    info = export_model(model, tmp_path / "cb")
    assert info["model"]["likelihood"] == "continuous-bernoulli" and info["parity"]["x"] <= 1e-5
    vae = RuntimeVAE.load(tmp_path / "cb")
    z = np.random.default_rng().standard_normal((64, 3), dtype=np.float32)
    got = vae.decode(z)
    logits = model.decode(torch.from_numpy(z)).detach()
    assert got.shape == (64, 1, 8, 8) and 0 <= got.min() and got.max() <= 1
    assert np.abs(logits.numpy()).max() > 2 and (np.abs(logits.numpy()) < 1).any()
    assert np.allclose(got, cb_mean(logits).numpy(), atol=1e-5)
    assert not np.allclose(got, torch.sigmoid(logits).numpy(), atol=1e-2)  # the mean, not lambda


# --- the real thing ---------------------------------------------------------------------------

@pytest.mark.slow
def test_a_short_run_of_the_recipe_beats_the_mlp_and_its_iwae_sits_above_its_elbo(tmp_path, fashion_mnist):
    """Three epochs on binarized Fashion-MNIST of the reference MLP and of the recipe's network (conv, hidden 256,
    32 latents; its KL warm-up over 10 epochs and cosine rate over 90 are for the long run, so left out here):
    the recipe's test ELBO must be better by a nat or more (measured: 246.20 against 249.46; with a cosine rate
    over the three epochs it was not, 251.54). Each IWAE must sit above its ELBO on the same bits (it did not when
    the IWAE scored grey pixels: -243.23 against an ELBO of -242.26), and the onnxruntime route that auto takes on
    the CPU must agree with torch (it gave -inf on the recipe, whose logits pass -18). Both runs are kept in
    .cache/trained/ until the code, the data or the libraries change (tests/trained.py)."""
    common = dict(dataset="fashion-mnist", binarize=True, epochs=3, out_dir=str(tmp_path))
    test_loss = {}
    for name, kw in {"mlp": {}, "recipe": dict(arch="conv", hidden_dim=256, latent_dim=32)}.items():
        model, history = train_cached(Config(name=name, **common, **kw))
        test_loss[name] = history[-1]["test_loss"]
        bits = pixels(load_data("fashion-mnist").test[:500], True)
        iwae = {backend: evaluation.iwae_sum(model, bits, 200, seed=1, show_progress=False,
                                                  score=scorer(model, backend))[0] / 500
                for backend in ("onnxruntime", "torch")}
        elbo = -evaluation.evaluate(model, bits, Config(**common, **kw), Ranks(), torch.device("cpu"))["test_loss"]
        result = dict(elbo=-history[-1]["test_loss"], elbo_500=elbo, **iwae)
        assert math.isfinite(iwae["onnxruntime"]) and abs(iwae["onnxruntime"] - iwae["torch"]) < 1e-3, (name, result)
        assert iwae["onnxruntime"] > elbo, (name, result)
    assert test_loss["recipe"] <= test_loss["mlp"] - 1.0, test_loss

"""The learned prior (VampPrior) and the two-layer hierarchy: each log density against an independent computation
(numerical integration, a mixture and Gaussians written out by hand in numpy), and the bounds built on them."""
import math

import numpy as np
import pytest
import torch

from vae_edge.train.iwae import Score, iwae_log_likelihood, iwae_objective
from vae_edge.train.model import LOGVAR_MAX, LOGVAR_MIN, VAE, elbo_terms

SHAPE = (1, 2, 2)  # four pixels: small enough to integrate p(x) over z on a grid


def model(latent_dim, prior="vamp", layers=1, components=3, seed=0) -> VAE:
    torch.manual_seed(seed)
    m = VAE("mlp", SHAPE, 8, latent_dim, prior=prior, prior_components=components, latent_layers=layers).double()
    with torch.no_grad():  # spread the components apart, so the mixture is not one Gaussian in disguise
        if prior == "vamp":
            m.vamp.pseudo_inputs.copy_(torch.rand_like(m.vamp.pseudo_inputs))
        m.fc21.weight.mul_(4)
    return m.eval()


def np_normal(z, mu, logvar):
    return np.exp(-0.5 * ((z - mu) ** 2 / np.exp(logvar) + logvar + math.log(2 * math.pi)))


def np_components(m: VAE):
    """The VampPrior's components by hand: the encoder's Linear layers in numpy at the clipped pseudo-inputs."""
    p = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    u = np.clip(p["vamp.pseudo_inputs"], 0, 1).reshape(len(p["vamp.pseudo_inputs"]), -1)
    h = np.maximum(u @ p["fc1.weight"].T + p["fc1.bias"], 0)
    return h @ p["fc21.weight"].T + p["fc21.bias"], np.clip(h @ p["fc22.weight"].T + p["fc22.bias"], LOGVAR_MIN,
                                                            LOGVAR_MAX)


def test_a_1d_vampprior_density_integrates_to_one_and_is_the_mixture_written_by_hand():
    m = model(1)
    z = torch.linspace(-25, 25, 20001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        density = m.prior.log_prob(z).exp().numpy()
    assert np.trapezoid(density, z[:, 0].numpy()) == pytest.approx(1.0, abs=1e-6)
    mu, logvar = np_components(m)
    by_hand = np.mean([np_normal(z.numpy()[:, 0], mu[k, 0], logvar[k, 0]) for k in range(len(mu))], axis=0)
    np.testing.assert_allclose(density, by_hand, rtol=1e-9, atol=1e-300)


def test_a_2d_vampprior_density_integrates_to_one():
    m = model(2, components=4)
    t = torch.linspace(-20, 20, 1601, dtype=torch.float64)
    z = torch.cartesian_prod(t, t)
    with torch.no_grad():
        density = m.prior.log_prob(z).exp().reshape(len(t), len(t)).numpy()
    assert np.trapezoid(np.trapezoid(density, t.numpy()), t.numpy()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("prior", ["gaussian", "vamp"])
def test_the_hierarchy_log_prior_is_log_p_z2_plus_log_p_z1_given_z2_by_hand(prior):
    m = model(4, prior=prior, layers=2)
    z = torch.randn(9, 4, dtype=torch.float64)
    z1, z2 = z[:, :2].numpy(), z[:, 2:].numpy()
    p = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    if prior == "gaussian":
        log_p2 = np.log(np_normal(z2, 0, 0)).sum(1)
    else:
        mu, logvar = np_components(m)
        log_p2 = np.log(np.mean([np.prod(np_normal(z2, mu[k], logvar[k]), 1) for k in range(len(mu))], 0))
    g = np.maximum(z2 @ p["ladder.p_z.weight"].T + p["ladder.p_z.bias"], 0)
    mu1 = g @ p["ladder.p_mu.weight"].T + p["ladder.p_mu.bias"]
    logvar1 = np.clip(g @ p["ladder.p_logvar.weight"].T + p["ladder.p_logvar.bias"], LOGVAR_MIN, LOGVAR_MAX)
    log_p1 = np.log(np_normal(z1, mu1, logvar1)).sum(1)
    with torch.no_grad():
        np.testing.assert_allclose(m.prior.log_prob(z).numpy(), log_p2 + log_p1, rtol=1e-10)


def test_the_hierarchy_log_posterior_is_log_q_z2_given_x_plus_log_q_z1_given_x_z2_by_hand():
    m = model(4, layers=2)
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    eps = torch.randn(3, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        z, log_q, _ = m.posterior_sample(m.features(x), eps)
    p = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    h = np.maximum(x.reshape(5, -1).numpy() @ p["fc1.weight"].T + p["fc1.bias"], 0)
    mu2 = h @ p["fc21.weight"].T + p["fc21.bias"]
    logvar2 = np.clip(h @ p["fc22.weight"].T + p["fc22.bias"], LOGVAR_MIN, LOGVAR_MAX)
    z1, z2 = z[..., :2].numpy(), z[..., 2:].numpy()
    g = np.maximum(h @ p["ladder.q_h.weight"].T + p["ladder.q_h.bias"] + z2 @ p["ladder.q_z.weight"].T, 0)
    mu1 = g @ p["ladder.q_mu.weight"].T + p["ladder.q_mu.bias"]
    logvar1 = np.clip(g @ p["ladder.q_logvar.weight"].T + p["ladder.q_logvar.bias"], LOGVAR_MIN, LOGVAR_MAX)
    np.testing.assert_allclose(z2, mu2 + np.exp(logvar2 / 2) * eps[..., 2:].numpy(), rtol=1e-12)
    np.testing.assert_allclose(z1, mu1 + np.exp(logvar1 / 2) * eps[..., :2].numpy(), rtol=1e-12)
    by_hand = np.log(np_normal(z2, mu2, logvar2)).sum(-1) + np.log(np_normal(z1, mu1, logvar1)).sum(-1)
    np.testing.assert_allclose(log_q.numpy(), by_hand, rtol=1e-10)


@pytest.mark.parametrize("prior,layers", [("vamp", 1), ("gaussian", 2), ("vamp", 2)])
def test_the_iwae_bound_is_at_least_the_elbo_on_the_same_draws(prior, layers):
    m = model(4, prior=prior, layers=layers)
    x = (torch.rand(6, *SHAPE, dtype=torch.float64) < 0.5).double()
    eps = torch.randn(16, 6, 4, dtype=torch.float64)
    with torch.no_grad():
        one_sample = torch.stack([-sum(elbo_terms(m, x, e)) for e in eps])  # log w of each draw: an ELBO estimate
        bound = iwae_objective(m, x, eps, "bernoulli")
        assert torch.allclose(iwae_objective(m, x, eps[:1], "bernoulli"), one_sample[0])  # k = 1 is the ELBO
    assert (bound >= one_sample.mean(0)).all()
    assert (bound > one_sample.mean(0) + 1e-6).any()


def _log_px_by_integration(m: VAE, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """log p(x) = log sum over the grid of p(x|z) p(z) dz (trapezoid weights on each axis)."""
    d = grid.shape[-1]
    t = grid[:, 0].unique()
    w1 = torch.full_like(t, float(t[1] - t[0]))
    w1[0] = w1[-1] = w1[0] / 2
    log_dz = torch.log(torch.cartesian_prod(*[w1] * d).prod(-1) if d > 1 else w1)
    with torch.no_grad():
        logits = m.decode(grid)
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits.flatten(1)[None].expand(len(x), -1, -1), x.flatten(1)[:, None].expand(-1, len(grid), -1),
            reduction="none").sum(-1)
        return torch.logsumexp(log_px_z + m.prior.log_prob(grid) + log_dz, dim=1)


@pytest.mark.parametrize("prior,layers,latent", [("vamp", 1, 1), ("gaussian", 2, 2), ("vamp", 2, 2)])
def test_the_iwae_estimate_converges_to_log_p_x_by_numerical_integration(prior, layers, latent):
    m = model(latent, prior=prior, layers=layers)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64).view(2, *SHAPE)
    t = torch.linspace(-12, 12, 4001 if latent == 1 else 481, dtype=torch.float64)
    grid = t[:, None] if latent == 1 else torch.cartesian_prod(t, t)
    exact = _log_px_by_integration(m, x, grid)
    g = torch.Generator().manual_seed(0)
    estimate = iwae_log_likelihood(m.float(), x.float(), 20000, g, chunk=5000)
    np.testing.assert_allclose(estimate.numpy(), exact.numpy(), atol=0.01)


def test_the_score_module_gives_the_training_objective_s_log_weights():
    m = model(4, prior="vamp", layers=2).float()
    x = (torch.rand(5, *SHAPE) < 0.5).float()
    eps = torch.randn(7, 5, 4)
    with torch.no_grad():
        logits, log_q, log_p, _ = m(x, eps)
        lw = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand(7, -1, -1, -1, -1), reduction="none").flatten(2).sum(-1) + log_p - log_q
        np.testing.assert_allclose(Score(m)(x, eps).numpy(), lw.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("prior,layers", [("gaussian", 1), ("vamp", 1), ("gaussian", 2), ("vamp", 2)])
def test_every_prior_samples_from_the_noise_it_names_and_scores_its_samples(prior, layers):
    m = model(4, prior=prior, layers=layers)
    p = m.prior
    assert p.noise == (("eps", "u") if prior == "vamp" else ("eps",))
    eps, u = torch.randn(6, 4, dtype=torch.float64), torch.rand(6, dtype=torch.float64)
    with torch.no_grad():
        z = p.sample(eps, u)
        assert z.shape == (6, 4) and torch.isfinite(p.log_prob(z)).all() and p.log_prob(z).shape == (6,)
        assert not torch.equal(p.sample(eps.roll(1, 0), u), z)
    described = p.describe()
    assert (described["name"], described["latent_layers"], sum(described["layer_sizes"])) == (prior, layers, 4)
    assert list(described["sample"]["inputs"]) == list(p.noise)


def test_only_the_one_layer_gaussian_prior_has_an_analytic_kl_and_it_is_the_mean_of_log_q_minus_log_p():
    m = model(2, prior="gaussian")
    x = torch.rand(3, *SHAPE, dtype=torch.float64)
    eps = torch.randn(200000, 3, 2, dtype=torch.float64)
    with torch.no_grad():
        out = m(x, eps)
        np.testing.assert_allclose(out.kl.numpy(), (out.log_q - out.log_p).mean(0).numpy(), rtol=0.02)
        for prior, layers in (("vamp", 1), ("gaussian", 2), ("vamp", 2)):
            assert model(4, prior=prior, layers=layers)(x, eps[:2].repeat(1, 1, 2)).kl is None


@pytest.mark.parametrize("bad,message", [(dict(prior="flow"), "unknown prior"),
                                         (dict(latent_layers=3), "latent_layers must be 1 or 2"),
                                         (dict(latent_layers=2, latent_dim=5), "must be even"),
                                         (dict(prior="vamp", prior_components=0), "at least 1 component")])
def test_a_model_that_cannot_be_built_says_why_in_one_line(bad, message):
    kw = dict(arch="mlp", input_shape=SHAPE, hidden_dim=8, latent_dim=4, **bad) if "latent_dim" not in bad else \
        dict(arch="mlp", input_shape=SHAPE, hidden_dim=8, **bad)
    with pytest.raises(ValueError, match=message):
        VAE(**kw)


# --- training with a learned prior or two layers ------------------------------------------------

def _cfg(tmp_path, npy, name, **kw):
    from vae_edge.train.config import Config

    base = dict(dataset=str(npy), out_dir=str(tmp_path / "runs"), name=name, arch="mlp", hidden_dim=16,
                latent_dim=4, batch_size=16, epochs=2, test_fraction=0.2, prior="vamp", prior_components=5,
                latent_layers=2, binarize=True, kl_warmup=1.0, beta=0.9)
    return Config(**{**base, **kw})


@pytest.mark.parametrize("arch,train_k", [("mlp", 1), ("conv", 1), ("mlp", 3)])
def test_a_vampprior_hierarchy_trains_with_binarize_warmup_beta_and_importance_samples(tmp_path, tiny_npy, arch,
                                                                                       train_k):
    from vae_edge.train.train import train

    _, history = train(_cfg(tmp_path, tiny_npy, "run", arch=arch, train_k=train_k, iwae_k=20), quiet=True)
    last = history[-1]
    assert np.isfinite(last["train_loss"]) and last["test_iwae_20"] >= -last["test_loss"] - 1.0
    assert (tmp_path / "runs" / "run" / "samples.png").is_file()


def test_an_interrupted_vampprior_run_resumes_to_the_same_weights(tmp_path, tiny_npy, monkeypatch):
    from vae_edge.train import checkpoint
    from vae_edge.train import train as train_mod

    straight, _ = train_mod.train(_cfg(tmp_path, tiny_npy, "straight"), quiet=True)
    calls = {"n": 0}

    def stop_at_step_7(flag, ranks, device):
        calls["n"] += 1
        return calls["n"] == 7

    from vae_edge.train import stop

    monkeypatch.setattr(stop.StopFlag, "should_stop", stop_at_step_7)
    with pytest.raises(train_mod.Interrupted):
        train_mod.train(_cfg(tmp_path, tiny_npy, "broken"), quiet=True)
    resumed, _ = train_mod.train(train_mod.Config(), resume=str(tmp_path / "runs" / "broken"), quiet=True)
    a = checkpoint.load(tmp_path / "runs" / "straight" / "model.pt")["state_dict"]
    b = checkpoint.load(tmp_path / "runs" / "broken" / "model.pt")["state_dict"]
    assert "vamp.pseudo_inputs" in a and "ladder.q_mu.weight" in a
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_vae_train_refuses_an_odd_latent_dim_for_two_layers_in_one_line(tmp_path, tiny_npy):
    from conftest import run_cli

    r = run_cli("vae-train", "--dataset", tiny_npy, "--out-dir", tmp_path, "--latent-layers", "2", "--latent-dim", "5",
                "--epochs", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["error: two latent layers split latent_dim in halves (z1, z2): it must be "
                                             "even, got 5"]
    assert not (tmp_path / "vae").exists()

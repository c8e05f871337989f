"""The importance-weighted estimate of log p(x) (Burda, Grosse and Salakhutdinov, ICLR 2016).

With z_1..z_k drawn from q(z|x) = N(mu, exp(logvar)) and w_i = p(x|z_i) p(z_i) / q(z_i|x),

    log p(x) >= log (1/k) sum_i w_i,

a lower bound whose expectation rises towards log p(x) as k grows; k = 1 is a one-sample ELBO.
Published likelihoods on binarized MNIST-like data use k = 5000.

Two routes give the same numbers from the same noise (drawn by torch, `chunk` samples at a time):
torch on the model's own device, and onnxruntime, which runs a graph of the log-weights exported
in memory and decodes two to three times faster than PyTorch eager on a CPU (bench/iwae.py).
"""
from __future__ import annotations

import copy
import logging
import math
import warnings

import torch
from torch import nn

from . import likelihood as lik
from .model import VAE
from .progress import Bar

LOG_2PI = math.log(2 * math.pi)
BACKENDS = ("auto", "torch", "onnxruntime")
DECODES_PER_CALL = 4096  # samples x images decoded per step: big enough to keep the cores busy, small for memory
IMAGES_PER_BATCH = 100  # test images encoded at a time


class LogWeights(nn.Module):
    """(x [N,C,H,W], mu [N,D], logvar [N,D], eps [m,N,D]) -> log w [m,N], z = mu + exp(logvar / 2) * eps.

    for_export: the export's decoder (ConvTranspose2d recast as Conv2d, which onnxruntime runs faster) and
    log p(x|z) in ops that onnxruntime computes exactly (likelihood.bernoulli_log_prob).
    """

    def __init__(self, vae: VAE, for_export: bool = False):
        super().__init__()
        self.vae = vae
        self.for_export = for_export
        self.decoder = None
        if for_export:
            from vae_edge.export.graphs import Decoder

            self.decoder = Decoder(vae)

    def forward(self, x, mu, logvar, eps):
        m, n = eps.shape[0], eps.shape[1]
        z = mu + eps * torch.exp(0.5 * logvar)
        flat = z.reshape(m * n, -1)
        logits = self.decoder.logits(flat) if self.decoder is not None else self.vae.decode(flat)
        return log_weights(logits.reshape(m, n, -1), x, z, eps, logvar, self.vae.likelihood, for_export=self.for_export)


class Score(nn.Module):
    """(x [N,C,H,W], eps [m,N,D]) -> log w [m,N] for any prior and any number of latent layers: z ~ q(z|x) from
    eps, then log p(x|z) + log p(z) - log q(z|x), each exact (prior.py). The VampPrior's components are computed
    once, here; for_export as in LogWeights. This is score.onnx of a learned-prior or two-layer export."""

    def __init__(self, vae: VAE, for_export: bool = False):
        super().__init__()
        self.vae, self.for_export = vae, for_export
        self.decoder = None
        if for_export:
            from vae_edge.export.graphs import Decoder

            self.decoder = Decoder(vae)
        self.components = None
        if vae.prior == "vamp":
            with torch.no_grad():
                mu, logvar = vae.vamp_components()
            self.register_buffer("mu_k", mu.detach().clone())
            self.register_buffer("logvar_k", logvar.detach().clone())
            self.components = True

    def forward(self, x, eps):
        m, n = eps.shape[0], eps.shape[1]
        z, log_q = self.vae.posterior_sample(self.vae.features(x), eps)
        flat = z.reshape(m * n, -1)
        logits = self.decoder.logits(flat) if self.decoder is not None else self.vae.decode(flat)
        log_p = self.vae.log_prior(z, (self.mu_k, self.logvar_k) if self.components else None)
        return weigh(logits, x, log_p - log_q, self.vae.likelihood, for_export=self.for_export)


def log_weights(logits, x, z, eps, logvar, likelihood: str, kl_weight: float = 1.0,
                for_export: bool = False) -> torch.Tensor:
    """log w = log p(x|z) + kl_weight * (log p(z) - log q(z|x)), [m, N], from logits [m, N, ...] and z, eps [m, N, D]
    of a standard model (N(0, I), one layer).

    kl_weight 1 is the IWAE's weight; below 1 it is the KL warm-up's, in training. for_export: see LogWeights.
    """
    log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
    log_qz = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)  # log N(z; mu, exp(logvar)) at z = mu + std * eps
    return weigh(logits, x, log_pz - log_qz, likelihood, kl_weight, for_export)


def weigh(logits, x, log_ratio, likelihood: str, kl_weight: float = 1.0, for_export: bool = False) -> torch.Tensor:
    """log p(x|z) + kl_weight * log_ratio, [m, N], from logits [m, N, ...] and log_ratio = log p(z) - log q(z|x)."""
    logits = logits.float().reshape(*log_ratio.shape[:2], -1)
    x = x.reshape(log_ratio.shape[1], -1).expand_as(logits)
    log_px_z = lik.log_prob(logits, x, likelihood, for_export=for_export).sum(-1)
    return log_px_z + kl_weight * log_ratio


def iwae_objective(net, x: torch.Tensor, eps: torch.Tensor, likelihood: str, kl_weight: float = 1.0) -> torch.Tensor:
    """The importance-weighted bound with k = eps.shape[0] samples, per example [N], with gradients (training).

    net(x, eps) is the VAE (or its DDP wrapper) given eps [k, N, D]: one encoding, k decodings.
    """
    logits, a, b = net(x, eps)
    if getattr(net, "module", net).standard:  # a, b: mu, logvar
        z = a + eps * torch.exp(0.5 * b)
        lw = log_weights(logits, x, z.float(), eps, b.float(), likelihood, kl_weight)
    else:  # a, b: log q(z|x), log p(z)
        lw = weigh(logits, x, b.float() - a.float(), likelihood, kl_weight)
    return torch.logsumexp(lw, dim=0) - math.log(eps.shape[0])


@torch.no_grad()
def iwae_log_likelihood(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator,
                        chunk: int = 64, backend: str = "torch", session=None) -> torch.Tensor:
    """IWAE estimate of log p(x) with k samples, per example [N], in nats; x as the likelihood sees it.

    Samples are drawn `chunk` at a time and folded into a running logsumexp (in float64), so memory
    stays at O(N * chunk) whatever k is. backend "onnxruntime" needs a CPU model (and takes a session
    from `onnx_session` to save exporting it again).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    model.eval()
    mu, logvar = model.encode(x)
    if backend == "onnxruntime":
        session = session or onnx_session(model)
        feed = {"x": x.float().numpy()}
        if model.standard:
            feed.update(mu=mu.float().numpy(), logvar=logvar.float().numpy())
        log_w = lambda eps: torch.from_numpy(session.run(None, {**feed, "eps": eps.numpy()})[0])  # noqa: E731
    elif model.standard:
        log_weights = LogWeights(model)
        log_w = lambda eps: log_weights(x, mu, logvar, eps)  # noqa: E731
    else:
        score = Score(model)
        log_w = lambda eps: score(x, eps)  # noqa: E731
    acc = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    done = 0
    while done < k:
        m = min(chunk, k - done)
        eps = torch.randn((m, *mu.shape), generator=generator, device=mu.device)
        acc = torch.logaddexp(acc, torch.logsumexp(log_w(eps).double(), dim=0))
        done += m
    return acc - math.log(k)


def onnx_session(model: VAE, threads: int | None = None):
    """An onnxruntime session of LogWeights(model), exported in memory (a few seconds)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(log_weights_graph(model), sess_options=options, providers=["CPUExecutionProvider"])


def log_weights_graph(model: VAE, opset: int | None = None, from_images: bool = False) -> bytes:
    """LogWeights(model) (a standard model) or Score(model) as an ONNX model (symbolic sample and image axes),
    with the export's fast decoder; inputs x, (mu, logvar,) eps, output log_w. from_images: Score for a standard
    model too (inputs x and eps: the folder's score.onnx, which encodes inside the graph)."""
    model = copy.deepcopy(model).float().cpu().eval()
    scores = from_images or not model.standard
    module = (Score if scores else LogWeights)(model, for_export=True).eval()
    c, h, w = model.input_shape
    d = model.latent_dim
    gen = torch.Generator().manual_seed(0)
    example = (torch.rand(3, c, h, w, generator=gen), torch.randn(3, d, generator=gen),
               torch.randn(3, d, generator=gen), torch.randn(2, 3, d, generator=gen))
    names = ["x", "mu", "logvar", "eps"]
    if scores:
        example, names = (example[0], example[3]), ["x", "eps"]
    n, m = torch.export.Dim("n"), torch.export.Dim("m")
    axes = {"x": {0: n}, "mu": {0: n}, "logvar": {0: n}, "eps": {0: m, 1: n}}
    logging.disable(logging.ERROR)  # the exporter is chatty; a failure is raised below
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, example, dynamo=True, verbose=False,
                                        input_names=names, output_names=["log_w"],
                                        dynamic_shapes={k: axes[k] for k in names},
                                        **({"opset_version": opset} if opset else {}))
    finally:
        logging.disable(logging.NOTSET)
    return program.model_proto.SerializeToString()


def pick_backend(backend: str, device: torch.device) -> str:
    """auto: onnxruntime on the CPU, torch on an accelerator."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown IWAE backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" else "torch"
    if backend == "onnxruntime" and device.type != "cpu":
        raise ValueError("the onnxruntime IWAE backend runs on the CPU; use --device cpu or --iwae-backend torch")
    return backend


@torch.no_grad()
def iwae_sum(model: VAE, x: torch.Tensor, k: int, seed: int, backend: str = "auto",
             show_progress: bool = True) -> tuple[float, int]:
    """(sum over the images of their IWAE estimates of log p(x) with k samples, number of images), in nats.

    x holds the pixels the likelihood is defined on (`data.pixels`: binary for a --binarize model),
    IMAGES_PER_BATCH at a time. The noise comes from `seed` and is the same on both backends.
    """
    backend = pick_backend(backend, x.device)
    model.eval()
    g = torch.Generator(x.device).manual_seed(seed + 3)
    session = onnx_session(model) if backend == "onnxruntime" else None
    total = 0.0
    with Bar(x.shape[0] * k, f"IWAE k={k} ({backend})", show_progress, unit="decodes") as bar:
        for i in range(0, x.shape[0], IMAGES_PER_BATCH):
            batch = x[i:i + IMAGES_PER_BATCH]
            chunk = max(1, DECODES_PER_CALL // batch.shape[0])
            ll = iwae_log_likelihood(model, batch, k, g, chunk=chunk, backend=backend, session=session)
            total += ll.sum().item()
            bar.advance(batch.shape[0] * k)
    return total, x.shape[0]


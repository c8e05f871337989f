"""The torch-free VAE: an exported encoder and decoder run by onnxruntime, numpy in and out.

Everything here is stateless after loading (onnxruntime sessions and a dict; the encoder's session is made
once, under a lock, on first use), so one loaded VAE can be shared by many threads: InferenceSession.run is
thread-safe and every call makes its own random Generator.

Loading goes down the layers: bundled.py (which folder), folder.py (vae.json read once into a ModelFolder, and
the files' sha256), sessions.py (onnxruntime), graph.py (the networks fit vae.json); inputs.py checks what the
caller passes.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from . import bundled, graph, inputs, prior, random, score
from .errors import RuntimeInputError
from .folder import PRECISIONS, ModelFolder, read_folder
from .rules import LIMITS, message
from .sessions import InferenceSession, check_ort_format, open_file, ort

DEFAULT_BATCH_SIZE = LIMITS["batch_size"]
MAX_THREADS = LIMITS["threads"]  # onnxruntime starts every thread asked for: 10^5 hangs the load, 2^31 overflows


def check_provider(asked: str, used: list[str]) -> None:
    """onnxruntime lists a provider it was built with and, where this machine cannot run it (no GPU, no driver),
    makes the session on the CPU with a warning: that is an error here, not a silent fallback."""
    if asked not in used:
        raise RuntimeInputError(f"onnxruntime lists {asked} but could not use it on this machine (the session "
                                f"runs on {', '.join(used)}); pick another provider")


class VAE:
    """An exported VAE on onnxruntime: encode, decode, sample, reconstruct, interpolate."""

    def __init__(self, encoder: InferenceSession | None, decoder: InferenceSession, model_folder: ModelFolder,
                 precision: str = "fp32", batch_size: int = DEFAULT_BATCH_SIZE):
        self._enc, self._dec, self._model_folder = encoder, decoder, model_folder
        self.precision = precision
        self.folder: Path = model_folder.path  # where it was loaded from, and the bundled model's name if it is one
        self.bundled: str | None = None
        self._prior: prior.Prior | None = None  # a format-2 folder's prior.onnx (VAE.load)
        self._scorer: score.Scorer | None = None  # score.onnx, where the folder has one (VAE.load)
        self.batch_size = inputs.check_count(batch_size, "batch_size")
        self._shape, self._latent = model_folder.input_shape, model_folder.latent_dim
        self._x_name, self._z_name = graph.check_pair(encoder, decoder, self._shape, self._latent,
                                                      str(model_folder.path))

    @classmethod
    def load(cls, path: str | os.PathLike | ModelFolder | None = None, precision: str = "fp32",
             threads: int | None = None,
             providers: list | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
             decoder_only: bool = False, ort_format: bool = False) -> "VAE":
        """Load an export folder, refusing files whose sha256 differs from vae.json.

        path: a folder written by vae-export, or the name of a model bundled with the package; None means
        ./vae-onnx if it exists, else the bundled default (`vae-info --list` lists them); or a ModelFolder
        already read (folder.read_folder), whose vae.json is not read again.

        Both files are checked at load (sha256, versions, shapes); the encoder's onnxruntime session is
        made when something first encodes, so that sampling never pays for it.
        decoder_only=True reads the decoder alone: enough for sample and decode; encode, reconstruct and
        interpolate then raise.
        ort_format=True loads the ORT-format files (.ort) that `vae-export --ort` wrote, as onnxruntime's
        mobile and minimal builds would.
        """
        if precision not in PRECISIONS:
            raise RuntimeInputError(message("precision", precisions=", ".join(PRECISIONS), got=repr(precision)))
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or not 0 <= threads <= MAX_THREADS):
            raise RuntimeInputError(f"threads must be an int from 0 (onnxruntime decides) to {MAX_THREADS}, "
                                    f"got {threads!r}")
        providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        for p in providers:
            pname = p[0] if isinstance(p, (tuple, list)) else p
            if pname not in available:
                # onnxruntime would only warn and fall back to CPU; an explicit request deserves an error.
                raise RuntimeInputError(f"provider {pname!r} is not available here; available: {', '.join(available)}")
        if isinstance(path, ModelFolder):
            folder, bundled_name = path, None
        else:
            where, bundled_name = bundled.resolve(path)
            folder = read_folder(where)
        enc_key, dec_key = folder.files_for(precision, ort_format)
        if ort_format:
            check_ort_format(folder, enc_key, dec_key)
        encoder = None if decoder_only else open_file(folder, enc_key, threads, providers, ort_format,
                                                      lazy=not ort_format)
        vae = cls(encoder, open_file(folder, dec_key, threads, providers, ort_format), folder, precision,
                  batch_size)
        vae.bundled = bundled_name
        first = providers[0] if providers else None
        if first is not None:
            check_provider(first[0] if isinstance(first, (tuple, list)) else first, vae.providers)
        if folder.prior is not None:  # prior.onnx, fp32 at any precision; format 1 ignores "prior"
            vae._prior = prior.Prior(folder, open_file(folder, "prior", threads, providers))
        if folder.prior is not None or folder.has("score"):  # format 2 always scores; opened on the first score
            vae._scorer = score.Scorer(folder, lambda: open_file(folder, "score", threads, providers))
        return vae

    # -- facts -----------------------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self._latent

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def background(self) -> str:
        """What transparent images are composited onto before encoding or scoring: the training's (vae.json)."""
        return self._model_folder.background

    @property
    def providers(self) -> list[str]:
        """The execution providers the decoder's session runs on, as onnxruntime reports them (no silent fallback
        goes unseen: a provider asked for and missing here fell back)."""
        return list(self._dec.get_providers())

    @property
    def meta(self) -> dict:
        """The vae.json dict (a copy: the loaded model never changes)."""
        return json.loads(json.dumps(self._model_folder.meta))

    def __repr__(self) -> str:
        m = self._model_folder.meta["model"]
        return (f"VAE(arch={m.get('arch')!r}, input_shape={self._shape}, latent_dim={self._latent}, "
                f"precision={self.precision!r}, batch_size={self.batch_size}"
                f"{', decoder_only=True' if self._enc is None else ''})")

    # -- the networks ----------------------------------------------------------------------------------
    def _encode_chunk(self, encoder: InferenceSession, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        latent = (len(x), self._latent)
        mu, logvar = encoder.run(["mu", "logvar"], {self._x_name: inputs.pixels(x, self._shape)}, [latent, latent])
        return mu, logvar

    def _decode_chunk(self, z: np.ndarray) -> np.ndarray:
        return self._dec.run(None, {self._z_name: inputs.finite_latents(z)}, [(len(z), *self._shape)])[0]

    def encode(self, x, sample: bool = False, seed: int | None = None, start: int = 0):
        """x -> (mu, logvar), each (N, latent_dim) float32; or, with sample=True, z = mu + exp(logvar/2) * eps.

        eps ~ N(0, I) is the seed's stream eps (docs/noise.md): image i's are normals i d .. (i + 1) d - 1, the
        numbers sample() draws, so the result does not depend on batch_size; i counts from start, the index of x[0]
        in a set encoded in chunks.
        """
        if self._enc is None:
            raise RuntimeInputError("this VAE was loaded with decoder_only=True; load it without to encode")
        seed = inputs.check_seed(seed)
        start = inputs.check_count(start + 1, "start + 1", limit=None) - 1
        x, _ = inputs.images(x, self._shape)
        n, bs = x.shape[0], self.batch_size
        mu = np.empty((n, self._latent), np.float32)
        logvar = np.empty((n, self._latent), np.float32)
        for i in range(0, n, bs):
            mu[i:i + bs], logvar[i:i + bs] = self._encode_chunk(self._enc, x[i:i + bs])
        if not sample:
            return mu, logvar
        seed = random.fresh_seed() if seed is None else seed
        z = np.empty_like(mu)
        for i in range(0, n, bs):
            m = min(bs, n - i)
            eps = random.gaussian(m * self._latent, seed, (start + i) * self._latent).reshape(m, self._latent)
            z[i:i + bs] = mu[i:i + bs] + np.exp(0.5 * logvar[i:i + bs]) * eps
        return z

    def decode(self, z) -> np.ndarray:
        """z (N, latent_dim) -> pixel probabilities (N, C, H, W) float32 in [0, 1]."""
        return self._gather(self.iter_decode(z), len(np.asarray(z)))

    def iter_decode(self, z) -> Iterator[np.ndarray]:
        """Yield decode(z) in chunks of batch_size; z may be a memory-mapped .npy of any length."""
        z = inputs.latents(z, self._latent)
        return (self._decode_chunk(z[i:i + self.batch_size]) for i in range(0, z.shape[0], self.batch_size))

    def iter_samples(self, n: int, seed: int | None = None, temperature: float = 1.0,
                     batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Yield n samples in chunks of batch_size, (m, C, H, W) each; they concatenate to sample(n, seed)."""
        n, seed = inputs.check_count(n, "n", limit=None), inputs.check_seed(seed)  # streamed: any n
        temperature = inputs.check_temperature(temperature)
        bs = self.batch_size if batch_size is None else inputs.check_count(batch_size, "batch_size")
        return self._iter_samples(n, seed, temperature, bs)

    def _iter_samples(self, n: int, seed, temperature: float, bs: int) -> Iterator[np.ndarray]:
        # sample i's noise is a pure function of (seed, i) (docs/noise.md): the samples do not depend on bs
        seed = random.fresh_seed() if seed is None else seed
        for i in range(0, n, bs):
            m = min(bs, n - i)
            z = random.scaled(random.gaussian(m * self._latent, seed, i * self._latent), temperature)
            z = z.reshape(m, self._latent)
            if self._prior is not None:  # temperature scales eps, never the mixture's u
                z = self._prior.z(z, random.uniform(m, seed, i))
            yield self._decode_chunk(z)

    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> np.ndarray:
        """n images (n, C, H, W) float32 decoded from z = temperature * eps, eps ~ N(0, I) the seed's noise
        (docs/noise.md: the same in JavaScript and C); with a learned prior or two layers,
        z = prior.onnx(temperature * eps, u) (runtime/prior.py)."""
        n = inputs.check_count(n, "n")  # first: iter_samples takes any n
        return self._gather(self.iter_samples(n, seed, temperature), n)

    @property
    def prior(self) -> str:
        """The prior's name: gaussian (N(0, I)) or vamp; vae.json's "prior" says more."""
        return self._prior.name if self._prior is not None else "gaussian"

    def from_noise(self, eps, u=None) -> np.ndarray:
        """The z that sample() decodes for noise eps (N, latent_dim) and, for a mixture, u (N,) in [0, 1)."""
        eps = inputs.finite_latents(inputs.latents(eps, self._latent))
        return self._prior.z(eps, u) if self._prior is not None else eps.astype(np.float32)

    def noise(self, n: int, seed: int | None = None, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
        """The noise that sample(n, seed, temperature) decodes: eps (n, latent_dim) float32, already times
        temperature, and u (n,) float32 for a learned prior (else None), so that
        sample(n, seed, temperature) == decode(from_noise(*noise(n, seed, temperature))), bit for bit where the
        networks give the same bits at any batch size (a server batches requests so: docs/serving.md)."""
        n, seed = inputs.check_count(n, "n"), inputs.check_seed(seed)
        temperature = inputs.check_temperature(temperature)
        seed = random.fresh_seed() if seed is None else seed  # the same draws as _iter_samples (docs/noise.md)
        eps = random.scaled(random.gaussian(n * self._latent, seed), temperature).reshape(n, self._latent)
        return eps, (random.uniform(n, seed) if self._prior is not None else None)

    def log_likelihood(self, x, k: int = 1000, seed: int | None = None, eps=None) -> np.ndarray:
        """The IWAE estimate of log p(x) in nats, per image, with k samples, from score.onnx; x holds the pixels
        the likelihood is defined on (0/1 for a --binarize model, taken as given); eps (k, N, latent_dim) optional
        noise. score() is its negative on the model's own pixels."""
        x, _ = inputs.images(x, self._shape)
        return self._score_with()(inputs.pixels(x, self._shape), inputs.check_count(k, "k"), inputs.check_seed(seed),
                                  self._noise(eps, k, len(x)))

    def score(self, images, k: int = 1, seed: int | None = None, eps=None, bits_per_dim: bool = False,
              start: int = 0) -> np.ndarray:
        """The anomaly score of each image (float64): -log p(x) estimated from score.onnx, the negative ELBO at k = 1
        and the negative IWAE bound for k > 1, in nats per image (bits per dimension with bits_per_dim). Higher is
        less like the training data.

        The pixels are those the likelihood is defined on: a model trained with --binarize (vae.json's
        recipe.binarize) scores x >= 0.5 as 1 and the rest as 0 (grey inputs are thresholded, not refused);
        any other model scores the grey levels. eps (k, N, latent_dim) is the noise, else the seed's (docs/noise.md:
        image i's sample s is normals (i k + s) d .. of stream eps, i counted from start, the index of images[0]
        in a set scored in chunks)."""
        x, _ = inputs.images(images, self._shape)
        k, seed = inputs.check_count(k, "k"), inputs.check_seed(seed)
        start = inputs.check_count(start + 1, "start + 1", limit=None) - 1
        x = score.to_pixels(inputs.pixels(x, self._shape), self._model_folder.binarized)
        nll = -self._score_with()(x, k, seed, self._noise(eps, k, len(x)), start)
        return nll / (math.prod(self._shape) * math.log(2)) if bits_per_dim else nll

    @property
    def pixel_rule(self) -> str:
        """The pixels score() computes on, in words (what a vae-score threshold records)."""
        return score.pixel_rule(self._model_folder.binarized)

    @property
    def can_score(self) -> bool:
        """Whether the folder has score.onnx: a 0.1.0 folder has none, and score() refuses it."""
        return self._scorer is not None

    def _score_with(self):
        if self._scorer is None:
            raise score.missing(self.folder)
        return self._scorer.log_likelihood

    def _noise(self, eps, k: int, n: int) -> np.ndarray | None:
        """Explicit noise, checked: finite floats of shape (k, N, latent_dim)."""
        if eps is None:
            return None
        eps = np.asarray(eps)
        if not np.issubdtype(eps.dtype, np.floating) or eps.shape != (k, n, self._latent):
            raise RuntimeInputError(f"eps has {eps.dtype} shape {tuple(eps.shape)}; expected floats of shape "
                                    f"({k}, {n}, {self._latent}) (k, N, latent_dim)")
        eps = np.ascontiguousarray(eps, dtype=np.float32)
        if not np.isfinite(eps).all():
            raise RuntimeInputError("eps contains NaN or inf")
        return eps

    def _gather(self, chunks: Iterator[np.ndarray], n: int) -> np.ndarray:
        out = np.empty((n, *self._shape), np.float32)
        i = 0
        for chunk in chunks:
            out[i:i + len(chunk)] = chunk
            i += len(chunk)
        return out

    def reconstruct(self, x) -> np.ndarray:
        """decode(mu(x)): probabilities in the layout of x ((N, C, H, W) or (N, C*H*W)), float32."""
        x, flat = inputs.images(x, self._shape)
        mu, _ = self.encode(x)
        out = self.decode(mu)
        return out.reshape(len(out), -1) if flat else out

    def interpolate(self, x1, x2, steps: int = 8) -> np.ndarray:
        """Decode `steps` points on the line from mu(x1) to mu(x2), both ends included.

        x1, x2: single images ((C, H, W) or (C*H*W,)) -> (steps, *image shape); or batches of the
        same shape ((N, C, H, W) or (N, C*H*W)) -> (steps, N, *image shape).
        """
        steps = inputs.check_count(steps, "steps")
        if steps < 2:
            raise RuntimeInputError(f"steps must be >= 2 (both ends are included), got {steps}")
        a, b = np.asarray(x1), np.asarray(x2)
        if a.shape != b.shape:
            raise RuntimeInputError(f"x1 and x2 differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
        single = a.ndim in (1, 3)
        if single:
            a, b = a[None], b[None]
        a, flat = inputs.images(a, self._shape)
        inputs.images(b, self._shape)
        mu1, _ = self.encode(a)
        mu2, _ = self.encode(b)
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None, None]
        z = (1 - t) * mu1[None] + t * mu2[None]  # (steps, N, latent_dim)
        out = self.decode(z.reshape(-1, self._latent))
        n = a.shape[0]
        out = out.reshape(steps, n, -1) if flat else out.reshape(steps, n, *self._shape)
        return out[:, 0] if single else out

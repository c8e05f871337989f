"""One worker thread runs onnxruntime; requests that arrive together share its runs.

The event loop hands each checked request to submit(); the worker takes the first waiting job, then whatever else
is queued (waiting up to max_wait for more, never past max_batch rows), and runs each model file once for the
lot: the prior's graph on every sample's noise, the decoder on those z and every decode's latents, the encoder on
every encode's images. The rows are split back in order, so each request gets what VAE.sample, decode and encode
give it alone (bit for bit where onnxruntime's kernels do not depend on the batch size: docs/serving.md). A score
job is VAE.score on its own images, once per request: its noise is drawn from its seed for images 0.. of the
request (start 0), as a caller of VAE.score alone gets it.

Coalescing a model file is right only where its outputs for a row do not depend on the other rows of the run.
probe() checks each file at start: a run over 8 random rows against 8 runs of one row. fp32 files give the same
bits here; int8 files quantized dynamically (activation scales from the whole batch) do not, so their runs stay
one per request, in the same batch loop.

Admission is bounded on the loop's side: at most max_queue jobs are accepted and unanswered; one more is refused
(QueueFull, a 503). A job whose request gave up (timeout, client gone) is marked and skipped if not yet run.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import RuntimeInputError

TOLERANCE = 1e-5  # coalesced where rows alone and together differ by at most this (the runtime's parity bound)
PROBE_ROWS = 8
STOP = None  # put on the queue by stop(): the worker ends after the jobs before it


class QueueFull(Exception):
    """max_queue requests are already waiting."""


@dataclass(eq=False)
class Job:
    kind: str  # "sample" (args: n, seed, temperature), "decode" (z float32), "encode" (x float32) or "score"
    # (x float32, k, seed, bits_per_dim)
    rows: int
    args: tuple
    future: Any = None
    loop: Any = None
    abandoned: bool = False  # set by the loop when the request stops waiting
    result: Any = field(default=None, repr=False)


def probe(vae) -> dict[str, float]:
    """For each model file (prior, decoder, encoder): the largest difference between a run over PROBE_ROWS random
    rows and the same rows run one at a time (0.0: bit for bit)."""
    rng = np.random.default_rng(0)
    eps, u = vae.noise(PROBE_ROWS, seed=0)
    z = rng.standard_normal((PROBE_ROWS, vae.latent_dim)).astype(np.float32)
    x = rng.random((PROBE_ROWS, *vae.input_shape), dtype=np.float32)
    runs = {"prior": lambda rows: vae.from_noise(eps[rows], None if u is None else u[rows]),
            "decoder": lambda rows: vae.decode(z[rows]),
            "encoder": lambda rows: np.concatenate(vae.encode(x[rows]), axis=1)}
    out = {}
    for name, run in runs.items():
        try:
            together = run(slice(None))
        except RuntimeInputError:  # no such file: a decoder_only VAE has no encoder
            continue
        alone = np.concatenate([run(slice(i, i + 1)) for i in range(PROBE_ROWS)])
        out[name] = float(np.abs(together.astype(np.float64) - alone).max())
    return out


class Batcher:
    def __init__(self, vae, max_batch: int, max_wait_s: float, max_queue: int, metrics,
                 differences: dict[str, float] | None = None):
        self.vae, self.max_batch, self.max_wait, self.max_queue = vae, max_batch, max_wait_s, max_queue
        self.differences = probe(vae) if differences is None else differences
        self.coalesce = {name: d <= TOLERANCE for name, d in self.differences.items()}
        self.metrics = metrics
        self.pending = 0  # accepted and unanswered; read and written on the event loop only
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="vae-serve-onnxruntime", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Let the worker finish what is queued, then end it."""
        self._queue.put(STOP)
        self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the event loop's side ---------------------------------------------------------------------------
    def submit(self, job: Job) -> asyncio.Future:
        """Queue a job; its future gets the result (or the exception). Raises QueueFull."""
        if self.pending >= self.max_queue:
            raise QueueFull
        self.pending += 1
        self.metrics.queue_depth(self.pending)
        job.loop = asyncio.get_running_loop()
        job.future = job.loop.create_future()
        job.future.add_done_callback(self._answered)
        self._queue.put(job)
        return job.future

    def _answered(self, _future) -> None:
        self.pending -= 1
        self.metrics.queue_depth(self.pending)

    # -- the worker thread -------------------------------------------------------------------------------
    def _work(self) -> None:
        carry = None
        while True:
            job = carry if carry is not None else self._queue.get()
            carry = None
            if job is STOP:
                return
            batch, rows = [job], job.rows
            deadline = time.monotonic() + self.max_wait
            while rows < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is STOP or rows + nxt.rows > self.max_batch:
                    carry = nxt  # the next batch's first (or the end, after this batch)
                    break
                batch.append(nxt)
                rows += nxt.rows
            self._run([j for j in batch if not j.abandoned])

    def _run(self, batch: list[Job]) -> None:
        if not batch:
            return
        try:
            self._decode([j for j in batch if j.kind in ("sample", "decode")])
            self._encode([j for j in batch if j.kind == "encode"])
            self._score([j for j in batch if j.kind == "score"])
            self.metrics.batch(len(batch), sum(j.rows for j in batch))
        except Exception as e:  # noqa: BLE001 (a model that fails to run: every job of the batch is answered)
            for j in batch:
                if j.result is None:
                    j.result = e
        for j in batch:
            _answer(j)

    def _decode(self, jobs: list[Job]) -> None:
        """Sample jobs' noise through the prior, then their z and decode jobs' z through the decoder."""
        samples, noises = [], []
        for j in jobs:
            if j.kind == "sample":
                try:
                    noises.append(self.vae.noise(*j.args))
                    samples.append(j)
                except ValueError as e:  # a RuntimeInputError: that request's alone
                    j.result = e
        zs: dict[Job, np.ndarray] = {}
        if samples and noises[0][1] is None:  # a Gaussian prior: z is eps, no model file runs
            zs.update((j, self.vae.from_noise(eps)) for j, (eps, _) in zip(samples, noises))
        elif samples:
            join = lambda parts: tuple(np.concatenate(p) for p in zip(*parts))  # noqa: E731 (eps, u)
            zs.update(zip(samples, self._runs("prior", noises, [j.rows for j in samples],
                                              lambda noise: self.vae.from_noise(*noise), join)))
        zs.update((j, j.args[0]) for j in jobs if j.kind == "decode")
        order = list(zs)
        images = self._runs("decoder", [zs[j] for j in order], [j.rows for j in order], self.vae.decode,
                            np.concatenate)
        for j, part in zip(order, images):
            j.result = part

    def _encode(self, jobs: list[Job]) -> None:
        both = lambda x: np.concatenate(self.vae.encode(x), axis=1)  # noqa: E731 ([mu | logvar], split below)
        parts = self._runs("encoder", [j.args[0] for j in jobs], [j.rows for j in jobs], both, np.concatenate)
        for j, part in zip(jobs, parts):
            j.result = (part[:, :self.vae.latent_dim], part[:, self.vae.latent_dim:])

    def _score(self, jobs: list[Job]) -> None:
        """Each score job alone (score.onnx's runs are chunked by k inside VAE.score); a bad one fails alone."""
        for j in jobs:
            x, k, seed, bits_per_dim = j.args
            self.metrics.run("score", j.rows)
            try:
                j.result = self.vae.score(x, k=k, seed=seed, bits_per_dim=bits_per_dim)
            except ValueError as e:  # a RuntimeInputError or ModelFolderError: that request's alone
                j.result = e

    def _runs(self, name: str, inputs: list, rows: list[int], run, join) -> list[np.ndarray]:
        """run over the inputs (rows each): once, on them joined, where the file may be coalesced; else once each."""
        if not inputs:
            return []
        if not self.coalesce.get(name, False):
            for n in rows:
                self.metrics.run(name, n)
            return [run(a) for a in inputs]
        self.metrics.run(name, sum(rows))
        return np.split(run(join(inputs)), np.cumsum(rows)[:-1])


def _answer(job: Job) -> None:
    def settle():
        if job.future.done():
            return
        if isinstance(job.result, BaseException):
            job.future.set_exception(job.result)
        else:
            job.future.set_result(job.result)

    job.loop.call_soon_threadsafe(settle)

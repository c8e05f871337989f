"""The training loop: whole dataset on the device, batches sliced from a per-epoch permutation.

Runs as one process, or under torchrun with DistributedDataParallel: each rank takes its share of
every global batch, so the examples, the noise and the updates are those of a single process.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoint
from .config import Config
from .data import TEST_BITS_SEED, load_data, pixels
from .iwae import iwae_sum
from .likelihood import LIKELIHOODS
from .model import VAE, elbo_terms
from .step import WARMUP_STEPS, Inputs, Step, load_state, optimizer, portable_state, set_learning_rate

EVAL_BATCH = 1000  # test examples per evaluation step; memory stays small, results don't depend on it
LR_SCHEDULES = ("constant", "cosine")


class TrainError(ValueError):
    """A run that cannot start; the message is one line for the user."""


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for, but no CUDA GPU is available")
    return device


@dataclass
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Ranks, torch.device]:
    """Join the torchrun job named by the environment, if any: NCCL on CUDA, gloo on the CPU."""
    if "RANK" not in os.environ:  # not started by torchrun (which may start one process: a group of one)
        return Ranks(), pick_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ranks, device


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop saves and stops at the next step boundary."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


class Interrupted(Exception):
    """Training stopped by a signal after saving last.pt."""

    def __init__(self, signum: int, path: Path):
        super().__init__(f"interrupted; saved {path}")
        self.signum, self.path = signum, path


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    checkpoint.publish(tmp, path)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """A PNG grid laid out as torchvision's save_image does, written atomically by the runtime's own writer
    (importing torchvision would cost a second of every run's start-up)."""
    from vae_edge.runtime.images import save_grid as write_grid

    write_grid(images.float().cpu().numpy(), path, nrow=nrow)


def run_dir(cfg: Config) -> Path:
    return Path(cfg.out_dir) / cfg.name


def train(cfg: Config, resume: str | None = None, force: bool = False,
          quiet: bool = False, started: float | None = None) -> tuple[VAE, list[dict]]:
    """Fit the VAE described by `cfg` (or continue the run in `resume`); returns it and its per-epoch metrics.

    started: time.perf_counter() at the process's start, to report the start-up in the closing time line.
    """
    clock = _Clock(started)
    state = None
    if resume:
        last = Path(resume) / "last.pt" if Path(resume).is_dir() else Path(resume)
        if not last.is_file():
            raise TrainError(f"nothing to resume: {last} does not exist")
        state = checkpoint.load(last)
        if not checkpoint.is_vae_edge(state) or "optimizer" not in state:
            raise TrainError(f"{last} is not a resumable vae-train checkpoint")
        cfg = Config.from_dict(state["config"])
        cfg.out_dir, cfg.name = str(last.parent.parent), last.parent.name
    ranks, device = init_distributed(cfg.device)
    if device.type == "cuda":  # the driver, the context and the first allocation, timed on their own
        torch.zeros(1, device=device)
        clock.lap("CUDA context")
    out = run_dir(cfg)
    if state is None and not force and ((out / "last.pt").exists() or (out / "model.pt").exists()):
        raise TrainError(f"{out} already holds a run; resume it with --resume {out}, "
                         f"or pass --force to start over, or pick another --name")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise TrainError("--epochs and --batch-size must be at least 1, and --lr positive")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise TrainError(f"unknown --lr-schedule {cfg.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if cfg.likelihood not in LIKELIHOODS:
        raise TrainError(f"unknown --likelihood {cfg.likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
    if cfg.binarize and cfg.likelihood != "bernoulli":
        raise TrainError(f"--binarize makes every pixel 0 or 1, where the {cfg.likelihood} density does not "
                         f"apply; use --likelihood bernoulli with --binarize")
    if cfg.beta < 0 or cfg.kl_warmup < 0:
        raise TrainError("--beta and --kl-warmup must not be negative")
    if cfg.train_k < 1:
        raise TrainError(f"--train-k must be at least 1, got {cfg.train_k}")
    if cfg.batch_size % ranks.world:
        raise TrainError(f"--batch-size {cfg.batch_size} must divide evenly across {ranks.world} processes")
    say = (lambda *a: None) if (quiet or not ranks.main) else (lambda *a: print(*a, flush=True))

    clock.lap("start-up")
    data = load_data(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.channels, cfg.test_fraction, cfg.seed)
    cfg.input_shape = data.shape
    clock.lap("data")
    graphs = cfg.cuda_graphs and device.type == "cuda"
    if graphs and dist.is_initialized():
        say("note: CUDA graphs are off under torchrun (DDP's all-reduce runs outside a captured step); training eagerly")
        graphs = False
    torch.manual_seed(cfg.seed)  # the weights' initialisation
    model = VAE.from_config(cfg.model()).to(device)
    opt = optimizer(model.parameters(), cfg.lr, device, graphs)
    perm_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator(device).manual_seed(cfg.seed + 1)
    start_epoch, start_step, partial, history = 1, 0, None, []
    if state is not None:
        model.load_state_dict(state["state_dict"])
        load_state(opt, state["optimizer"])
        perm_gen.set_state(state["perm_rng"])
        try:
            noise_gen.set_state(state["noise_rng"])
        except RuntimeError:  # a CUDA generator's state on the CPU, or the other way round
            raise TrainError(f"{last} was saved by a run on another kind of device than {device.type} (its noise "
                             f"generator's state does not fit here); resume it on the kind it was trained on") from None
        start_epoch, start_step = state["epoch"], state["step"]
        partial, history = state["partial"], list(state["metrics"])
        if start_epoch > cfg.epochs:
            say(f"{out} is complete ({cfg.epochs} epochs); nothing to resume")
            return model, history
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)

    net = model
    if dist.is_initialized():
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    amp = cfg.amp and device.type == "cuda"
    if cfg.amp and not amp:
        say("note: --amp uses bf16 autocast on CUDA only; training in float32")

    train_x, test_images = data.train.to(device), data.test.to(device)
    test_x = pixels(data.test, cfg.binarize).to(device)  # what every test figure is computed on
    n, batch = train_x.shape[0], cfg.batch_size
    steps = math.ceil(n / batch)
    step = Step(net, opt, train_x, cfg.likelihood, cfg.train_k, ranks.world, ranks.rank, amp)
    full = Inputs.empty(min(batch, n), data.shape, cfg.latent_dim, cfg.train_k, cfg.binarize, device)
    last = Inputs.empty(n - (steps - 1) * batch, data.shape, cfg.latent_dim, cfg.train_k, cfg.binarize, device) \
        if n % batch else full  # the epoch's last, smaller batch: eager
    warmup = torch.cuda.Stream(device) if graphs else None  # eager steps before capture run on a side stream
    eager_full_steps = 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    clock.lap("model on " + device.type)
    say(f"training {cfg.arch} VAE on {data.source}: {n} train / {test_x.shape[0]} test images "
        f"of {'x'.join(map(str, data.shape))}, on {device}" + (f" x {ranks.world} processes" if ranks.world > 1 else ""))

    with StopFlag() as stop:
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.perf_counter()
            perm_state = perm_gen.get_state()
            perm = torch.randperm(n, generator=perm_gen).to(device)
            step.loss_sum.zero_()
            count = 0
            if partial is not None and ranks.main:  # the whole job's sums before the interrupt, counted once
                step.loss_sum += partial[0]
                count += int(partial[1])
            partial = None
            net.train()
            # The bar reads a step counter; the running loss only on the CPU, where reading it costs no sync.
            bar = _progress(steps - start_step, f"epoch {epoch}/{cfg.epochs}", ranks.main and not quiet)
            loss_text = (lambda: f"loss {step.last.mean().item():.2f}") if device.type == "cpu" else None
            for s in range(start_step, steps):
                inputs = full if (s + 1) * batch <= n else last
                if cfg.lr_schedule != "constant":
                    set_learning_rate(opt, learning_rate(cfg, epoch, s, steps))
                inputs.fill(perm[s * batch:(s + 1) * batch], noise_gen, kl_weight(cfg, epoch, s, steps))
                if graphs and step.graph is None and inputs is full and eager_full_steps >= WARMUP_STEPS:
                    graphs = _capture(step, full, warmup, clock, say)
                if graphs and step.graph is None:
                    warmup.wait_stream(torch.cuda.current_stream(device))
                    with torch.cuda.stream(warmup):
                        step.run(inputs)
                    torch.cuda.current_stream(device).wait_stream(warmup)
                else:
                    step.run(inputs)
                eager_full_steps += inputs is full and step.graph is None
                count += len(inputs.idx) // ranks.world + (ranks.rank < len(inputs.idx) % ranks.world)
                bar.update(1, loss_text)
                if _should_stop(stop, ranks, device):
                    bar.close()
                    sums = _job_sums(step.loss_sum, count, ranks, device)  # every rank is at this step
                    ckpt = _resume_state(model, opt, cfg, history, epoch, s + 1, perm_state, noise_gen, sums)
                    path = out / "last.pt"
                    if ranks.main:
                        checkpoint.save(ckpt, path)
                    raise Interrupted(stop.signum or signal.SIGINT, path)
            bar.close()
            start_step = 0
            loss_total, examples = _job_sums(step.loss_sum, count, ranks, device)
            clock.lap("training")
            metrics = {"epoch": epoch, "train_loss": loss_total / examples}
            metrics.update(evaluate(model, test_x, cfg, ranks, device, amp))
            metrics["seconds"] = time.perf_counter() - t0
            metrics["examples_per_s"] = examples / metrics["seconds"]
            clock.lap("test")
            if epoch == cfg.epochs and cfg.iwae_k > 0:
                metrics[f"test_iwae_{cfg.iwae_k}"] = iwae(model, test_x, cfg.iwae_k, cfg.seed, ranks, device)
                clock.lap("IWAE")
            metrics.update(describe(metrics, cfg.binarize))
            history.append(metrics)
            if ranks.main:
                _save_epoch(out, model, opt, cfg, history, epoch, perm_gen, noise_gen, test_images, device, clock)
            say(_summary(metrics, cfg.epochs))
    if ranks.main:
        checkpoint.save(final_checkpoint(model, cfg, history), out / "model.pt")
        clock.lap("checkpoints")
        say(f"done: {out / 'model.pt'}  (metrics.jsonl, samples.png, reconstructions.png beside it)")
        say(clock.summary())
    if ranks.world > 1:
        dist.barrier()  # no rank leaves (and tears down gloo) while rank 0 is still writing
    return model, history


def kl_weight(cfg: Config, epoch: int, step: int, steps: int) -> float:
    """The KL term's weight at `step` (0-based) of `epoch` (1-based): beta, ramped linearly from 0 over kl_warmup epochs."""
    warm = min(1.0, (epoch - 1 + step / steps) / cfg.kl_warmup) if cfg.kl_warmup > 0 else 1.0
    return cfg.beta * warm


def learning_rate(cfg: Config, epoch: int, step: int, steps: int) -> float:
    """Adam's rate at `step` of `epoch`: lr throughout (constant), or lr * (1 + cos(pi t)) / 2 with t = 0 -> 1 (cosine)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    t = ((epoch - 1) * steps + step) / (cfg.epochs * steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))


def final_checkpoint(model: VAE, cfg: Config, history: list[dict]) -> dict:
    """The exportable checkpoint: config, weights and metrics, no training state."""
    return {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "config": cfg.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "metrics": history}


def _resume_state(model, opt, cfg, history, epoch, step, perm_state, noise_gen, sums) -> dict:
    ckpt = final_checkpoint(model, cfg, history)
    ckpt.update(optimizer=portable_state(opt), epoch=epoch, step=step, perm_rng=perm_state,
                noise_rng=noise_gen.get_state(), partial=sums)
    return ckpt


def _job_sums(loss_sum: torch.Tensor, count: int, ranks: Ranks, device: torch.device) -> list[float]:
    """[summed loss, examples] over every rank."""
    sums = torch.stack([loss_sum, torch.tensor(float(count), dtype=torch.float64, device=device)])
    if ranks.world > 1:
        dist.all_reduce(sums)
    return sums.tolist()


def _save_epoch(out, model, opt, cfg, history, epoch, perm_gen, noise_gen, test_images, device, clock) -> None:
    checkpoint.save(_resume_state(model, opt, cfg, history, epoch + 1, 0, perm_gen.get_state(), noise_gen, [0.0, 0.0]),
                    out / "last.pt")
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in history))
    clock.lap("checkpoints")
    model.eval()
    with torch.no_grad():
        g = torch.Generator(device).manual_seed(cfg.seed)  # the same 64 z every epoch, to watch them improve
        z = torch.randn((64, cfg.latent_dim), generator=g, device=device)
        z = model.prior_sample(z, torch.rand(64, generator=g, device=device))  # z itself under N(0, I), one layer
        save_grid(model.probs(z), out / "samples.png")
        x = test_images[:32].float() / 255
        recon = model.probs(model.encode(x)[0])
        # Rows of 8 originals, each above its row of reconstructions.
        rows = [r for pair in zip(x.split(8), recon.split(8)) for r in pair]
        save_grid(torch.cat(rows), out / "reconstructions.png", nrow=min(8, x.shape[0]))
    clock.lap("pictures")


@torch.no_grad()
def evaluate(model: VAE, test_x: torch.Tensor, cfg: Config, ranks: Ranks, device: torch.device,
             amp: bool = False) -> dict:
    """Test negative ELBO (beta = 1, one z per image, analytic KL) and its two terms, per example, in nats.

    test_x: the pixels the likelihood is defined on (`data.pixels`: binary under --binarize).
    """
    model.eval()
    g = torch.Generator(device).manual_seed(cfg.seed + 2)  # the same noise every epoch and every run
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for i in range(0, test_x.shape[0], EVAL_BATCH):
        x = test_x[i:i + EVAL_BATCH]
        eps = torch.randn((x.shape[0], cfg.latent_dim), generator=g, device=device)
        x, eps = x.tensor_split(ranks.world)[ranks.rank], eps.tensor_split(ranks.world)[ranks.rank]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            rec, kld = elbo_terms(model, x, eps)
        sums += torch.stack([rec.sum().double(), kld.sum().double(),
                             torch.tensor(float(x.shape[0]), dtype=torch.float64, device=device)])
    if ranks.world > 1:
        dist.all_reduce(sums)
    rec, kld, count = sums.tolist()
    return {"test_loss": (rec + kld) / count, "test_rec": rec / count, "test_kl": kld / count}


def describe(metrics: dict, binarize: bool) -> dict:
    """What each test figure is and the data it was computed on, to travel with the figures."""
    how = {"test_loss": "negative ELBO (test_rec + test_kl): one z per image, analytic KL (with a learned prior or "
                        "two latent layers, the one-z Monte Carlo KL); nats per image"}
    for key in metrics:
        if key.startswith("test_iwae_"):
            how[key] = f"IWAE bound on log p(x), k={key.rsplit('_', 1)[1]} importance samples per image; nats per image"
    pixels = (f"binary: the test set binarized once with seed {TEST_BITS_SEED}, the same bits for every evaluation"
              if binarize else "grey levels in [0, 1]")
    return {"test_pixels": pixels, "estimators": how}


def iwae(model: VAE, test_x: torch.Tensor, k: int, seed: int, ranks: Ranks = Ranks(),
         device: torch.device = torch.device("cpu"), backend: str = "auto") -> float:
    """Mean IWAE estimate of log p(x) over test_x with k samples an image, in nats (iwae.py); ranks share the images."""
    total, count = iwae_sum(model, test_x.tensor_split(ranks.world)[ranks.rank], k, seed, backend, ranks.main)
    sums = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    if ranks.world > 1:
        dist.all_reduce(sums)
    return sums[0].item() / sums[1].item()


def _capture(step: Step, inputs: Inputs, side, clock: "_Clock", say) -> bool:
    """Capture the step as a CUDA graph; False (eager from here on, with a note) where capture is refused."""
    clock.lap("training")
    try:
        if side is not None:  # the warm-up steps ran on this side stream
            torch.cuda.current_stream().wait_stream(side)
        step.capture(inputs)
    except Exception as e:  # an op that cannot be captured, a compiled model that refuses it, ...
        step.graph = None
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        say(f"note: the training step could not be captured as a CUDA graph ({why[:160]}); training eagerly")
        return False
    clock.lap("graph capture")
    return True


def _should_stop(stop: StopFlag, ranks: Ranks, device: torch.device) -> bool:
    if ranks.world == 1:
        return bool(stop.signum)
    # Every rank must stop at the same step, or the others would wait forever in the next all-reduce.
    flag = torch.tensor([stop.signum], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() and not stop.signum:
        stop.signum = int(flag.item())
    return bool(flag.item())


def _summary(m: dict, epochs: int) -> str:
    line = (f"epoch {m['epoch']}/{epochs}  train {m['train_loss']:.2f}  test -ELBO {m['test_loss']:.2f} "
            f"(rec {m['test_rec']:.2f} + kl {m['test_kl']:.2f})  {m['seconds']:.1f}s  "
            f"{m['examples_per_s']:,.0f} ex/s")
    for k, v in m.items():
        if k.startswith("test_iwae"):
            line += f"  log p(x) >= {v:.2f} (IWAE, k={k.rsplit('_', 1)[1]})"
    return line


class _Clock:
    """Wall time by phase, for the closing line that says where a run's time went."""

    def __init__(self, started: float | None):
        self.t = time.perf_counter()
        self.phases = {"start-up": self.t - started} if started is not None else {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.t
        self.t = now

    def summary(self) -> str:
        total = sum(self.phases.values())
        parts = ", ".join(f"{name} {sec:.2f}" for name, sec in self.phases.items())
        return f"time: {total:.2f} s: {parts}"


class _progress:
    """A one-line progress bar on stderr, drawn only on a terminal and at most 10 times a second."""

    def __init__(self, total: int, label: str, show: bool):
        self.total, self.label, self.done, self.last = max(total, 1), label, 0, 0.0
        self.show = show and sys.stderr.isatty()

    def update(self, k: int = 1, text=None) -> None:
        self.done += k
        now = time.monotonic()
        if self.show and (now - self.last > 0.1 or self.done == self.total):
            self.last = now
            frac = self.done / self.total
            bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
            sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {text() if text else ''}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.show:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

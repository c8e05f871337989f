"""The training loop: the whole train split on the device (or, where it is too large, read from its memory map a batch
at a time), batches taken in a per-epoch permutation.

Runs as one process, or under torchrun with DistributedDataParallel: each rank takes its share of
every global batch, so the examples, the noise and the updates are those of a single process.
Around the loop: checks.py (what a run refuses), devices.py (device and ranks), step.py (one step, eager or a CUDA
graph), schedule.py (KL weight, learning rate), ema.py (--ema's average of the weights), evaluation.py (test
figures), run_folder.py (what is written after each epoch), stop.py (Ctrl-C saves and stops), progress.py (the
bar), clock.py (where the time went).
"""
from __future__ import annotations

import math
import signal
import time

import torch
import torch.distributed as dist

from . import checkpoint
from .checks import check_config
from .clock import Clock
from .config import Config
from .data import Mapped, MappedPixels, hold_in_memory, load_data, pixels, select_classes
from .devices import Ranks, init_distributed, job_sums, pick_device  # noqa: F401 (pick_device: the CLI's)
from .ema import Ema
from .errors import TrainError
from .evaluation import describe, evaluate, iwae, summary
from .model import VAE
from .precision import choose, use
from .progress import Bar
from .run_folder import (RECONSTRUCTIONS, check_run_folder, final_checkpoint, load_resumable, resume_state, run_dir,
                         save_epoch)
from .schedule import kl_weight, learning_rate, train_k_at
from .step import WARMUP_STEPS, Inputs, Step, capture, load_state, optimizer, set_learning_rate
from .stop import Interrupted, StopFlag

__all__ = ["train", "TrainError", "Interrupted", "final_checkpoint", "evaluate", "iwae", "describe", "Ranks"]


def train(cfg: Config, resume: str | None = None, force: bool = False, quiet: bool = False,
          started: float | None = None, cache_dir: str | None = None, strict: bool = False) -> tuple[VAE, list[dict]]:
    """Fit the VAE described by `cfg` (or continue the run in `resume`); returns it and its per-epoch metrics.

    started: time.perf_counter() at the process's start, to report the start-up in the closing time line.
    cache_dir, strict: an image folder's decoded cache (image_cache.cache_root), and whether an unreadable file
    stops the run (else it is skipped and named).
    """
    # -- what to run, where ------------------------------------------------------------------------------
    clock = Clock(started)
    state = None
    if resume:
        state, last_pt = load_resumable(resume)
        cfg = Config.from_dict(state["config"])
        cfg.out_dir, cfg.name = str(last_pt.parent.parent), last_pt.parent.name
    ranks, device = init_distributed(cfg.device)
    if device.type == "cuda":  # the driver, the context and the first allocation, timed on their own
        torch.zeros(1, device=device)
        clock.lap("CUDA context")
    out = run_dir(cfg)
    check_run_folder(out)
    if state is None and not force and ((out / "last.pt").exists() or (out / "model.pt").exists()):
        raise TrainError(f"{out} already holds a run; resume it with --resume {out}, "
                         f"or pass --force to start over, or pick another --name")
    check_config(cfg, ranks.world)
    say = (lambda *a: None) if (quiet or not ranks.main) else (lambda *a: print(*a, flush=True))
    clock.lap("start-up")

    # -- the data, the model, the optimizer (restored when resuming) ---------------------------------------
    data = load_data(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.channels, cfg.test_fraction, cfg.seed,
                     background=cfg.background, cache_dir=cache_dir, strict=strict, keep_mapped=True, say=say,
                     progress=ranks.main and not quiet, lap=clock.lap)
    data = select_classes(data, cfg.classes, cfg.exclude_classes)
    cfg.input_shape = data.shape
    in_memory = hold_in_memory(cfg.data_access, data, device)
    clock.lap("data")
    graphs = cfg.cuda_graphs and device.type == "cuda"
    if graphs and dist.is_initialized():
        say("note: CUDA graphs are off under torchrun (DDP's all-reduce runs outside a captured step); "
            "training eagerly")
        graphs = False
    torch.manual_seed(cfg.seed)  # the weights' initialisation
    model = VAE.from_config(cfg.architecture()).to(device)
    precision = choose(cfg.amp, device)
    if cfg.amp and not precision.bf16:
        say(f"note: --amp asked for bf16 autocast, but {precision.why}; training in float32")
    cfg.amp = precision.bf16  # what ran, for the checkpoints and a resumed run
    use(model, precision)
    channels_last = cfg.channels_last and cfg.arch == "conv"
    if cfg.channels_last and not channels_last:
        say("note: --channels-last is for --arch conv (the mlp has no image-shaped tensors); ignored")
    if channels_last:  # the weights here, the batches as they reach the conv layers (VAE.nhwc)
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    opt = optimizer(model.parameters(), cfg.lr, device, graphs)
    ema = Ema(model, cfg.ema) if cfg.ema else None
    shown = ema.model if ema else model  # the weights the test figures, the pictures and model.pt use
    perm_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator(device).manual_seed(cfg.seed + 1)
    start_epoch, start_step, partial, history = 1, 0, None, []
    if state is not None:
        model.check_stages(state["state_dict"])
        model.load_state_dict(state["state_dict"])
        load_state(opt, state["optimizer"])
        if ema:
            ema.load_state_dict(state["ema_state_dict"])
        perm_gen.set_state(state["perm_rng"])
        try:
            noise_gen.set_state(state["noise_rng"])
        except RuntimeError:  # a CUDA generator's state on the CPU, or the other way round
            raise TrainError(f"{last_pt} was saved by a run on another kind of device than {device.type} (its noise "
                             f"generator's state does not fit here); resume it on the kind it was trained on") from None
        start_epoch, start_step = state["epoch"], state["step"]
        partial, history = state["partial"], list(state["metrics"])
        if start_epoch > cfg.epochs:
            say(f"{out} is complete ({cfg.epochs} epochs); nothing to resume")
            return shown, history
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)

    net = model
    if dist.is_initialized():
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    # -- the step and its inputs ---------------------------------------------------------------------------
    if in_memory:
        data.train, data.test = (s.tensor() if isinstance(s, Mapped) else s for s in (data.train, data.test))
        mapped, train_x = None, data.train.to(device)
        test_x = pixels(data.test, cfg.binarize).to(device)  # what every test figure is computed on
    else:  # read a batch at a time, test figures too: this process's memory stays bounded whatever the data's size
        mapped, train_x = data.train, None
        test_x = MappedPixels(data.test, cfg.binarize, device)
    test_images = (data.test.take(torch.arange(min(RECONSTRUCTIONS, len(data.test)))) if mapped is not None
                   else data.test[:RECONSTRUCTIONS]).to(device)
    n, batch = len(data.train), cfg.batch_size
    steps = math.ceil(n / batch)

    def step_for(k: int):
        """The step that trains on k importance samples per image, its full batch's inputs and its last's."""
        full = Inputs.empty(min(batch, n), data.shape, cfg.latent_dim, k, cfg.binarize, device, not in_memory)
        last = Inputs.empty(n - (steps - 1) * batch, data.shape, cfg.latent_dim, k, cfg.binarize, device,
                            not in_memory) if n % batch else full  # the epoch's last, smaller batch: eager
        return Step(net, opt, train_x, cfg.likelihood, k, ranks.world, ranks.rank, device), full, last

    step, full, last = step_for(train_k_at(cfg, start_epoch))
    warmup = torch.cuda.Stream(device) if graphs else None  # eager steps before capture run on a side stream
    eager_full_steps = 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    clock.lap("model on " + device.type)
    say(f"training {cfg.arch} VAE on {data.source}: {n} train / {test_x.shape[0]} test images "
        f"of {'x'.join(map(str, data.shape))}, on {device}"
        + (f" x {ranks.world} processes" if ranks.world > 1 else "")
        + f"; {precision.describe()}" + ("; channels-last" if channels_last else "")
        + ("" if in_memory else f"; batches read from the memory-mapped {data.train.nbytes / 1e6:,.0f} MB"))

    # -- the loop ------------------------------------------------------------------------------------------
    # The bar's running loss is read only on the CPU, where reading it costs no sync.
    loss_text = (lambda: f"loss {step.last.mean().item():.2f}") if device.type == "cpu" else None
    with StopFlag() as stop:
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.perf_counter()
            if train_k_at(cfg, epoch) != step.train_k:  # IWAE fine-tuning begins (--train-k-epochs)
                step, full, last = step_for(train_k_at(cfg, epoch))
                eager_full_steps = 0  # on CUDA, warmed up and captured afresh
                say(f"epoch {epoch}: training the IWAE bound with {step.train_k} samples an image from here on")
            perm_state = perm_gen.get_state()
            order = torch.randperm(n, generator=perm_gen)
            perm = order.to(device)
            step.loss_sum.zero_()
            count = 0
            if partial is not None and ranks.main:  # the whole job's sums before the interrupt, counted once
                step.loss_sum += partial[0]
                count += int(partial[1])
            partial = None
            net.train()
            with Bar(steps - start_step, f"epoch {epoch}/{cfg.epochs}", ranks.main and not quiet) as bar:
                for s in range(start_step, steps):
                    inputs = full if (s + 1) * batch <= n else last
                    if cfg.lr_schedule != "constant":
                        set_learning_rate(opt, learning_rate(cfg, epoch, s, steps))
                    inputs.fill(perm[s * batch:(s + 1) * batch], noise_gen, kl_weight(cfg, epoch, s, steps),
                                mapped.take(order[s * batch:(s + 1) * batch]) if mapped is not None else None)
                    if graphs and step.graph is None and inputs is full and eager_full_steps >= WARMUP_STEPS:
                        graphs = capture(step, full, warmup, clock, say)
                    if graphs and step.graph is None:
                        warmup.wait_stream(torch.cuda.current_stream(device))
                        with torch.cuda.stream(warmup):
                            step.run(inputs)
                        torch.cuda.current_stream(device).wait_stream(warmup)
                    else:
                        step.run(inputs)
                    if ema:
                        ema.update()
                    eager_full_steps += inputs is full and step.graph is None
                    count += len(inputs.idx) // ranks.world + (ranks.rank < len(inputs.idx) % ranks.world)
                    bar.advance(1, loss_text)
                    if stop.should_stop(ranks, device):  # save where we are, on every rank at this step
                        sums = job_sums([step.loss_sum, count], ranks, device)
                        if ranks.main:
                            checkpoint.save(resume_state(model, opt, cfg, history, epoch, s + 1, perm_state,
                                                         noise_gen, sums, ema), out / "last.pt")
                        raise Interrupted(stop.signum or signal.SIGINT, out / "last.pt")
            start_step = 0

            # -- the epoch's figures and files -------------------------------------------------------------
            loss_total, examples = job_sums([step.loss_sum, count], ranks, device)
            clock.lap("training")
            metrics = {"epoch": epoch, "train_loss": loss_total / examples, "train_k": step.train_k}
            metrics.update(evaluate(shown, test_x, cfg, ranks, device))
            if ema and epoch == cfg.epochs:  # what the averaging bought, in the run's own figures
                metrics["test_loss_trained_weights"] = evaluate(model, test_x, cfg, ranks, device)["test_loss"]
            metrics["seconds"] = time.perf_counter() - t0
            metrics["examples_per_s"] = examples / metrics["seconds"]
            clock.lap("test")
            if epoch == cfg.epochs and cfg.iwae_k > 0:
                metrics[f"test_iwae_{cfg.iwae_k}"] = iwae(shown, test_x, cfg.iwae_k, cfg.seed, ranks, device)
                clock.lap("IWAE")
            metrics.update(describe(metrics, cfg.binarize), precision=precision.name, precision_why=precision.why,
                           memory_format="channels_last" if channels_last else "contiguous")
            history.append(metrics)
            if ranks.main:
                save_epoch(out, model, opt, cfg, history, epoch, perm_gen, noise_gen, test_images, device, clock, ema)
            say(summary(metrics, cfg.epochs))

    if ranks.main:
        checkpoint.save(final_checkpoint(shown, cfg, history), out / "model.pt")
        clock.lap("checkpoints")
        say(f"done: {out / 'model.pt'}  (metrics.jsonl, curves.png, samples.png, reconstructions.png beside it)")
        say(clock.summary())
    if ranks.world > 1:
        dist.barrier()  # no rank leaves (and tears down gloo) while rank 0 is still writing
    return shown, history

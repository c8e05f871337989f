"""One training step as a function of tensors, so that the same code runs eagerly or as a CUDA graph.

The loop writes each step's inputs into `Inputs`, buffers that never move (which training images, the
noise, the KL weight, the learning rate), then calls `Step.run()`. On the CPU, under torchrun and
wherever capture is refused, that is the eager step. On CUDA it is, after a few eager warm-up steps,
one replay of a CUDA graph captured from the same function: a handful of launches a step instead of
hundreds, with nothing read back to the host (the loss is summed on the device).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vae_edge.runtime.errors import one_line

from .iwae import iwae_objective
from .model import elbo_terms

WARMUP_STEPS = 3  # eager steps before capture: the optimizer's state and cuBLAS's handles exist by then


@dataclass
class Inputs:
    """A step's inputs, in buffers whose addresses a captured graph keeps."""

    idx: torch.Tensor  # long [B]: rows of the training set
    images: torch.Tensor | None  # uint8 [B, C, H, W]: the rows themselves where the set is read from its map, else None
    u: torch.Tensor | None  # [B, C, H, W] uniform noise that binarizes the batch (--binarize), else None
    eps: torch.Tensor  # [B, D] (ELBO) or [k, B, D] (IWAE, train_k = k) standard normal noise
    kl_weight: torch.Tensor  # [] the KL term's weight at this step

    @classmethod
    def empty(cls, batch: int, shape, latent_dim: int, train_k: int, binarize: bool,
              device: torch.device, mapped: bool = False) -> "Inputs":
        eps_shape = (batch, latent_dim) if train_k == 1 else (train_k, batch, latent_dim)
        return cls(torch.zeros(batch, dtype=torch.long, device=device),
                   torch.zeros((batch, *shape), dtype=torch.uint8, device=device) if mapped else None,
                   torch.zeros((batch, *shape), device=device) if binarize else None,
                   torch.zeros(eps_shape, device=device), torch.zeros((), device=device))

    def fill(self, rows: torch.Tensor, noise: torch.Generator, kl_weight: float,
             images: torch.Tensor | None = None) -> None:
        """In place, without a sync: the rows (and their images, read from the map), then the noise in the order of
        the eager loop (bits, then z)."""
        self.idx.copy_(rows, non_blocking=True)
        if self.images is not None:
            self.images.copy_(images, non_blocking=True)
        if self.u is not None:
            self.u.uniform_(generator=noise)
        self.eps.normal_(generator=noise)
        self.kl_weight.fill_(kl_weight)


def loss_per_example(net, x: torch.Tensor, inputs: Inputs, likelihood: str, train_k: int,
                     world: int, rank: int) -> torch.Tensor:
    """The negative ELBO (train_k = 1, analytic KL) or negative IWAE bound of this rank's share of x, per example.

    In float32: with bf16 on, the model's layers alone run under autocast (precision.py)."""
    eps = inputs.eps.tensor_split(world, dim=0 if train_k == 1 else 1)[rank]
    if train_k == 1:
        rec, kld = elbo_terms(net, x, eps)
        return rec + inputs.kl_weight * kld
    return -iwae_objective(net, x, eps, likelihood, inputs.kl_weight)


class Step:
    """The training step over `train_x` (uint8 [N, C, H, W] on the device), eager or replayed from a CUDA graph;
    train_x None: each step's images come in its inputs (a set read from its map a batch at a time)."""

    def __init__(self, net, opt: torch.optim.Optimizer, train_x: torch.Tensor | None, likelihood: str, train_k: int,
                 world: int = 1, rank: int = 0, device: torch.device | None = None):
        self.net, self.opt, self.train_x = net, opt, train_x
        self.likelihood, self.train_k, self.world, self.rank = likelihood, train_k, world, rank
        self.device = train_x.device if train_x is not None else device
        # The summed loss of the examples seen since the last reset, on the device (float64: 60k terms of ~250).
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.last = None  # the last step's per-example loss, for a progress bar that may read it
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_inputs: Inputs | None = None

    def __call__(self, inputs: Inputs) -> None:
        """One eager step: forward, backward, update, and the loss added to loss_sum."""
        x = (self.train_x[inputs.idx] if inputs.images is None else inputs.images).float().div_(255)
        if inputs.u is not None:  # drawn for the whole batch so every rank sees the same bits
            x = (inputs.u < x).float()
        x = x.tensor_split(self.world)[self.rank]
        per_example = loss_per_example(self.net, x, inputs, self.likelihood, self.train_k, self.world, self.rank)
        # Summed over the batch as in the reference recipe (Adam is scale-free but for its eps); times world,
        # because DDP averages the ranks' gradients and we want their sum.
        loss = per_example.sum() * self.world
        # On CUDA zeroed in place, so the gradients keep their addresses for the graph; elsewhere dropped, which
        # saves the CPU a pass over them (backward then writes fresh ones).
        self.opt.zero_grad(set_to_none=self.device.type != "cuda")
        loss.backward()
        self.opt.step()
        self.loss_sum += per_example.detach().sum()
        self.last = per_example.detach()

    def capture(self, inputs: Inputs) -> None:
        """Record one step on `inputs` as a CUDA graph (nothing runs); run() on these inputs replays it."""
        # Capture on a side stream, as torch.cuda.graph does, after the caller's work is done.
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self(inputs)
        self.graph, self.graph_inputs = graph, inputs

    def run(self, inputs: Inputs) -> None:
        """The step on `inputs`: a replay where they are the captured buffers, else eager."""
        if self.graph is not None and inputs is self.graph_inputs:
            self.graph.replay()
        else:
            self(inputs)


class Adam(torch.optim.Adam):
    """torch's Adam, minus the `import torch._dynamo` that its public methods do on first use for torch.compile's
    sake, which costs every run's start-up seconds (docs/training.md, On a GPU). Same update, same state_dict."""

    def add_param_group(self, group):
        return _undecorated(torch.optim.Optimizer.add_param_group)(self, group)

    def zero_grad(self, set_to_none: bool = True):
        return _undecorated(torch.optim.Optimizer.zero_grad)(self, set_to_none)

    def state_dict(self):
        return _undecorated(torch.optim.Optimizer.state_dict)(self)

    def load_state_dict(self, state_dict):
        return _undecorated(torch.optim.Optimizer.load_state_dict)(self, state_dict)

    def step(self, closure=None):
        with torch.no_grad():
            return _undecorated(torch.optim.Adam.step)(self, closure)


def _undecorated(fn):
    """The function under torch's decorators (functools.wraps keeps it), or fn itself where there is none."""
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    return fn


def optimizer(params, lr: float, device: torch.device, graphs: bool) -> torch.optim.Adam:
    """Fused Adam: one kernel for all parameters, the fastest of torch's Adams on the CPU and in a CUDA graph.

    For a CUDA graph its step count and learning rate live on the device (capturable), so a replay advances
    them and the loop sets the rate by writing into that tensor.
    """
    fused = device.type in ("cpu", "cuda")
    if graphs:
        return Adam(params, lr=torch.tensor(lr, device=device), fused=True, capturable=True)
    return Adam(params, lr=lr, fused=fused)


def set_learning_rate(opt: torch.optim.Optimizer, lr: float) -> None:
    """Write the rate in place where it is a device tensor (a graph reads it there), else as a number."""
    for group in opt.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def portable_state(opt: torch.optim.Optimizer) -> dict:
    """The optimizer's state_dict with the learning rate as a number, so any device can resume it."""
    state = opt.state_dict()
    for group in state["param_groups"]:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = group["lr"].item()
    return state


def load_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state into `opt`, which keeps its own way of running (fused, capturable, lr tensor)."""
    own = [{k: g[k] for k in ("lr", "capturable", "fused") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, mine in zip(opt.param_groups, own):
        lr = float(group["lr"])
        group.update(mine)
        on_device = group.get("capturable") or group.get("fused")
        for p in group["params"]:  # Adam's step count: on the device for fused or captured steps, else on the CPU
            st = opt.state.get(p, {})
            if "step" in st:
                st["step"] = st["step"].to(p.device if on_device else "cpu", torch.float32)
    set_learning_rate(opt, lr)


def capture(step: Step, inputs: Inputs, side, clock, say) -> bool:
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
        say(f"note: the training step could not be captured as a CUDA graph ({one_line(e)[:160]}); training eagerly")
        return False
    clock.lap("graph capture")
    return True

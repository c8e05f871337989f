"""The learning curves of a run, drawn from metrics.jsonl's records into a PNG beside it after every epoch:
the training objective and the test negative ELBO, and the test KL term, per epoch."""
from __future__ import annotations

from pathlib import Path

from vae_edge.runtime.outputs import atomic_file


def draw(history: list[dict], path: Path) -> None:
    """Write the curves of history (one dict per epoch, as in metrics.jsonl) to path, atomically."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    epochs = [m["epoch"] for m in history]
    fig = Figure(figsize=(9, 3.6))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.91, wspace=0.28)  # half the time of a layout engine
    loss, kl = fig.subplots(1, 2)
    loss.plot(epochs, [m["train_loss"] for m in history], "o-", ms=3, label="train objective (-ELBO, KL weighted)")
    loss.plot(epochs, [m["test_loss"] for m in history], "o-", ms=3, label="test -ELBO")
    loss.set(xlabel="epoch", ylabel="nats per image", title="-ELBO")
    loss.legend()
    kl.plot(epochs, [m["test_kl"] for m in history], "o-", ms=3, color="tab:green")
    kl.set(xlabel="epoch", ylabel="nats per image", title="KL(q(z|x) || p(z)), test")
    for ax in (loss, kl):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100)

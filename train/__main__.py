"""`python -m vae_edge.train` (and `torchrun -m vae_edge.train`) is `vae-train`."""
from .cli import train_app

train_app(prog_name="vae-train")

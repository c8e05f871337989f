"""Run by torchrun in test_distributed.py: train, then save this rank's parameters."""
import os
import sys

import torch

from vae_edge.train.config import Config
from vae_edge.train.train import train

npy, out = sys.argv[1], sys.argv[2]
cfg = Config(dataset=npy, out_dir=out, name="ddp", epochs=1, hidden_dim=32, latent_dim=4, batch_size=16,
             amp=False)  # float32: the test compares sums taken in another order, not bf16 rounding
model, _ = train(cfg, quiet=True)
torch.save(model.state_dict(), os.path.join(out, f"rank{os.environ['RANK']}.pt"))
torch.distributed.destroy_process_group()  # a live gloo group at exit can abort the process

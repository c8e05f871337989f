"""Training: the VAE model, data, the training loop and checkpoints (needs the `train` extra)."""

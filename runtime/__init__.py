"""Runtime: sample, encode and decode an exported VAE with onnxruntime, without torch.

    from vae_edge.runtime import VAE
    images = VAE.load().sample(64, seed=0)   # ./vae-onnx, else the bundled model; (64, C, H, W) float32 in [0, 1]

Imports only numpy, onnxruntime, typer (CLI), pillow (image files) and the standard library.
"""
from .model import VAE, ModelFolderError, RuntimeInputError, read_meta, verify_files

__all__ = ["VAE", "ModelFolderError", "RuntimeInputError", "read_meta", "verify_files"]

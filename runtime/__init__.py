"""Runtime: sample, encode and decode an exported VAE with onnxruntime, without torch.

    from vae_edge.runtime import VAE
    images = VAE.load().sample(64, seed=0)   # ./vae-onnx, else the bundled model; (64, C, H, W) float32 in [0, 1]

Imports only numpy, onnxruntime, pillow (image files) and the standard library. VAE (and with it
onnxruntime) is imported when first asked for, so that a module such as vae_edge.runtime.png is usable without.
"""
from .errors import ModelFolderError, RuntimeInputError
from .folder import ModelFolder, read_folder, read_meta, verify_files

__all__ = ["VAE", "ModelFolder", "ModelFolderError", "RuntimeInputError", "read_folder", "read_meta", "verify_files"]


def __getattr__(name: str):
    if name != "VAE":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .model import VAE

    globals()["VAE"] = VAE
    return VAE

"""vae-edge: train a VAE in PyTorch (vae_edge.train), export it to ONNX (vae_edge.export), and run it with
onnxruntime alone (vae_edge.runtime).

__version__ is the one version number: pyproject.toml reads it, `vae-info --version` prints it, and web/package.json
carries the same (tests/test_release.py keeps them equal). CHANGELOG.md says what each version changed.
"""
__version__ = "0.2.0"

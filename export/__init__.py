"""Export: a trained VAE to ONNX (encoder.onnx, decoder.onnx, vae.json), checked against PyTorch."""
from vae_edge.export.errors import ExportError, ParityError
from vae_edge.export.export import export_checkpoint, export_model
from vae_edge.export.load import load_model

__all__ = ["ExportError", "ParityError", "export_checkpoint", "export_model", "load_model"]

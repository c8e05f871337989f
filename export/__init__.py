"""Export: a trained VAE to ONNX (encoder.onnx, decoder.onnx, vae.json), checked against PyTorch."""
from vae_edge.export.export import (ExportError, ParityError, export_checkpoint, export_model,
                                    load_model)

__all__ = ["ExportError", "ParityError", "export_checkpoint", "export_model", "load_model"]

"""ORT format: the .ort files that onnxruntime's mobile and minimal builds read, and the operator list to build them
with.

onnxruntime's own converter (`python -m onnxruntime.tools.convert_onnx_models_to_ort`) writes them, optimized
for no particular CPU (`--target_platform arm` leaves out x86-only layouts, so one file serves phones and PCs).
An .ort file needs an onnxruntime at least as new as the one that wrote it (the ORT format is not forward
compatible), so vae.json records that version.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import ExportError

CONFIG = "required_operators.config"


def to_ort(blobs: dict[str, tuple[str, bytes]]) -> tuple[dict[str, tuple[str, bytes]], bytes]:
    """{role: (name.onnx, bytes)} -> ({role_ort: (name.ort, bytes)}, required_operators.config)."""
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d, "onnx"), Path(d, "ort")
        src.mkdir()
        for name, data in blobs.values():
            (src / name).write_bytes(data)
        r = subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(src),
                            "--output_dir", str(out), "--optimization_style", "Fixed", "--target_platform", "arm"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()]
            raise ExportError(f"ORT format conversion failed: {lines[-1][:300] if lines else r.returncode}")
        converted = {}
        for role, (name, _) in blobs.items():
            ort_name = name.removesuffix(".onnx") + ".ort"
            converted[f"{role}_ort"] = (ort_name, (out / ort_name).read_bytes())
        config = (out / CONFIG).read_text().replace(str(out) + "/", "")  # the generated comment names temp paths
    return converted, config.encode()

"""The suite's cache of torch.onnx.export's graphs (tests/exported.py) gives what the exporter gives."""
from __future__ import annotations

import subprocess
import sys

import torch

import exported
from vae_edge.export.graphs import decoder_graph, encoder_graph
from vae_edge.train.model import VAE

MAKE = ("import torch; from vae_edge.train.model import VAE; torch.manual_seed(7); "
        "m = VAE('conv', (1, 8, 8), 16, 3).eval()")


def test_a_kept_graph_is_the_graph_a_fresh_process_exports(tmp_path):
    """The cache stands on this: the exporter writes the same bytes for the same module in every process."""
    code = (f"{MAKE}\nfrom vae_edge.export.graphs import encoder_graph, decoder_graph\nimport sys\n"
            "open(sys.argv[1], 'wb').write(encoder_graph(m).SerializeToString())\n"
            "open(sys.argv[2], 'wb').write(decoder_graph(m).SerializeToString())")
    subprocess.run([sys.executable, "-c", code, tmp_path / "enc", tmp_path / "dec"], check=True, capture_output=True)
    torch.manual_seed(7)
    model = VAE("conv", (1, 8, 8), 16, 3).eval()
    assert getattr(torch.onnx.export, "kept", False)
    for _ in range(2):  # the first may export and keep; the second reads what was kept
        assert encoder_graph(model).SerializeToString() == (tmp_path / "enc").read_bytes()
        assert decoder_graph(model).SerializeToString() == (tmp_path / "dec").read_bytes()


def test_a_changed_weight_is_exported_again():
    torch.manual_seed(7)
    model = VAE("conv", (1, 8, 8), 16, 3).eval()
    example = (torch.rand(2, 1, 8, 8),)
    before = exported.graph_key(model, example, {"dynamo": True})
    with torch.no_grad():
        model.fc21.weight[0, 0] += 1e-6
    assert exported.graph_key(model, example, {"dynamo": True}) != before

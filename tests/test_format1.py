"""Folders written before learned priors (format_version 1, tests/fixtures/format1-*) still load and sample the
same, and a Gaussian-prior export still writes the same graphs (compared without the stamped metadata).

The fixtures were exported by the code at the branch point of the learned-priors change, from the checkpoints
beside them (format1-*.pt), with their samples for seed 0 saved as format1-*-samples-seed0-0.1.0.npy and the noise
0.1.0 drew for them (numpy's default_rng(0)) as format1-*-noise-seed0-0.1.0.npy. Since 0.2.0 a seed draws other
noise (docs/noise.md): format1-*-samples-seed0.npy holds today's samples for seed 0.
"""
import numpy as np
import onnx
import pytest

from conftest import REPO
from vae_edge.export import export_checkpoint
from vae_edge.runtime import VAE

FIXTURES = REPO / "tests" / "fixtures"


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_a_format1_folder_decodes_0_1_0s_noise_into_0_1_0s_samples(arch):
    vae = VAE.load(FIXTURES / f"format1-{arch}")
    assert vae.meta["format_version"] == 1
    eps = np.load(FIXTURES / f"format1-{arch}-noise-seed0-0.1.0.npy")
    np.testing.assert_array_equal(vae.decode(vae.from_noise(eps)),
                                  np.load(FIXTURES / f"format1-{arch}-samples-seed0-0.1.0.npy"))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_a_format1_folder_samples_a_seed_as_docs_noise_md_draws_it(arch):
    vae = VAE.load(FIXTURES / f"format1-{arch}")
    np.testing.assert_array_equal(vae.sample(5, seed=0), np.load(FIXTURES / f"format1-{arch}-samples-seed0.npy"))


def _graph(path) -> bytes:
    proto = onnx.load(path)
    del proto.metadata_props[:]
    return proto.SerializeToString()


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_a_gaussian_prior_export_writes_the_same_graphs_as_format1(arch, tmp_path):
    info = export_checkpoint(FIXTURES / f"format1-{arch}.pt", tmp_path / "out")
    assert info["format_version"] == 1
    assert set(info["files"]) == {"encoder", "decoder", "score"}
    for name in ("encoder.onnx", "decoder.onnx"):
        assert _graph(tmp_path / "out" / name) == _graph(FIXTURES / f"format1-{arch}" / name)

"""Rule G3 (docs/format.md): after every onnxruntime run, each output is float32 of exactly the shape the batch
and vae.json require, else a one-line ModelFolderError naming the file, what it returned and what was expected.
onnxruntime itself does not hold a run to the shapes a graph declares. The decoders are the conformance cases'."""
import numpy as np
import pytest

from conftest import REPO, run_cli
from vae_edge.runtime import VAE, ModelFolderError
from vae_edge.runtime.sessions import CheckedSession

CASES = REPO / "tests" / "conformance" / "folders"


def test_a_decoder_that_returns_one_image_whatever_the_batch_is_refused():
    vae = VAE.load(CASES / "graph-decoder-one-image")
    with pytest.raises(ModelFolderError) as e:
        vae.sample(16, seed=0)
    assert str(e.value) == (f"{CASES / 'graph-decoder-one-image' / 'decoder.onnx'} returned float32 [1, 1, 2, 3]; "
                            f"expected float32 [16, 1, 2, 3]")


def test_the_command_line_never_reports_samples_that_a_lying_decoder_did_not_make(tmp_path):
    r = run_cli("vae-sample", "--model", CASES / "graph-decoder-one-image", "--n", 4, "--out", tmp_path / "s.png")
    assert r.returncode == 2 and "wrote" not in r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and "returned float32 [1, 1, 2, 3]; expected float32 [4, 1, 2, 3]" \
        in r.stderr
    assert not (tmp_path / "s.png").exists()


def test_a_decoder_that_returns_more_pixels_than_it_declares_is_refused():
    z = np.random.default_rng().standard_normal((5, 2)).astype(np.float32)
    with pytest.raises(ModelFolderError, match=r"returned float32 \[5, 1, 2, 4\]; expected float32 \[5, 1, 2, 3\]$"):
        VAE.load(CASES / "graph-decoder-extra-pixels").decode(z)


def test_a_decoder_that_returns_int64_is_refused_not_read_as_zeros():
    with pytest.raises(ModelFolderError, match=r"returned int64 \[3, 1, 2, 3\]; expected float32 \[3, 1, 2, 3\]$"):
        VAE.load(CASES / "graph-decoder-int64").sample(3, seed=0)


class _Returns:
    """A stand-in for an onnxruntime session whose run returns the arrays it was given."""

    def __init__(self, *outputs):
        self.outputs = list(outputs)

    def run(self, names, feed):
        return self.outputs


def test_each_output_of_a_run_is_checked_not_only_the_first():
    mu, logvar = np.zeros((4, 2), np.float32), np.zeros((4, 3), np.float32)
    with pytest.raises(ModelFolderError, match=r"^encoder\.onnx returned float32 \[4, 3\]; expected float32 \[4, 2\]$"):
        CheckedSession(_Returns(mu, logvar), "encoder.onnx").run(["mu", "logvar"], {}, [(4, 2), (4, 2)])


def test_a_float64_output_is_refused_though_its_shape_is_right():
    with pytest.raises(ModelFolderError, match=r"returned float64 \[4, 2\]; expected float32 \[4, 2\]$"):
        CheckedSession(_Returns(np.zeros((4, 2))), "prior.onnx").run(["z"], {}, [(4, 2)])


def test_a_run_that_returns_more_outputs_than_expected_is_refused():
    out = np.zeros((4, 2), np.float32)
    with pytest.raises(ModelFolderError, match=r"^decoder\.onnx returned 2 outputs; expected 1$"):
        CheckedSession(_Returns(out, out), "decoder.onnx").run(None, {}, [(4, 2)])


def test_outputs_of_the_expected_type_and_shapes_are_returned_as_they_are():
    mu, logvar = (np.random.default_rng().standard_normal((4, 2)).astype(np.float32) for _ in range(2))
    got = CheckedSession(_Returns(mu, logvar), "encoder.onnx").run(["mu", "logvar"], {}, [(4, 2), (4, 2)])
    assert got[0] is mu and got[1] is logvar

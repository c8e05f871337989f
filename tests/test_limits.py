"""Limits are input errors (issue 31): a count beyond COUNT_LIMIT is a RuntimeInputError naming the limit (the
streamed iter_samples takes any n); a failed write names its file; out of memory blames the model folder when one
image of it alone is beyond the process's memory, and hints at --batch-size otherwise."""
import hashlib
import json
import resource
import shutil

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import REPO, run_cli
from vae_edge.runtime import VAE, RuntimeInputError
from vae_edge.runtime.inputs import COUNT_LIMIT

VALID = REPO / "tests" / "conformance" / "folders" / "valid"


@pytest.fixture(scope="module")
def vae():
    return VAE.load(VALID)


def test_the_count_limit_is_two_to_the_twentieth():
    assert COUNT_LIMIT == 1048576


@pytest.mark.parametrize("n", [2**62, COUNT_LIMIT + 1])
def test_sample_refuses_more_than_the_count_limit_as_an_input_error(vae, n):
    with pytest.raises(RuntimeInputError, match=rf"^n must be at most 1048576 per call, got {n}$"):
        vae.sample(n)


def test_interpolate_refuses_more_steps_than_the_count_limit(vae):
    x = np.random.default_rng().random((1, 2, 3), dtype=np.float32)
    with pytest.raises(RuntimeInputError, match=r"^steps must be at most 1048576 per call, got 1048577$"):
        vae.interpolate(x, x, steps=COUNT_LIMIT + 1)


def test_a_batch_size_beyond_the_count_limit_is_an_input_error():
    with pytest.raises(RuntimeInputError, match=r"^batch_size must be at most 1048576 per call, got 1073741824$"):
        VAE.load(VALID, batch_size=2**30)


def test_the_streamed_samples_take_any_count(vae):
    chunks = vae.iter_samples(2**62, seed=0, batch_size=4)
    assert next(chunks).shape == (4, 1, 2, 3)


def test_a_count_at_the_limit_is_accepted(vae):
    assert vae.sample(COUNT_LIMIT, seed=0).shape == (COUNT_LIMIT, 1, 2, 3)


def _limited(limit: int, bytes_: int):
    return lambda: resource.setrlimit(limit, (bytes_, bytes_))


def test_a_write_that_fails_for_its_size_names_the_file(tmp_path):
    out = tmp_path / "s.npy"
    r = run_cli("vae-sample", "--model", VALID, "--n", 100000, "--npy", out,
                preexec_fn=_limited(resource.RLIMIT_FSIZE, 100000))
    assert r.returncode == 2 and r.stderr.strip() == f"error: {out}: File too large"
    assert list(tmp_path.iterdir()) == []


def _absurd_latents(folder, latent: int) -> None:
    """A folder whose vae.json and decoder agree on `latent` latents: x = sigmoid(sum of z), for every pixel."""
    shutil.copytree(VALID, folder)
    nodes = [helper.make_node("ReduceSum", ["z", "axis"], ["s"], keepdims=1), helper.make_node("Sigmoid", ["s"], ["p"]),
             helper.make_node("Expand", ["p", "wide"], ["e"]), helper.make_node("Reshape", ["e", "shape"], ["x"])]
    consts = [numpy_helper.from_array(np.array([1], np.int64), "axis"),
              numpy_helper.from_array(np.array([1, 6], np.int64), "wide"),
              numpy_helper.from_array(np.array([-1, 1, 2, 3], np.int64), "shape")]
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent])
    graph = helper.make_graph(nodes, "decoder", [z],
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 2, 3])], consts)
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()
    (folder / "decoder.onnx").write_bytes(data)
    meta = json.loads((folder / "vae.json").read_text())
    meta["model"]["latent_dim"] = latent
    meta["files"]["decoder"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (folder / "vae.json").write_text(json.dumps(meta))


MEMORY = 3 * 2**30  # the address space the commands below may use


def test_out_of_memory_blames_a_folder_whose_one_image_needs_more_than_the_process_may_use(tmp_path):
    _absurd_latents(tmp_path / "m", 2**29)  # 4 GiB of noise for one image
    r = run_cli("vae-sample", "--model", tmp_path / "m", "--n", 4, "--out", tmp_path / "s.png",
                preexec_fn=_limited(resource.RLIMIT_AS, MEMORY))
    assert r.returncode == 2 and "the model folder is at fault" in r.stderr and "latent_dim 536870912" in r.stderr
    assert "--batch-size" not in r.stderr


def test_out_of_memory_hints_at_a_smaller_batch_where_one_image_fits(tmp_path):
    def limits():  # a batch of 2^20 bundled images is 3.3 GB; and nothing much may be written
        _limited(resource.RLIMIT_AS, MEMORY)()
        _limited(resource.RLIMIT_FSIZE, 2**20)()

    r = run_cli("vae-sample", "--n", COUNT_LIMIT, "--npy", tmp_path / "s.npy", "--batch-size", COUNT_LIMIT,
                preexec_fn=limits, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == "error: out of memory; lower --batch-size or --n"

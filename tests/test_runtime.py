"""vae_edge.runtime.VAE: parity with PyTorch, input layouts, chunking, threads, integrity checks."""
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import torch

from conftest import copy_export, rehash
from vae_edge.export import export_model
from vae_edge.runtime import VAE, ModelFolderError, RuntimeInputError, random
from vae_edge.runtime.images import make_grid, save_grid, save_npy_chunks
from vae_edge.train.model import VAE as TorchVAE

TOL = 1e-5
BATCH_SIZES = [1, 2, 7, 64, 300]


def _export(tmp_path_factory, name, quantize=None, **kw):
    torch.manual_seed(sum(map(ord, name)))
    model = TorchVAE(**kw).eval()
    folder = tmp_path_factory.mktemp(name) / "vae-onnx"
    export_model(model, folder, quantize=quantize)
    return model, folder


@pytest.fixture(scope="module")
def mlp(mlp_int8):
    return mlp_int8


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    return _export(tmp_path_factory, "conv", arch="conv", input_shape=(3, 16, 12), hidden_dim=64, latent_dim=6)


@pytest.fixture(scope="module")
def mlp_latent8(tmp_path_factory):
    return _export(tmp_path_factory, "mlp8", arch="mlp", hidden_dim=32, latent_dim=8)


@pytest.fixture(params=["mlp", "conv"])
def exported(request):
    """(torch model, export folder) for each architecture."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng()  # fresh inputs each run, never zeros


def _torch_probs(model, z):
    with torch.no_grad():
        return model.probs(torch.from_numpy(np.asarray(z, np.float32))).numpy()


def _torch_encode(model, x):
    with torch.no_grad():
        mu, logvar = model.encode(torch.from_numpy(np.asarray(x, np.float32)))
    return mu.numpy(), logvar.numpy()






# -- parity with PyTorch ----------------------------------------------------------------------------

@pytest.mark.parametrize("n", BATCH_SIZES)
def test_decode_equals_pytorch_probs(exported, rng, n):
    model, folder = exported
    z = rng.standard_normal((n, model.latent_dim)).astype(np.float32)
    got = VAE.load(folder, batch_size=64).decode(z)
    assert got.shape == (n, *model.input_shape) and got.dtype == np.float32
    np.testing.assert_allclose(got, _torch_probs(model, z), rtol=0, atol=TOL)


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_encode_equals_pytorch_encode(exported, rng, n):
    model, folder = exported
    x = rng.random((n, *model.input_shape), dtype=np.float32)
    mu, logvar = VAE.load(folder, batch_size=64).encode(x)
    ref_mu, ref_logvar = _torch_encode(model, x)
    np.testing.assert_allclose(mu, ref_mu, rtol=0, atol=TOL)
    np.testing.assert_allclose(logvar, ref_logvar, rtol=0, atol=TOL)


@pytest.mark.parametrize("n,seed,temperature", [(1, 0, 1.0), (7, 3, 0.5), (130, 11, 1.3)])
def test_sample_equals_pytorch_decoding_the_same_z(exported, n, seed, temperature):
    model, folder = exported
    z = random.scaled(random.gaussian(n * model.latent_dim, seed), temperature).reshape(n, model.latent_dim)
    got = VAE.load(folder, batch_size=50).sample(n, seed=seed, temperature=temperature)
    np.testing.assert_allclose(got, _torch_probs(model, z), rtol=0, atol=TOL)


@pytest.mark.parametrize("n", [1, 9, 70])
def test_reconstruct_equals_pytorch_decode_of_mu(exported, rng, n):
    model, folder = exported
    x = rng.random((n, *model.input_shape), dtype=np.float32)
    ref = _torch_probs(model, _torch_encode(model, x)[0])
    np.testing.assert_allclose(VAE.load(folder, batch_size=32).reconstruct(x), ref, rtol=0, atol=TOL)


def test_encode_with_sample_is_mu_plus_scaled_noise_from_the_seed(exported, rng):
    model, folder = exported
    vae = VAE.load(folder, batch_size=4)
    x = rng.random((10, *model.input_shape), dtype=np.float32)
    mu, logvar = vae.encode(x)
    eps = random.gaussian(10 * model.latent_dim, 5).reshape(10, model.latent_dim)
    z = vae.encode(x, sample=True, seed=5)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, mu + np.exp(0.5 * logvar) * eps, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(z, vae.encode(x, sample=True, seed=5))


def test_interpolate_runs_from_the_first_reconstruction_to_the_second(exported, rng):
    model, folder = exported
    vae = VAE.load(folder)
    x1, x2 = rng.random((2, *model.input_shape), dtype=np.float32)
    path = vae.interpolate(x1, x2, steps=5)
    assert path.shape == (5, *model.input_shape)
    np.testing.assert_allclose(path[0], vae.reconstruct(x1[None])[0], atol=1e-6)
    np.testing.assert_allclose(path[-1], vae.reconstruct(x2[None])[0], atol=1e-6)
    mu1, mu2 = _torch_encode(model, x1[None])[0], _torch_encode(model, x2[None])[0]
    np.testing.assert_allclose(path[2], _torch_probs(model, (mu1 + mu2) / 2)[0], atol=TOL)


def test_interpolate_between_batches_keeps_the_batch_and_layout(mlp, rng):
    model, folder = mlp
    x1, x2 = rng.random((2, 3, 784), dtype=np.float32)
    assert VAE.load(folder).interpolate(x1, x2, steps=4).shape == (4, 3, 784)


# -- layouts and dtypes -----------------------------------------------------------------------------

def test_uint8_input_means_pixels_over_255(mlp, rng):
    _, folder = mlp
    vae = VAE.load(folder)
    x8 = rng.integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    mu8, logvar8 = vae.encode(x8)
    mu, logvar = vae.encode(x8.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(mu8, mu)
    np.testing.assert_array_equal(logvar8, logvar)


def test_flat_input_encodes_like_nchw_and_reconstructs_flat(mlp, rng):
    _, folder = mlp
    vae = VAE.load(folder)
    x = rng.random((6, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(vae.encode(x.reshape(6, -1))[0], vae.encode(x)[0])
    flat = vae.reconstruct(x.reshape(6, -1))
    assert flat.shape == (6, 784)
    np.testing.assert_array_equal(flat, vae.reconstruct(x).reshape(6, -1))


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_channels_last_images_are_refused_in_one_line(request, rng, model):
    """(N, H, W, C) holds the right number of pixels but in another order: read as (N, C, H, W) it would garble
    an RGB model's colours, so it is refused (a 1-channel model's too: one rule for every model)."""
    torch_model, folder = request.getfixturevalue(model)
    c, h, w = torch_model.input_shape
    vae = VAE.load(folder)
    for x in (rng.random((3, h, w, c), dtype=np.float32), rng.integers(0, 256, (3, h, w, c), dtype=np.uint8)):
        for call in (vae.encode, vae.reconstruct):
            with pytest.raises(RuntimeInputError) as e:
                call(x)
            assert str(e.value) == (f"x has shape (3, {h}, {w}, {c}); expected (N, {c}, {h}, {w}) "
                                    f"or (N, {c * h * w})")


def test_float64_and_float16_inputs_are_accepted(mlp, rng):
    _, folder = mlp
    vae = VAE.load(folder)
    x = rng.random((3, 784))
    np.testing.assert_allclose(vae.encode(x)[0], vae.encode(x.astype(np.float32))[0], atol=1e-6)
    assert vae.encode(x.astype(np.float16))[0].shape == (3, 20)


def test_facts_come_from_vae_json(exported):
    model, folder = exported
    vae = VAE.load(folder)
    assert vae.latent_dim == model.latent_dim and vae.input_shape == model.input_shape
    assert vae.meta == json.loads((folder / "vae.json").read_text())
    vae.meta["model"]["latent_dim"] = -1  # a copy: the loaded model cannot be changed through it
    assert vae.meta["model"]["latent_dim"] == model.latent_dim


# -- chunking and streaming -------------------------------------------------------------------------

def test_small_batch_size_gives_identical_results(exported, rng):
    model, folder = exported
    big, small = VAE.load(folder), VAE.load(folder, batch_size=3)
    x = rng.random((20, *model.input_shape), dtype=np.float32)
    z = rng.standard_normal((20, model.latent_dim)).astype(np.float32)
    np.testing.assert_array_equal(small.sample(20, seed=4), big.sample(20, seed=4))
    np.testing.assert_array_equal(small.decode(z), big.decode(z))
    for a, b in zip(small.encode(x), big.encode(x)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(small.encode(x, sample=True, seed=1), big.encode(x, sample=True, seed=1))


@pytest.mark.parametrize("batch_size", [1, 7, 100])
def test_iter_samples_concatenate_to_sample(mlp, batch_size):
    _, folder = mlp
    vae = VAE.load(folder)
    chunks = list(vae.iter_samples(45, seed=9, temperature=0.8, batch_size=batch_size))
    assert all(len(c) <= batch_size for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), vae.sample(45, seed=9, temperature=0.8))


def test_iter_decode_yields_decode_in_chunks(mlp, rng):
    _, folder = mlp
    vae = VAE.load(folder, batch_size=4)
    z = rng.standard_normal((10, 20))
    chunks = list(vae.iter_decode(z))
    assert [len(c) for c in chunks] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(chunks), vae.decode(z))


def test_same_seed_same_samples_other_seed_other_samples(mlp):
    vae = VAE.load(mlp[1])
    np.testing.assert_array_equal(vae.sample(4, seed=1), vae.sample(4, seed=1))
    assert not np.array_equal(vae.sample(4, seed=1), vae.sample(4, seed=2))


def test_temperature_zero_decodes_the_origin(mlp):
    model, folder = mlp
    x = VAE.load(folder).sample(3, seed=0, temperature=0.0)
    np.testing.assert_allclose(x, _torch_probs(model, np.zeros((3, 20))), atol=TOL)


# -- threads and session options --------------------------------------------------------------------

def test_one_model_used_from_many_threads_matches_sequential_calls(exported, rng):
    model, folder = exported
    vae = VAE.load(folder, batch_size=16)
    xs = [rng.random((33, *model.input_shape), dtype=np.float32) for _ in range(8)]
    sequential = [(vae.sample(40, seed=s), vae.encode(xs[s])[0], vae.reconstruct(xs[s])) for s in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda s: (vae.sample(40, seed=s), vae.encode(xs[s])[0],
                                            vae.reconstruct(xs[s])), range(8)))
    for seq, par in zip(sequential, parallel):
        for a, b in zip(seq, par):
            np.testing.assert_array_equal(a, b)


def test_a_fresh_model_encoding_from_many_threads_at_once_matches_one_thread(exported, rng):
    model, folder = exported
    xs = [rng.random((9, *model.input_shape), dtype=np.float32) for _ in range(8)]
    sequential = [VAE.load(folder).encode(x)[0] for x in xs]
    vae = VAE.load(folder)  # its encoder's session is made by whichever thread encodes first
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda x: vae.encode(x)[0], xs))
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a, b)


def test_the_encoder_file_is_checked_at_load_and_again_when_it_is_first_used(mlp, tmp_path, rng):
    model, folder = mlp
    folder = copy_export(folder, tmp_path)
    vae = VAE.load(folder)
    data = (folder / "encoder.onnx").read_bytes()
    (folder / "encoder.onnx").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # its size kept: the sha256 speaks
    assert vae.sample(4, seed=0).shape == (4, *model.input_shape)  # sampling never reads the encoder
    with pytest.raises(ModelFolderError, match="encoder.onnx does not match the sha256 in vae.json"):
        vae.encode(rng.random((2, *model.input_shape), dtype=np.float32))


def test_threads_option_gives_the_same_samples(mlp):
    _, folder = mlp
    np.testing.assert_allclose(VAE.load(folder, threads=1).sample(8, seed=3), VAE.load(folder).sample(8, seed=3),
                               atol=1e-6)


def test_default_provider_is_cpu(mlp):
    assert VAE.load(mlp[1])._dec.get_providers() == ["CPUExecutionProvider"]


def test_unknown_provider_is_refused_instead_of_silently_falling_back(mlp):
    with pytest.raises(RuntimeInputError, match="provider 'NoSuchExecutionProvider' is not available"):
        VAE.load(mlp[1], providers=["NoSuchExecutionProvider"])


def test_a_provider_onnxruntime_lists_but_cannot_use_is_an_error_not_a_fallback(mlp, monkeypatch):
    from vae_edge.runtime import sessions

    # a CPU build asked for CUDA makes its session on the CPU with a warning: as on a machine without a GPU
    listed = sessions.ort.get_available_providers() + ["CUDAExecutionProvider"]
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: listed)
    with pytest.raises(RuntimeInputError, match="lists CUDAExecutionProvider but could not use it on this machine"):
        VAE.load(mlp[1], providers=["CUDAExecutionProvider"])


# -- precision --------------------------------------------------------------------------------------

def test_int8_precision_uses_the_int8_files(mlp):
    _, folder = mlp
    fp32, int8 = VAE.load(folder), VAE.load(folder, precision="int8")
    assert int8.precision == "int8"
    a, b = fp32.sample(16, seed=0), int8.sample(16, seed=0)
    assert not np.array_equal(a, b)  # other weights ...
    np.testing.assert_allclose(a, b, atol=0.05)  # ... that approximate the same model


def test_int8_precision_without_int8_files_is_a_clear_error(conv):
    with pytest.raises(ModelFolderError, match="no int8 files.*--quantize int8"):
        VAE.load(conv[1], precision="int8")


def test_unknown_precision_is_refused(mlp):
    with pytest.raises(RuntimeInputError, match="precision must be one of fp32, int8"):
        VAE.load(mlp[1], precision="fp16")


# -- model folder integrity -------------------------------------------------------------------------

def test_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(ModelFolderError, match=r"run `vae-export model.pt --out .*` first"):
        VAE.load(tmp_path / "nowhere")


def test_a_load_reads_vae_json_once_and_each_file_once_but_the_encoder_twice(opened):
    """vae.json is read into one ModelFolder; the encoder is checked at load and read again when its session is
    made on the first encode, so that a sampler never holds its bytes (sessions.LazySession)."""
    vae = VAE.load()  # the bundled model: format 2, prior.onnx and score.onnx
    x = np.random.default_rng().random((3, *vae.input_shape), dtype=np.float32)
    vae.sample(2, seed=1), vae.encode(x), vae.encode(x), vae.score(x), vae.score(x)
    assert opened == {"vae.json": 1, "decoder.onnx": 1, "prior.onnx": 1, "encoder.onnx": 2, "score.onnx": 1}


@pytest.mark.parametrize("name", ["decoder.onnx", "encoder.onnx", "decoder.int8.onnx"])
def test_a_tampered_file_is_refused(mlp, tmp_path, name):
    folder = copy_export(mlp[1], tmp_path)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match=f"{name} does not match the sha256 in vae.json"):
        VAE.load(folder, precision="int8" if "int8" in name else "fp32")


def test_a_missing_onnx_file_is_refused(mlp, tmp_path):
    folder = copy_export(mlp[1], tmp_path)
    (folder / "encoder.onnx").unlink()
    with pytest.raises(ModelFolderError, match="cannot read .*encoder.onnx"):
        VAE.load(folder)


def test_a_corrupt_onnx_file_with_a_matching_hash_is_refused(mlp, tmp_path):
    folder = copy_export(mlp[1], tmp_path)
    (folder / "decoder.onnx").write_bytes(b"not an onnx model")
    rehash(folder, "decoder")
    with pytest.raises(ModelFolderError, match="decoder.onnx is not a loadable ONNX model"):
        VAE.load(folder)


def test_a_file_that_loads_but_fails_to_run_says_so_in_one_line(mlp, tmp_path, rng):
    """A bit that make fuzz flipped: the decoder's second Gemm reads its input transposed (transA), which the
    symbolic batch hides from onnxruntime's checks at load, and which no batch but 400 (the hidden width) runs."""
    folder = copy_export(mlp[1], tmp_path)
    decoder = onnx.load(str(folder / "decoder.onnx"))
    second_gemm = [n for n in decoder.graph.node if n.op_type == "Gemm"][1]
    next(a for a in second_gemm.attribute if a.name == "transA").i = 1
    onnx.save(decoder, str(folder / "decoder.onnx"))
    rehash(folder, "decoder")
    vae = VAE.load(folder)
    with pytest.raises(ModelFolderError, match=r"decoder.onnx failed to run: .*Gemm") as e:
        vae.decode(rng.standard_normal((2, vae.latent_dim), dtype=np.float32))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("key", ["encoder", "decoder"])
def test_a_few_bytes_with_a_matching_hash_are_not_a_model_rather_than_a_swapped_file(mlp, tmp_path, key):
    """b':\\x00' is an empty graph to a protobuf reader: no IR version, no opset, so not an ONNX model."""
    folder = copy_export(mlp[1], tmp_path)
    (folder / f"{key}.onnx").write_bytes(b":\x00")
    rehash(folder, key)
    with pytest.raises(ModelFolderError, match=f"{key}.onnx is not a loadable ONNX model") as e:
        VAE.load(folder)
    assert "swapped" not in str(e.value)


@pytest.mark.parametrize("model", [{"input_shape": [1, 28], "latent_dim": 20},
                                   {"input_shape": [1, 28, 28], "latent_dim": 0},
                                   {"input_shape": [1, 28, 28], "latent_dim": 20.5}])
def test_vae_json_is_checked_under_python_dash_o_too(mlp, tmp_path, model):
    """The checks are real ones, not asserts, which `python -O` removes."""
    import subprocess
    import sys

    folder = copy_export(mlp[1], tmp_path)
    meta = json.loads((folder / "vae.json").read_text())
    (folder / "vae.json").write_text(json.dumps({**meta, "model": {**meta["model"], **model}}))
    probe = ("import sys; from vae_edge.runtime import ModelFolderError, read_meta\n"
             "try: read_meta(sys.argv[1])\nexcept ModelFolderError as e: print(e)")
    r = subprocess.run([sys.executable, "-O", "-c", probe, str(folder)], capture_output=True, text=True)
    assert r.returncode == 0 and "lacks valid model.input_shape, model.latent_dim or files" in r.stdout, r


def test_a_corrupt_vae_json_is_refused(mlp, tmp_path):
    folder = copy_export(mlp[1], tmp_path)
    (folder / "vae.json").write_text('{"format": "vae-edge-onnx", ')
    with pytest.raises(ModelFolderError, match="vae.json is not readable JSON"):
        VAE.load(folder)


def test_encoder_and_decoder_disagreeing_on_latent_dim_is_refused(mlp, mlp_latent8, tmp_path):
    folder = copy_export(mlp[1], tmp_path)
    shutil.copyfile(mlp_latent8[1] / "decoder.onnx", folder / "decoder.onnx")
    rehash(folder, "decoder")
    with pytest.raises(ModelFolderError, match="encoder and decoder disagree on latent_dim.*decoder takes 8"):
        VAE.load(folder)


def test_a_swapped_encoder_is_refused_too(mlp, mlp_latent8, tmp_path):
    folder = copy_export(mlp[1], tmp_path)
    shutil.copyfile(mlp_latent8[1] / "encoder.onnx", folder / "encoder.onnx")
    rehash(folder, "encoder")
    with pytest.raises(ModelFolderError, match=r"the encoder gives 8, the decoder takes 20 \(as vae.json says\)"):
        VAE.load(folder)


def test_decoder_only_checks_the_decoder_against_vae_json(mlp, mlp_latent8, tmp_path):
    folder = copy_export(mlp[1], tmp_path)
    shutil.copyfile(mlp_latent8[1] / "decoder.onnx", folder / "decoder.onnx")
    rehash(folder, "decoder")
    with pytest.raises(ModelFolderError, match="the decoder and vae.json disagree on latent_dim: vae.json says 20, "
                                               "the decoder takes 8"):
        VAE.load(folder, decoder_only=True)


def test_decoder_only_samples_like_the_full_model_and_cannot_encode(mlp, rng):
    _, folder = mlp
    dec = VAE.load(folder, decoder_only=True)
    np.testing.assert_array_equal(dec.sample(9, seed=2), VAE.load(folder).sample(9, seed=2))
    with pytest.raises(RuntimeInputError, match="decoder_only=True"):
        dec.encode(rng.random((1, 784)))


def test_decoder_only_never_reads_the_encoder(mlp, tmp_path):
    folder = copy_export(mlp[1], tmp_path)
    (folder / "encoder.onnx").unlink()
    assert VAE.load(folder, decoder_only=True).sample(2, seed=0).shape == (2, 1, 28, 28)


def test_a_file_path_outside_the_folder_is_refused(mlp, tmp_path):
    folder = copy_export(mlp[1], tmp_path)
    meta = json.loads((folder / "vae.json").read_text())
    meta["files"]["decoder"]["path"] = "../elsewhere.onnx"
    (folder / "vae.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="is not a plain path inside the model folder"):
        VAE.load(folder)


# -- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("x,message", [
    (np.full((2, 1, 28, 27), 0.5, np.float32),
     r"x has shape \(2, 1, 28, 27\); expected \(N, 1, 28, 28\) or \(N, 784\)"),
    (np.full((1, 28, 28), 0.5, np.float32), r"add a batch axis"),
    (np.full((0, 784), 0.5, np.float32), r"N = 0"),
    (np.full((2, 784), 3, np.int64), r"dtype int64"),
    (np.full((2, 784), True), r"dtype bool"),
    (np.full((2, 784), np.nan, np.float32), r"NaN or inf"),
    (np.full((2, 784), np.inf), r"NaN or inf"),
    (np.full((2, 784), 255.0, np.float32), r"floats must lie in \[0, 1\]"),
])
def test_bad_images_raise_a_one_line_value_error(mlp, x, message):
    vae = VAE.load(mlp[1])
    for call in (vae.encode, vae.reconstruct):
        with pytest.raises(RuntimeInputError, match=message) as e:
            call(x)
        assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


@pytest.mark.parametrize("z,message", [
    (np.zeros((3, 19), np.float32), r"z has shape \(3, 19\); expected \(N, 20\)"),
    (np.zeros(20, np.float32), r"add a batch axis"),
    (np.zeros((3, 20), np.int32), r"dtype int32"),
    (np.full((3, 20), np.nan), r"NaN or inf"),
    (np.full((3, 20), -np.inf, np.float32), r"NaN or inf"),
    (np.zeros((0, 20), np.float32), r"N = 0"),
])
def test_bad_latents_raise_a_one_line_value_error(mlp, z, message):
    with pytest.raises(RuntimeInputError, match=message):
        VAE.load(mlp[1]).decode(z)


@pytest.mark.parametrize("kwargs,message", [
    ({"n": 0}, "n must be >= 1, got 0"),
    ({"n": -5}, "n must be >= 1, got -5"),
    ({"n": 2.5}, "n must be an int"),
    ({"n": 4, "temperature": -1.0}, "temperature must be a finite number >= 0"),
    ({"n": 4, "temperature": float("nan")}, "temperature must be a finite number >= 0"),
])
def test_bad_sample_arguments_raise_before_any_work(mlp, kwargs, message):
    vae = VAE.load(mlp[1])
    with pytest.raises(RuntimeInputError, match=message):
        vae.sample(**kwargs)
    with pytest.raises(RuntimeInputError, match=message):
        vae.iter_samples(**kwargs)  # raised at the call, not at the first next()


def test_interpolate_refuses_inputs_of_different_shapes_and_too_few_steps(mlp, rng):
    vae = VAE.load(mlp[1])
    with pytest.raises(RuntimeInputError, match="differ in shape"):
        vae.interpolate(rng.random(784), rng.random((1, 784)))
    with pytest.raises(RuntimeInputError, match="steps must be >= 2"):
        vae.interpolate(rng.random(784), rng.random(784), steps=1)


# -- image grids and .npy files ---------------------------------------------------------------------

@pytest.mark.parametrize("n,c,nrow", [(10, 1, 4), (64, 1, 8), (5, 3, 8)])
def test_grid_matches_torchvision_save_image_pixels(rng, n, c, nrow):
    torchvision = pytest.importorskip("torchvision")
    x = rng.random((n, c, 9, 7), dtype=np.float32)
    grid = torchvision.utils.make_grid(torch.from_numpy(x), nrow=nrow, padding=2)
    ref = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    ours = make_grid(x, nrow=nrow)
    np.testing.assert_array_equal(ours, ref[:, :, :c])


def test_save_grid_writes_a_grayscale_png_atomically(rng, tmp_path):
    from PIL import Image
    save_grid(rng.random((64, 1, 28, 28), dtype=np.float32), tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        assert (im.format, im.mode, im.size) == ("PNG", "L", (8 * 30 + 2, 8 * 30 + 2))
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_save_npy_chunks_equals_np_save_of_the_whole(rng, tmp_path):
    x = rng.random((25, 2, 3, 4), dtype=np.float32)
    save_npy_chunks((x[i:i + 7] for i in range(0, 25, 7)), tmp_path / "a.npy", x.shape)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), x)


def test_save_npy_chunks_leaves_nothing_when_a_chunk_fails(rng, tmp_path):
    def chunks():
        yield rng.random((5, 3), dtype=np.float32)
        raise RuntimeInputError("z contains NaN or inf")
    with pytest.raises(RuntimeInputError):
        save_npy_chunks(chunks(), tmp_path / "a.npy", (10, 3))
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_permissions_not_private_temp_ones(tmp_path):
    from vae_edge.runtime.images import save_npy
    mask = os.umask(0o022)
    os.umask(mask)
    save_npy(np.ones(3, np.float32), tmp_path / "a.npy")
    assert (tmp_path / "a.npy").stat().st_mode & 0o777 == 0o666 & ~mask

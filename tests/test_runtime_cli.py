"""vae-sample, vae-encode, vae-decode, vae-info: happy paths, and bad input -> one error line, exit 2, no output."""
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import copy_export, rehash, write_png_file
from conftest import invoke as run
from vae_edge.export import export_model
from vae_edge.runtime import VAE
from vae_edge.runtime.cli import MAX_GRID, decode_main, encode_main, info_main, sample_main
from vae_edge.train.model import VAE as TorchVAE

BIN = Path(sys.executable).parent


def _export(tmp_path_factory, name, quantize=None, **kw):
    torch.manual_seed(sum(map(ord, name)))
    folder = tmp_path_factory.mktemp(name) / "vae-onnx"
    export_model(TorchVAE(**kw).eval(), folder, quantize=quantize)
    return folder


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return _export(tmp_path_factory, "cli-mlp", quantize="int8", arch="mlp", hidden_dim=64, latent_dim=10)


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    return _export(tmp_path_factory, "cli-conv", arch="conv", input_shape=(3, 12, 8), hidden_dim=32, latent_dim=4)


@pytest.fixture(scope="module")
def mlp_latent3(tmp_path_factory):
    return _export(tmp_path_factory, "cli-mlp3", arch="mlp", hidden_dim=16, latent_dim=3)


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder, the current directory for the command."""
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def assert_fails(result, message, folder=None):
    """Exit 2, one stderr line `error: ...` containing message, nothing on stdout, folder left empty."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]
    assert result.stdout == ""
    if folder is not None:
        assert sorted(p.name for p in folder.iterdir()) == [], "a failed command left files behind"






def _png(path):
    with Image.open(path) as im:
        return im.format, im.mode, im.size


# -- vae-sample -------------------------------------------------------------------------------------

def test_sample_writes_samples_png_by_default(mlp, work):
    r = run(sample_main, "--model", mlp)
    assert r.exit_code == 0, r.stderr
    assert _png(work / "samples.png") == ("PNG", "L", (242, 242))  # 8 x 8 grid of 28 px, padding 2
    assert sorted(p.name for p in work.iterdir()) == ["samples.png"]


def test_sample_grid_follows_n_and_nrow(conv, work):
    r = run(sample_main, "--model", conv, "--n", 10, "--nrow", 4, "--out", "g.png")
    assert r.exit_code == 0, r.stderr
    assert _png(work / "g.png") == ("PNG", "RGB", (4 * 10 + 2, 3 * 14 + 2))


def test_sample_npy_alone_writes_only_the_array_equal_to_the_api(mlp, work):
    r = run(sample_main, "--model", mlp, "--n", 50, "--npy", "s.npy", "--seed", 3, "--temperature", 0.7,
            "--batch-size", 8)
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["s.npy"]
    np.testing.assert_array_equal(np.load(work / "s.npy"), VAE.load(mlp).sample(50, seed=3, temperature=0.7))


def test_sample_out_and_npy_write_both(mlp, work):
    r = run(sample_main, "--model", mlp, "--n", 5, "--npy", "s.npy", "--out", "s.png")
    assert r.exit_code == 0, r.stderr
    assert np.load(work / "s.npy").shape == (5, 1, 28, 28)
    assert _png(work / "s.png")[2] == (5 * 30 + 2, 32)


def test_sample_int8_precision(mlp, work):
    r = run(sample_main, "--model", mlp, "--n", 4, "--npy", "s.npy", "--precision", "int8", "--threads", 1)
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(np.load(work / "s.npy"), VAE.load(mlp, precision="int8").sample(4, seed=0))


@pytest.mark.parametrize("args,message", [
    (["--n", 0], "n must be >= 1, got 0"),  # the API's checks and words (VAE.load, iter_samples)
    (["--n", -3], "n must be >= 1, got -3"),
    (["--temperature", -1], "temperature must be a finite number >= 0"),
    (["--temperature", "nan"], "temperature must be a finite number >= 0"),
    (["--nrow", 0], "--nrow must be >= 1"),
    (["--batch-size", 0], "batch_size must be >= 1, got 0"),
    (["--threads", -1], "threads must be an int from 0 (onnxruntime decides) to 1024, got -1"),
    (["--precision", "fp16"], "precision must be one of fp32, int8, got 'fp16'"),
    (["--seed", -1], "seed must be an integer in [0, 2^53), got -1"),
    (["--seed", 2**53], "seed must be an integer in [0, 2^53)"),
    (["--n", MAX_GRID + 1], f"too many for one image grid (at most {MAX_GRID}); write them with --npy FILE or "
                            f"--out-dir DIR alone"),
    (["--out", "samples.txt"], "use a name ending in .png"),
    (["--out", "same.png", "--npy", "same.png"], "name the same file"),
])
def test_sample_bad_options_fail_cleanly(mlp, work, args, message):
    assert_fails(run(sample_main, "--model", mlp, *args), message, work)


def test_sample_from_a_missing_folder_says_how_to_make_one(work):
    r = run(sample_main, "--n", 64, "--model", "./gone")
    assert_fails(r, "no exported model at gone; run `vae-export model.pt --out gone` first", work)


def test_sample_int8_without_int8_files_fails_cleanly(conv, work):
    assert_fails(run(sample_main, "--model", conv, "--precision", "int8"), "has no int8 files", work)


def test_sample_refuses_a_tampered_model(mlp, work, tmp_path):
    folder = copy_export(mlp, tmp_path)
    data = bytearray((folder / "decoder.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "decoder.onnx").write_bytes(bytes(data))
    assert_fails(run(sample_main, "--model", folder), "does not match the sha256 in vae.json", work)


def test_sample_refuses_a_corrupt_model_file(mlp, work, tmp_path):
    folder = copy_export(mlp, tmp_path)
    (folder / "decoder.onnx").write_bytes((folder / "decoder.onnx").read_bytes()[:1000])
    rehash(folder, "decoder")
    assert_fails(run(sample_main, "--model", folder), "is not a loadable ONNX model", work)


def test_sample_refuses_a_folder_whose_encoder_and_decoder_disagree_on_latent_dim(mlp, mlp_latent3, work, tmp_path):
    folder = copy_export(mlp, tmp_path)
    shutil.copyfile(mlp_latent3 / "decoder.onnx", folder / "decoder.onnx")
    rehash(folder, "decoder")
    assert_fails(run(sample_main, "--model", folder), "the decoder and vae.json disagree on latent_dim", work)
    np.save(work.parent / "x.npy", np.full((2, 784), 0.5, np.float32))
    assert_fails(run(encode_main, work.parent / "x.npy", "--model", folder),
                 "encoder and decoder disagree on latent_dim: the encoder gives 10 (as vae.json says), "
                 "the decoder takes 3", work)


def test_the_installed_vae_sample_script_runs_and_fails_cleanly(mlp, tmp_path):
    ok = subprocess.run([BIN / "vae-sample", "--n", "64", "--model", mlp, "--out", tmp_path / "s.png"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert _png(tmp_path / "s.png") == ("PNG", "L", (242, 242))
    bad = subprocess.run([BIN / "vae-sample", "--model", tmp_path / "missing"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [f"error: no exported model at {tmp_path / 'missing'}; "
                                       f"run `vae-export model.pt --out {tmp_path / 'missing'}` first"]


# -- vae-encode -------------------------------------------------------------------------------------

def _write_images(folder, rng, n=3):
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(p)
        paths.append(p)
    return paths


def test_encode_png_files_gives_mu_of_the_pixels(mlp, work, tmp_path):
    rng = np.random.default_rng()
    paths = _write_images(tmp_path, rng)
    r = run(encode_main, *paths, "--model", mlp, "--out", "z.npy")
    assert r.exit_code == 0, r.stderr
    pixels = np.stack([np.asarray(Image.open(p))[None] for p in paths])
    np.testing.assert_array_equal(np.load(work / "z.npy"), VAE.load(mlp).encode(pixels)[0])


def test_encode_converts_colour_jpeg_to_the_models_channels_and_size(mlp, work, tmp_path):
    rng = np.random.default_rng()
    Image.fromarray(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8), "RGB").save(tmp_path / "big.jpg")
    r = run(encode_main, tmp_path / "big.jpg", "--model", mlp)
    assert r.exit_code == 0, r.stderr
    assert np.load(work / "latents.npy").shape == (1, 10)


@pytest.mark.parametrize("layout", ["nchw-float", "flat-float", "nchw-uint8"])
def test_encode_npy_input_equals_the_api(conv, work, tmp_path, layout):
    rng = np.random.default_rng()
    x = rng.random((9, 3, 12, 8), dtype=np.float32)
    if layout == "flat-float":
        x = x.reshape(9, -1)
    elif layout == "nchw-uint8":
        x = (x * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    r = run(encode_main, tmp_path / "x.npy", "--model", conv, "--out", "mu.npy", "--batch-size", 4)
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(np.load(work / "mu.npy"), VAE.load(conv).encode(x)[0])


def test_encode_sample_draws_z_with_the_seed(conv, work, tmp_path):
    x = np.random.default_rng().random((6, 3, 12, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    r = run(encode_main, tmp_path / "x.npy", "--model", conv, "--sample", "--seed", 4)
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(np.load(work / "latents.npy"), VAE.load(conv).encode(x, sample=True, seed=4))


@pytest.mark.parametrize("array,message", [
    (np.full((2, 1, 28, 27), 0.5, np.float32), "x has shape (2, 1, 28, 27); expected (N, 1, 28, 28) or (N, 784)"),
    (np.full((2, 784), 1, np.int64), "x has dtype int64"),
    (np.full((2, 784), np.nan, np.float32), "x contains NaN or inf"),
    (np.full((2, 784), np.inf), "x contains NaN or inf"),
])
def test_encode_bad_npy_fails_cleanly(mlp, work, tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    assert_fails(run(encode_main, tmp_path / "x.npy", "--model", mlp), message, work)


@pytest.mark.parametrize("args", [["--sample", "--seed", "-1"], ["--seed", "-1"]])
def test_encode_refuses_a_negative_seed_cleanly(mlp, work, tmp_path, args):
    np.save(tmp_path / "x.npy", np.full((2, 784), 0.5, np.float32))
    assert_fails(run(encode_main, tmp_path / "x.npy", "--model", mlp, *args),
                 "seed must be an integer in [0, 2^53), got -1", work)


@pytest.mark.parametrize("script", ["vae-sample", "vae-encode"])
def test_the_installed_scripts_refuse_a_negative_seed_in_one_line(mlp, tmp_path, script):
    """The console scripts themselves: the seed reaches the API, which refuses it before numpy sees it."""
    np.save(tmp_path / "x.npy", np.full((2, 784), 0.5, np.float32))
    args = ["--n", "4"] if script == "vae-sample" else [tmp_path / "x.npy", "--sample"]
    r = subprocess.run([BIN / script, *args, "--model", mlp, "--seed", "-1"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert (r.returncode, r.stderr.splitlines()) == (2, ["error: seed must be an integer in [0, 2^53), got -1"])


def test_encode_refuses_a_pickled_npy(mlp, work, tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_fails(run(encode_main, tmp_path / "x.npy", "--model", mlp), "is not a readable .npy array", work)


def test_encode_refuses_a_file_that_is_not_an_image_when_it_is_all_there_is(mlp, work, tmp_path):
    (tmp_path / "fake.png").write_text("hello")
    r = run(encode_main, tmp_path / "fake.png", "--model", mlp)
    assert r.exit_code == 2 and f"skipped: cannot read image {tmp_path / 'fake.png'}" in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1] == f"error: no images could be read (1 skipped) in {tmp_path / 'fake.png'}"
    assert list(work.iterdir()) == []


def test_encode_refuses_a_missing_input(mlp, work, tmp_path):
    assert_fails(run(encode_main, tmp_path / "nope.npy", "--model", mlp), "no such file", work)


def test_encode_refuses_npy_mixed_with_images(mlp, work, tmp_path):
    paths = _write_images(tmp_path, np.random.default_rng(), 1)
    np.save(tmp_path / "x.npy", np.zeros((1, 784), np.float32))
    assert_fails(run(encode_main, tmp_path / "x.npy", *paths, "--model", mlp), "not both", work)


def test_encode_from_a_missing_folder_says_how_to_make_one(work, tmp_path):
    np.save(tmp_path / "x.npy", np.full((1, 784), 0.5, np.float32))
    assert_fails(run(encode_main, tmp_path / "x.npy", "--model", "./gone"),
                 "run `vae-export model.pt --out gone` first", work)


# -- vae-decode -------------------------------------------------------------------------------------

def test_decode_writes_grid_png_by_default(conv, work, tmp_path):
    np.save(tmp_path / "z.npy", np.random.default_rng().standard_normal((12, 4)).astype(np.float32))
    r = run(decode_main, tmp_path / "z.npy", "--model", conv, "--nrow", 6)
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["grid.png"]
    assert _png(work / "grid.png") == ("PNG", "RGB", (6 * 10 + 2, 2 * 14 + 2))


def test_decode_npy_alone_streams_the_images_equal_to_the_api(mlp, work, tmp_path):
    z = np.random.default_rng().standard_normal((37, 10))
    np.save(tmp_path / "z.npy", z)
    r = run(decode_main, tmp_path / "z.npy", "--model", mlp, "--npy", "x.npy", "--batch-size", 5)
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["x.npy"]
    np.testing.assert_array_equal(np.load(work / "x.npy"), VAE.load(mlp).decode(z))


def test_decode_out_and_npy_write_both(mlp, work, tmp_path):
    np.save(tmp_path / "z.npy", np.random.default_rng().standard_normal((3, 10)).astype(np.float32))
    r = run(decode_main, tmp_path / "z.npy", "--model", mlp, "--npy", "x.npy", "--out", "x.png")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["x.npy", "x.png"]


@pytest.mark.parametrize("array,message", [
    (np.zeros((4, 9), np.float32), "z has shape (4, 9); expected (N, 10) (latent_dim is 10)"),
    (np.zeros(10, np.float32), "add a batch axis"),
    (np.zeros((4, 10), np.int64), "z has dtype int64"),
    (np.full((4, 10), np.nan, np.float32), "z contains NaN or inf"),
    (np.zeros((0, 10), np.float32), "N = 0"),
])
def test_decode_bad_latents_fail_cleanly(mlp, work, tmp_path, array, message):
    np.save(tmp_path / "z.npy", array)
    assert_fails(run(decode_main, tmp_path / "z.npy", "--model", mlp), message, work)
    assert_fails(run(decode_main, tmp_path / "z.npy", "--model", mlp, "--npy", "x.npy"), message, work)


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_decode_refuses_a_zero_batch_size_before_reading_a_row(mlp, work, tmp_path, source, monkeypatch):
    np.save(tmp_path / "z.npy", np.random.default_rng().standard_normal((4, 10)).astype(np.float32))
    if source == "stdin":
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "z.npy").read_bytes())))
    path = tmp_path / "z.npy" if source == "file" else "-"
    assert_fails(run(decode_main, path, "--model", mlp, "--batch-size", 0), "batch_size must be >= 1, got 0", work)


def test_decode_nan_in_a_late_chunk_leaves_no_half_written_npy(mlp, work, tmp_path):
    z = np.random.default_rng().standard_normal((100, 10)).astype(np.float32)
    z[95, 3] = np.nan
    np.save(tmp_path / "z.npy", z)
    r = run(decode_main, tmp_path / "z.npy", "--model", mlp, "--npy", "x.npy", "--batch-size", 10)
    assert_fails(r, "z contains NaN or inf", work)


def test_decode_refuses_a_file_that_is_not_npy(mlp, work, tmp_path):
    (tmp_path / "z.npy").write_text("1,2,3")
    assert_fails(run(decode_main, tmp_path / "z.npy", "--model", mlp), "is not a readable .npy array", work)


def test_decode_refuses_an_npy_whose_header_declares_2_to_the_62_rows_in_one_line(mlp, tmp_path):
    with open(tmp_path / "z.npy", "wb") as f:  # numpy's size arithmetic overflows before it refuses
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2**62, 10)})
        f.write(np.random.default_rng().standard_normal(20, np.float32).tobytes())
    r = subprocess.run([BIN / "vae-decode", tmp_path / "z.npy", "--model", mlp, "--out", tmp_path / "x.png"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "is not a readable .npy array: array is too big" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_decode_refuses_more_latents_than_a_grid_holds(mlp, work, tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((MAX_GRID + 1, 10), np.float32))
    assert_fails(run(decode_main, tmp_path / "z.npy", "--model", mlp), "too many for one image grid", work)


# -- vae-info ---------------------------------------------------------------------------------------

def test_info_prints_the_metadata_and_verifies_every_file(mlp):
    r = run(info_main, "--model", mlp)
    assert r.exit_code == 0, r.stderr
    for text in ("vae-edge-onnx v1", "arch=mlp", "latent_dim=10", "input_shape=[1, 28, 28]", "parity:",
                 "int8:", "ok: 5 files verified"):  # encoder, decoder, score and the two int8 files
        assert text in r.stdout
    assert r.stdout.count("  ok\n") == 5


def test_info_reads_vae_json_once_and_each_file_once(mlp, opened):
    """vae-info verifies every file, then loads each precision from the same folder object and the same bytes."""
    assert run(info_main, "--model", mlp).exit_code == 0
    assert opened == dict.fromkeys(("vae.json", "encoder.onnx", "decoder.onnx", "score.onnx", "encoder.int8.onnx",
                                  "decoder.int8.onnx"), 1)


def test_info_json_prints_vae_json(conv):
    r = run(info_main, "--model", conv, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == json.loads((conv / "vae.json").read_text())


def test_info_fails_on_a_hash_mismatch(mlp, tmp_path):
    folder = copy_export(mlp, tmp_path)
    data = (folder / "encoder.int8.onnx").read_bytes()
    (folder / "encoder.int8.onnx").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # its size kept: the sha256 speaks
    r = run(info_main, "--model", folder)
    assert r.exit_code == 2
    assert "MISMATCH" in r.stdout and r.stdout.count("  ok\n") == 4
    assert r.stderr.splitlines() == [
        f"error: 1 of 5 files failed verification: {folder / 'encoder.int8.onnx'} does not match the sha256 "
        f"in vae.json (tampered or corrupt); refusing to load it"]


def test_info_fails_when_encoder_and_decoder_disagree(mlp, mlp_latent3, tmp_path):
    folder = copy_export(mlp, tmp_path)
    shutil.copyfile(mlp_latent3 / "decoder.onnx", folder / "decoder.onnx")
    rehash(folder, "decoder")
    r = run(info_main, "--model", folder)
    assert r.exit_code == 2 and "disagree on latent_dim" in r.stderr


def test_info_without_a_model_says_how_to_make_one(tmp_path):
    assert_fails(run(info_main, "--model", tmp_path / "none"), "run `vae-export model.pt --out")


def test_options_and_inputs_may_come_in_any_order(mlp, work, tmp_path):
    rng = np.random.default_rng()
    for name in ("a.png", "b.png"):
        write_png_file(tmp_path / name, rng.integers(0, 256, (1, 28, 28), dtype=np.uint8))
    r = run(encode_main, tmp_path / "a.png", "--model", mlp, "--sample", tmp_path / "b.png", "-o", "z.npy",
            "--seed", 5)
    assert r.exit_code == 0, r.stderr
    assert (work / "z.index.csv").read_text().splitlines()[1:] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert np.load(work / "z.npy").shape == (2, 10)


# -- what the commands write, and what they never replace -------------------------------------------

def _writers(model, inputs):
    """Each command that writes and the option under test: (main, its other arguments, the option, a file name)."""
    x, z = inputs / "x.npy", inputs / "z.npy"
    if not x.exists():
        rng = np.random.default_rng()
        np.save(x, rng.random((2, 784), dtype=np.float32))
        np.save(z, rng.standard_normal((2, 10), dtype=np.float32))
    return {"vae-sample --out": (sample_main, ["--model", model, "--n", 2], "--out", "out.png"),
            "vae-sample --npy": (sample_main, ["--model", model, "--n", 2], "--npy", "out.npy"),
            "vae-encode --out": (encode_main, [x, "--model", model], "--out", "out.npy"),
            "vae-decode --out": (decode_main, [z, "--model", model], "--out", "out.png"),
            "vae-decode --npy": (decode_main, [z, "--model", model], "--npy", "out.npy")}


WRITERS = ["vae-sample --out", "vae-sample --npy", "vae-encode --out", "vae-decode --out", "vae-decode --npy"]


def test_vae_sample_refuses_to_replace_a_device(mlp, work):
    os.mkfifo(work / "samples.npy")  # a FIFO stands in for /dev/null or /dev/full: not a regular file either
    assert_fails(run(sample_main, "--model", mlp, "--npy", "samples.npy"),
                 "--npy samples.npy is a FIFO, not a regular file; refusing to replace it")
    assert [p.name for p in work.iterdir()] == ["samples.npy"] and (work / "samples.npy").is_fifo()


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize("kind", ["a FIFO", "a symlink", "a folder"])
def test_every_command_refuses_an_output_that_is_not_a_regular_file_before_any_work(work, tmp_path, command, kind):
    # --model names no model: the output is refused before the model is looked for
    main, args, option, name = _writers(tmp_path / "no-model", tmp_path)[command]
    target = tmp_path / "theirs"
    target.write_bytes(b"theirs")
    {"a FIFO": lambda: os.mkfifo(work / name), "a symlink": lambda: (work / name).symlink_to(target),
     "a folder": (work / name).mkdir}[kind]()
    assert_fails(run(main, *args, option, name),
                 f"{option} {name} is {kind}, not a regular file; refusing to replace it")
    assert [p.name for p in work.iterdir()] == [name] and target.read_bytes() == b"theirs"


@pytest.mark.parametrize("command", WRITERS)
def test_every_command_refuses_an_output_whose_folder_is_missing(work, tmp_path, command):
    main, args, option, name = _writers(tmp_path / "no-model", tmp_path)[command]
    assert_fails(run(main, *args, option, f"gone/{name}"),
                 f"{option} gone/{name}: there is no folder gone; make it first", work)


@pytest.mark.parametrize("command", ["vae-sample --npy", "vae-encode --out", "vae-decode --npy"])
def test_a_dash_writes_the_npy_to_standard_output_and_the_report_to_stderr(mlp, work, tmp_path, command):
    main, args, option, name = _writers(mlp, tmp_path)[command]
    to_stdout, to_file = run(main, *args, option, "-"), run(main, *args, option, name)
    assert to_stdout.exit_code == 0 and to_file.exit_code == 0, to_stdout.stderr + to_file.stderr
    np.testing.assert_array_equal(np.load(io.BytesIO(to_stdout.stdout_bytes)), np.load(work / name))
    assert "to standard output" in to_stdout.stderr and option in run(main, "--help").stdout
    index = ["out.index.csv"] if command == "vae-encode --out" else []  # none beside standard output
    assert sorted(p.name for p in work.iterdir()) == index + [name]


def test_a_failed_write_names_the_file(mlp, tmp_path):
    def small_files():  # a real write failure: "File too large" past 50 kB (SIGXFSZ is ignored, as Python does)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    r = subprocess.run([BIN / "vae-sample", "--model", mlp, "--n", "100", "--npy", tmp_path / "s.npy"],
                       capture_output=True, text=True, preexec_fn=small_files)
    assert (r.returncode, r.stderr) == (2, f"error: {tmp_path / 's.npy'}: File too large\n")
    assert list(tmp_path.iterdir()) == []


def test_sample_out_and_npy_replace_an_earlier_pair_together(mlp, work):
    assert run(sample_main, "--model", mlp, "--n", 5, "--npy", "s.npy", "--out", "s.png", "--seed", 1).exit_code == 0
    r = run(sample_main, "--model", mlp, "--n", 3, "--npy", "s.npy", "--out", "s.png", "--seed", 2)
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(np.load(work / "s.npy"), VAE.load(mlp).sample(3, seed=2))
    assert _png(work / "s.png")[2] == (3 * 30 + 2, 32) and sorted(p.name for p in work.iterdir()) == ["s.npy", "s.png"]


# A real vae-sample process, SIGKILLed just before the Nth call of os.fsync or os.replace.
KILLED_SAMPLE = """
import os, signal, sys
step, nth = sys.argv[1].split(":")
real, calls = getattr(os, step), []
def killed(*args):
    calls.append(args)
    if len(calls) == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args)
setattr(os, step, killed)
from vae_edge.runtime.cli import sample_main
sys.argv = ["vae-sample", *sys.argv[2:]]
sample_main()
"""


@pytest.mark.parametrize("kill,grid,array", [("fsync:1", 5, 5), ("replace:1", 5, None), ("replace:2", 3, None)],
                         ids=["while-writing", "before-the-grid-goes-in", "between-the-grid-and-the-array"])
def test_a_killed_sample_never_leaves_a_grid_beside_an_array_from_another_run(mlp, work, kill, grid, array):
    """The earlier pair has 5 images, the new one 3: after a kill at any step the grid and the array that remain
    hold the same number, or the array is gone; the next run removes the temporary files and writes its pair."""
    args = ["--model", mlp, "--out", "s.png", "--npy", "s.npy"]
    assert run(sample_main, *args, "--n", 5).exit_code == 0
    r = subprocess.run([sys.executable, "-c", KILLED_SAMPLE, kill, *map(str, args), "--n", "3"],
                       capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert _png(work / "s.png")[2][0] == grid * 30 + 2
    assert (np.load(work / "s.npy").shape[0] if (work / "s.npy").exists() else None) == array
    assert run(sample_main, *args, "--n", 3).exit_code == 0
    assert sorted(p.name for p in work.iterdir()) == ["s.npy", "s.png"] and np.load(work / "s.npy").shape[0] == 3


# -- streaming a million samples --------------------------------------------------------------------

@pytest.mark.slow
def test_a_million_samples_stream_to_npy_under_300_mb(tmp_path_factory):
    folder = _export(tmp_path_factory, "cli-million", arch="mlp", hidden_dim=64, latent_dim=10)
    out = tmp_path_factory.mktemp("million") / "out.npy"
    # A fresh wrapper process, so RUSAGE_CHILDREN sees vae-sample alone (not earlier children of pytest).
    probe = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
             "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    try:
        r = subprocess.run([sys.executable, "-c", probe, str(BIN / "vae-sample"), "--n", "1000000",
                            "--npy", str(out), "--model", str(folder)], capture_output=True, text=True)
        rc, peak_kib = map(int, r.stdout.split()[-2:])
        assert rc == 0, r.stderr
        assert peak_kib * 1024 < 300e6, f"peak RSS {peak_kib / 1024:.0f} MiB"
        x = np.load(out, mmap_mode="r")
        assert x.shape == (1_000_000, 1, 28, 28) and x.dtype == np.float32
        assert out.stat().st_size == 1_000_000 * 784 * 4 + 128
        head = VAE.load(folder).sample(1000, seed=0)
        np.testing.assert_array_equal(x[:1000], head)
        assert sorted(p.name for p in out.parent.iterdir()) == ["out.npy"]
    finally:
        out.unlink(missing_ok=True)
        for p in out.parent.glob(".out.npy.*"):
            os.unlink(p)


@pytest.mark.parametrize("command", ["sample", "encode", "decode"])
def test_provider_option_picks_the_provider_and_refuses_one_not_available(mlp, work, command):
    app, args = {"sample": (sample_main, ["--n", "2", "--npy", "z.npy"]),
                 "encode": (encode_main, [_images_npy(work), "--out", "z.npy"]),
                 "decode": (decode_main, [_latents_npy(work), "--npy", "x.npy"])}[command]
    assert run(app, *args, "--model", mlp, "--provider", "CPUExecutionProvider").exit_code == 0
    assert_fails(run(app, *args, "--model", mlp, "--provider", "NoSuchExecutionProvider"),
                 "provider 'NoSuchExecutionProvider' is not available here")


def _images_npy(work):
    np.save(work / "x.npy", np.random.default_rng().random((3, 1, 28, 28), dtype=np.float32))
    return work / "x.npy"


def _latents_npy(work):
    np.save(work / "zin.npy", np.random.default_rng().standard_normal((3, 10)).astype(np.float32))
    return work / "zin.npy"

"""Untrusted input (issue 31, docs/security.md): a model folder from a stranger, whose names may be FIFOs, folders or
symlinks and whose files may not be what vae.json says, and vae.json's own limits, through the API and the
commands; image files that are decompression bombs. The folder is the conformance cases' valid one (tiny files)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_cli
from test_conformance import apply_setup
from vae_edge.runtime import VAE, ModelFolderError, read_meta, verify_files
from vae_edge.runtime import folder as runtime_folder
from vae_edge.runtime import sessions

VALID = REPO / "tests" / "conformance" / "folders" / "valid"
HANG_S = 30  # far past what any check here takes: a reader blocked on a FIFO fails instead of hanging the run


@pytest.fixture
def model(tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(VALID, folder)
    return folder


@pytest.fixture
def no_hang():
    """A test that blocks (opening a FIFO for reading blocks until a writer comes) fails after HANG_S instead."""
    def stop(*_):
        raise TimeoutError(f"blocked for {HANG_S} s: the reader hangs")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(HANG_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _refused(folder: Path, fragment: str, **load) -> str:
    with pytest.raises(ModelFolderError) as e:
        VAE.load(folder, **load)
    assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)
    return str(e.value)


def _edit(folder: Path, change) -> None:
    meta = json.loads((folder / "vae.json").read_text())
    change(meta)
    (folder / "vae.json").write_text(json.dumps(meta))


def _one_line_error(r, fragment: str) -> None:
    """A command's refusal: exit 2, one stderr line `error: ...` holding fragment, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.stderr


# -- what a name in the folder is ---------------------------------------------------------------------------

def test_a_fifo_named_decoder_onnx_is_refused_without_hanging(model, no_hang):
    apply_setup(model, [{"fifo": "decoder.onnx"}])
    _refused(model, f"{model / 'decoder.onnx'} is not a regular file")


def test_a_fifo_named_vae_json_is_refused_without_hanging(model, no_hang):
    apply_setup(model, [{"fifo": "vae.json"}])
    _refused(model, f"{model / 'vae.json'} is not a regular file")


def test_a_fifo_named_encoder_onnx_is_never_opened_by_a_decoder_only_load(model, no_hang):
    apply_setup(model, [{"fifo": "encoder.onnx"}])
    assert VAE.load(model, decoder_only=True).sample(2, seed=0).shape == (2, 1, 2, 3)


def test_a_folder_named_decoder_onnx_is_refused(model):
    apply_setup(model, [{"mkdir": "decoder.onnx"}])
    _refused(model, f"{model / 'decoder.onnx'} is not a regular file")


def test_a_socket_named_decoder_onnx_is_refused(model, monkeypatch):
    (model / "decoder.onnx").unlink()
    monkeypatch.chdir(model)  # a socket's path is at most 107 bytes: bound by its relative name
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind("decoder.onnx")
        _refused(model, f"{model / 'decoder.onnx'} is not a regular file")


def test_a_decoder_symlinked_to_dev_zero_is_refused_before_it_is_opened(model, no_hang, monkeypatch):
    apply_setup(model, [{"symlink": "decoder.onnx", "to": "/dev/zero"}])
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    _refused(model, f"{model / 'decoder.onnx'} resolves outside the model folder")
    assert "/dev/zero" not in opened


def test_a_symlink_to_a_valid_decoder_outside_the_folder_is_refused(model, tmp_path):
    apply_setup(model, [{"move_out": "decoder.onnx"}])
    _refused(model, "decoder.onnx resolves outside the model folder")
    (model / "decoder.onnx").unlink()
    (model / "decoder.onnx").symlink_to(tmp_path / "outside" / "decoder.onnx")  # absolute, this time
    _refused(model, "decoder.onnx resolves outside the model folder")


def test_a_symlink_to_a_file_inside_the_folder_is_followed(model):
    apply_setup(model, [{"move_in": "decoder.onnx"}])
    assert (model / "decoder.onnx").is_symlink()
    assert VAE.load(model).sample(2, seed=0).shape == (2, 1, 2, 3)


def test_a_model_folder_that_is_itself_a_symlink_loads(model, tmp_path):
    (tmp_path / "link").symlink_to(model, target_is_directory=True)
    assert VAE.load(tmp_path / "link").sample(2, seed=0).shape == (2, 1, 2, 3)


def test_a_fifo_listed_in_vae_json_fails_verification_without_hanging(model, no_hang):
    apply_setup(model, [{"fifo": "encoder.onnx"}])
    problems = {key: problem for key, _, problem in verify_files(model)}
    assert problems["decoder"] is None
    assert problems["encoder"] == f"{model / 'encoder.onnx'} is not a regular file"


# -- each file's size ---------------------------------------------------------------------------------------

def test_an_entry_without_bytes_is_refused(model):
    _edit(model, lambda meta: meta["files"]["decoder"].pop("bytes"))
    _refused(model, f"{model / 'vae.json'} lists no decoder file (path, sha256 and bytes)")


def test_a_file_of_another_size_than_its_bytes_is_refused_naming_both(model):
    size = (model / "decoder.onnx").stat().st_size
    _edit(model, lambda meta: meta["files"]["decoder"].update(bytes=size + 5))
    _refused(model, f"{model / 'decoder.onnx'} has {size} bytes; vae.json says {size + 5}")


@pytest.mark.parametrize("on_disk, says", [(99, 100), (101, 100)], ids=["shrank", "grew"])
def test_a_file_that_shrank_or_grew_after_fstat_is_refused(tmp_path, monkeypatch, on_disk, says):
    (tmp_path / "f.onnx").write_bytes(bytes(on_disk))
    real_fstat = os.fstat

    def fstat_saying(fd):  # the size fstat gave before the file changed
        st = real_fstat(fd)
        return os.stat_result((*tuple(st)[:6], says, *tuple(st)[7:10]))

    monkeypatch.setattr(os, "fstat", fstat_saying)
    with pytest.raises(ModelFolderError, match=f"f.onnx has {on_disk} bytes; vae.json says {says}$"):
        runtime_folder.read_inside(tmp_path, tmp_path / "f.onnx", says)


# -- vae.json's own limits ----------------------------------------------------------------------------------

def _nested(folder: Path, depth: int) -> None:
    meta = json.loads((folder / "vae.json").read_text())
    text = json.dumps({**meta, "notes": 0})
    (folder / "vae.json").write_text(text.replace('"notes": 0', '"notes": ' + "[" * (depth - 1) + "]" * (depth - 1)))


def test_vae_json_nested_5000_deep_is_one_line(model):
    _nested(model, 5000)
    _refused(model, f"{model / 'vae.json'} is nested deeper than 32 levels")


def test_vae_json_nested_32_deep_is_read_and_33_is_refused(model):
    _nested(model, 32)
    assert read_meta(model)["notes"]
    _nested(model, 33)
    _refused(model, "nested deeper than 32 levels")


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert runtime_folder.nesting(json.dumps({"a": "[[[[", "b": '\\" {{{{', "c": [[1]]}).encode()) == 3
    assert runtime_folder.nesting(b'{"open string [[[[') == 1


def test_vae_json_of_1_mib_is_read_and_one_byte_more_is_refused(model):
    raw = (model / "vae.json").read_bytes()
    (model / "vae.json").write_bytes(raw + b" " * (runtime_folder.META_LIMIT - len(raw)))
    assert read_meta(model)["format"] == "vae-edge-onnx"
    (model / "vae.json").write_bytes(raw + b" " * (runtime_folder.META_LIMIT + 1 - len(raw)))
    _refused(model, f"{model / 'vae.json'} is larger than 1 MiB, the limit for vae.json")


# -- the bytes that run are the bytes that were checked -----------------------------------------------------

def test_each_session_is_built_from_the_checked_bytes_not_from_the_path(model, monkeypatch):
    built = []
    real = sessions.ort.InferenceSession
    monkeypatch.setattr(sessions.ort, "InferenceSession", lambda what, **kw: built.append(what) or real(what, **kw))
    vae = VAE.load(model)
    # the encoder's session is made on first use
    vae.encode(np.random.default_rng().random((2, 1, 2, 3), dtype=np.float32))
    assert built == [(model / "decoder.onnx").read_bytes(), (model / "encoder.onnx").read_bytes()]


def test_a_decoder_replaced_between_its_check_and_its_session_never_runs(model, monkeypatch):
    """The file is swapped for the encoder (a valid ONNX file) after its sha256 was checked: the session is the
    checked decoder all the same."""
    real = sessions.check_readable

    def swap_then_check(data, name):
        if name.endswith("decoder.onnx"):
            shutil.copyfile(model / "encoder.onnx", model / "decoder.onnx")
        real(data, name)

    monkeypatch.setattr(sessions, "check_readable", swap_then_check)
    assert VAE.load(model, decoder_only=True).sample(2, seed=0).shape == (2, 1, 2, 3)


# -- through the commands -----------------------------------------------------------------------------------

def test_vae_sample_on_a_folder_whose_decoder_is_a_fifo_exits_with_one_line(model, tmp_path):
    apply_setup(model, [{"fifo": "decoder.onnx"}])
    r = run_cli("vae-sample", "--model", model, "--n", "2", "--out", tmp_path / "x.png", timeout=120)
    _one_line_error(r, "decoder.onnx is not a regular file")
    assert not (tmp_path / "x.png").exists()


def test_vae_info_on_a_decoder_symlinked_to_dev_zero_exits_with_one_line(model):
    apply_setup(model, [{"symlink": "decoder.onnx", "to": "/dev/zero"}])
    result = run_cli("vae-info", "--model", model, timeout=120)
    _one_line_error(result, "decoder.onnx resolves outside the model folder")


def test_vae_info_on_vae_json_nested_5000_deep_exits_with_one_line(model):
    _nested(model, 5000)
    _one_line_error(run_cli("vae-info", "--model", model, timeout=120), "is nested deeper than 32 levels")


# -- images -------------------------------------------------------------------------------------------------

def _blank_png(path: Path, width: int, height: int) -> None:
    """A 1-bit PNG of width x height zeros: a few KB however many pixels it declares."""
    rows = zlib.compress(b"".join(b"\0" + bytes((width + 7) // 8) for _ in range(height)), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 20_000], ids=["Pillow-warns", "Pillow-refuses"])
def test_vae_encode_refuses_a_decompression_bomb_in_one_line_before_decoding_it(model, tmp_path, side):
    """100 million pixels (Pillow only warns, and would decode them) and 400 million (Pillow refuses)."""
    _blank_png(tmp_path / "bomb.png", side, side)
    r = run_cli("vae-encode", "--model", model, tmp_path / "bomb.png", "--out", tmp_path / "z.npy", "--strict",
                timeout=120)  # without --strict it is skipped, in the same line
    _one_line_error(r, f"cannot read image {tmp_path / 'bomb.png'}: Image size ({side * side} pixels) exceeds limit")
    assert not (tmp_path / "z.npy").exists()

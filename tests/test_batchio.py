"""Folders in and out: vae-encode walks folders as vae-score does and writes, beside the array, an index of which
row came from which file; vae-decode reads latents from standard input; vae-decode and vae-sample write one PNG per
row (--out-dir); commands pipe; .npy files of a count known only at the end; memory bounded whatever the count."""
import csv
import io
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import BIN, blobs, image_folder, peak_kib, run_cli, write_png_file
from vae_edge.runtime import VAE
from vae_edge.runtime.images import load_images, write_npy_rows


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "in", image_folder(tmp_path / "in")


def _index(path) -> list[str]:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    return [row[0] for row in rows]


def test_encode_walks_a_folder_in_chunks_and_names_each_row_in_the_index(tiny_export, folder, tmp_path):
    root, paths = folder
    out = tmp_path / "z.npy"
    r = run_cli("vae-encode", root, "--model", tiny_export, "--out", out, "--batch-size", 3)
    assert r.returncode == 0, r.stderr
    vae = VAE.load(tiny_export)
    np.testing.assert_array_equal(np.load(out), vae.encode(load_images(paths, vae.input_shape))[0])
    assert _index(tmp_path / "z.index.csv") == ["path", *map(str, paths)]
    assert f"wrote mu of shape (7, 3) to {out} (rows named in {tmp_path / 'z.index.csv'})" in r.stdout


def test_the_index_names_rows_as_vae_score_names_them(tiny_export, folder, tmp_path):
    root, _ = folder
    run_cli("vae-encode", root, "--model", tiny_export, "--out", tmp_path / "z.npy")
    scores = run_cli("vae-score", root, "--model", tiny_export, "--quiet").stdout
    assert _index(tmp_path / "z.index.csv") == [row[0] for row in csv.reader(io.StringIO(scores))][:8]


def test_encode_of_an_npy_names_rows_by_index(tiny_export, tmp_path):
    np.save(tmp_path / "x.npy", blobs(5))
    r = run_cli("vae-encode", tmp_path / "x.npy", "--model", tiny_export, "--out", tmp_path / "z.npy",
                "--index", tmp_path / "rows.csv")
    assert r.returncode == 0, r.stderr
    assert _index(tmp_path / "rows.csv") == ["index", "0", "1", "2", "3", "4"]
    assert not (tmp_path / "z.index.csv").exists()


def test_a_sampled_z_does_not_depend_on_the_chunking(tiny_export, tmp_path):
    x = blobs(7, seed=3)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("vae-encode", tmp_path / "x.npy", "--model", tiny_export, "--out", tmp_path / "z.npy", "--sample",
                "--seed", 5, "--batch-size", 2)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), VAE.load(tiny_export).encode(x, sample=True, seed=5))


def _stderr_on_a_terminal(*args) -> str:
    """What a command writes to stderr when stderr is a terminal (a pseudo-terminal here)."""
    import pty

    main, terminal = pty.openpty()
    try:
        r = subprocess.run([BIN / args[0], *map(str, args[1:])], stderr=terminal, stdout=subprocess.PIPE)
        os.close(terminal)
        assert r.returncode == 0
        out = b""
        while chunk := _read(main):
            out += chunk
        return out.decode()
    finally:
        os.close(main)


def _read(fd) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end closed: all read
        return b""


@pytest.mark.parametrize("quiet", [False, True])
def test_encode_shows_progress_on_a_terminal_unless_quiet(tiny_export, folder, tmp_path, quiet):
    root, _ = folder
    err = _stderr_on_a_terminal("vae-encode", root, "--model", tiny_export, "--out", tmp_path / "z.npy",
                                "--batch-size", 2, *(["--quiet"] if quiet else []))
    assert ("vae-encode: 2/7 images" in err) != quiet, err


def test_encode_glob_keeps_the_files_whose_path_below_the_folder_matches(tiny_export, folder, tmp_path):
    root, paths = folder
    run_cli("vae-encode", root, "--model", tiny_export, "--glob", "sub/*", "--out", tmp_path / "z.npy")
    assert _index(tmp_path / "z.index.csv") == ["path", *map(str, paths[4:])]


def test_encode_names_an_unreadable_file_skips_it_and_counts_it(tiny_export, folder, tmp_path):
    root, paths = folder
    (root / "sub" / "broken.png").write_bytes(b"not a png")
    r = run_cli("vae-encode", root, "--model", tiny_export, "--out", tmp_path / "z.npy")
    assert r.returncode == 0, r.stderr
    assert f"skipped: cannot read image {root / 'sub' / 'broken.png'}: " in r.stderr
    assert r.stdout.rstrip().endswith("; skipped 1 unreadable file")
    assert np.load(tmp_path / "z.npy").shape == (7, 3) and _index(tmp_path / "z.index.csv")[1:] == list(map(str, paths))


def test_encode_strict_stops_at_an_unreadable_file_and_publishes_nothing(tiny_export, folder, tmp_path):
    root, _ = folder
    (root / "sub" / "broken.png").write_bytes(b"not a png")
    r = run_cli("vae-encode", root, "--model", tiny_export, "--out", tmp_path / "z.npy", "--strict", "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "broken.png" in r.stderr and "(--strict)" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_a_failure_in_a_late_chunk_leaves_neither_the_array_nor_the_index(tiny_export, tmp_path):
    x = np.random.default_rng().random((10, 64), dtype=np.float32)
    x[8, 5] = np.nan
    np.save(tmp_path / "x.npy", x)
    r = run_cli("vae-encode", tmp_path / "x.npy", "--model", tiny_export, "--out", tmp_path / "z.npy",
                "--batch-size", 4)
    assert r.returncode == 2 and r.stderr.splitlines()[-1] == "error: x contains NaN or inf", r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_encode_piped_into_decode_gives_the_api_s_images(tiny_export, folder, tmp_path):
    root, paths = folder
    r = subprocess.run(f"'{BIN}/vae-encode' '{root}' -o - --quiet --model '{tiny_export}' | "
                       f"'{BIN}/vae-decode' - --npy '{tmp_path / 'x.npy'}' --batch-size 2 --model '{tiny_export}'",
                       shell=True, capture_output=True, text=True)
    assert r.returncode == 0 and "decoded 7 latents" in r.stdout, r.stderr
    vae = VAE.load(tiny_export)
    expected = vae.decode(vae.encode(load_images(paths, vae.input_shape))[0])
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), expected)


def test_decode_of_standard_input_refuses_latents_of_the_wrong_shape_before_any_row(tiny_export, tmp_path):
    with open(tmp_path / "z.npy", "wb") as f:  # a header of 2^62 rows, a few rows behind it
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2**62, 9)})
        f.write(np.zeros(18, np.float32).tobytes())
    with open(tmp_path / "z.npy", "rb") as f:
        r = subprocess.run([BIN / "vae-decode", "-", "--model", tiny_export, "--out-dir", tmp_path / "png"], stdin=f,
                           capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"error: z has shape {(2**62, 9)}; expected (N, 3) (latent_dim is 3)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.npy"]


def test_decode_out_dir_writes_one_png_per_row_named_by_row(tiny_export, tmp_path):
    z = np.random.default_rng().standard_normal((11, 3)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    r = run_cli("vae-decode", tmp_path / "z.npy", "--model", tiny_export, "--out-dir", tmp_path / "png",
                "--batch-size", 4)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert names == [f"{i:05d}.png" for i in range(11)] and not (tmp_path / "grid.png").exists()
    x = VAE.load(tiny_export).decode(z)
    pixels = np.clip(x * np.float32(255) + np.float32(0.5), 0, 255).astype(np.uint8)
    for i in range(11):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "png" / names[i])), pixels[i, 0])


def test_sample_out_dir_writes_the_samples_as_files_and_no_grid(tiny_export, tmp_path):
    r = run_cli("vae-sample", "--n", 3, "--model", tiny_export, "--out-dir", "s", cwd=tmp_path)
    assert r.returncode == 0 and "s/ (3 PNG files)" in r.stdout, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_an_out_dir_that_holds_files_is_refused_unless_forced(tiny_export, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "00001.png").write_bytes(b"old")
    (tmp_path / "s" / "mine.txt").write_text("kept")
    r = run_cli("vae-sample", "--n", 3, "--model", tiny_export, "--out-dir", "s", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines() == [
        "error: --out-dir s exists and is not empty; --force writes into it, replacing the files of the same names"]
    r = run_cli("vae-sample", "--n", 3, "--model", tiny_export, "--out-dir", "s", "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["00000.png", "00001.png", "00002.png", "mine.txt"]
    assert Image.open(tmp_path / "s" / "00001.png").size == (8, 8)


@pytest.mark.parametrize("kind", ["a file", "a symlink"])
def test_an_out_dir_that_is_not_a_folder_is_refused_before_any_work(tmp_path, kind):
    (tmp_path / "theirs").mkdir()
    if kind == "a file":
        (tmp_path / "s").write_text("x")
    else:
        (tmp_path / "s").symlink_to(tmp_path / "theirs")
    r = run_cli("vae-sample", "--model", tmp_path / "no-model", "--out-dir", "s", "--force", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"error: --out-dir s is {kind}, not a folder; refusing to write into it"]
    assert list((tmp_path / "theirs").iterdir()) == []


@pytest.mark.parametrize("command, args, message", [
    ("vae-sample", ["--force"], "--force writes into a folder that holds files: use it with --out-dir"),
    ("vae-encode", ["x.npy", "--index", "x.npy", "--out", "x.npy"], "--out and --index name the same file"),
    ("vae-encode", ["in", "--glob", "*.jpg"], "no images found in in (image suffixes, or --glob)"),
    ("vae-sample", ["--out-dir", "gone/s"], "--out-dir gone/s: there is no folder gone; make it first"),
])
def test_bad_options_are_one_line_errors(tiny_export, folder, command, args, message):
    root, _ = folder
    r = run_cli(command, *args, "--model", tiny_export, cwd=root.parent)
    assert r.returncode == 2 and r.stderr.splitlines()[-1] == f"error: {message}", r.stderr


def test_training_reads_an_image_folder_as_vae_encode_walks_it(folder):
    from vae_edge.train.data import load_data

    root, paths = folder
    Image.open(paths[0]).convert("RGBA").save(root / "sub" / "c.bmp")  # a suffix and a mode training took no part of
    data = load_data(str(root), image_size=8, test_fraction=0.5)
    read = load_images([*paths[:4], *paths[4:], root / "sub" / "c.bmp"], (1, 8, 8))
    taken = np.concatenate([data.train.numpy(), data.test.numpy()])
    assert len(taken) == 8 and sorted(x.tobytes() for x in taken) == sorted(x.tobytes() for x in read)


@pytest.mark.parametrize("n", [0, 7, 123457])
def test_an_npy_written_before_its_count_is_known_reads_as_np_save_s(tmp_path, n):
    x = np.random.default_rng().random((n, 3), dtype=np.float32)
    with open(tmp_path / "a.npy", "wb") as f:
        assert write_npy_rows(f, (x[i:i + 1000] for i in range(0, n, 1000)), (3,)) == n
    buf = io.BytesIO()
    np.save(buf, x)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), x)
    assert os.path.getsize(tmp_path / "a.npy") == len(buf.getvalue())


@pytest.mark.slow
def test_encode_memory_stays_bounded_whatever_the_number_of_images(tmp_path):
    """Peak memory on 20,000 images is within 6 MiB of that on 300, where holding their images takes 13 MiB more
    (tried: gathering the walk's chunks first, as vae-encode read its files before, fails here): the walk, the
    images, the rows and the index stream in chunks of --batch-size."""
    rng = np.random.default_rng()
    for n in (300, 20000):
        for i in range(n):
            write_png_file(tmp_path / str(n) / f"{i // 1000}" / f"{i}.png", rng.integers(0, 256, (1, 28, 28), np.uint8))
    small, large = (peak_kib("vae_edge.runtime.cli:encode_main", tmp_path / str(n), "--out", tmp_path / f"{n}.npy",
                             "--batch-size", 100, "--model", "fashion-mnist", "--quiet") for n in (300, 20000))
    assert np.load(tmp_path / "20000.npy", mmap_mode="r").shape[0] == 20000
    assert len(_index(tmp_path / "20000.index.csv")) == 20001
    assert large - small < 6 * 1024, (small, large)

"""vae-score: the folder walk and its rows, CSV and JSON Lines, pipes, skipped and --strict files, thresholds
calibrated and refused, and memory that stays bounded whatever the number of images."""
import csv
import io
import json
import math
import subprocess

import numpy as np
import pytest

from conftest import BIN, blobs, image_folder, peak_kib, run_cli, write_png_file
from vae_edge.runtime import VAE, RuntimeInputError
from vae_edge.runtime import threshold as thresholds


@pytest.fixture
def folder(tmp_path):
    image_folder(tmp_path / "in")
    return tmp_path / "in"


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _expected(model, paths, k: int = 1, seed: int = 0) -> np.ndarray:
    from vae_edge.runtime.images import load_images

    vae = VAE.load(model)
    return vae.score(load_images(paths, vae.input_shape), k=k, seed=seed)


def test_a_folder_is_walked_recursively_in_sorted_order_and_each_row_is_the_api_s_score(tiny_export, folder):
    r = run_cli("vae-score", folder, "--model", tiny_export, "--batch-size", "2", "--k", "3")
    assert r.returncode == 0, r.stderr
    rows = _rows(r.stdout)
    paths = [folder / f"a{i}.png" for i in range(4)] + [folder / "sub" / f"b{i}.png" for i in range(3)]
    assert [row["path"] for row in rows] == list(map(str, paths))
    np.testing.assert_array_equal([float(row["score"]) for row in rows], _expected(tiny_export, paths, k=3))
    assert "scored 7 images (nats per image, k=3, seed 0) to standard output" in r.stderr


def test_glob_keeps_the_files_whose_path_below_the_folder_matches(tiny_export, folder):
    r = run_cli("vae-score", folder, "--model", tiny_export, "--glob", "sub/*1.png")
    assert [row["path"] for row in _rows(r.stdout)] == [str(folder / "sub" / "b1.png")], r.stderr


def test_jsonl_rows_go_to_the_out_file_and_nothing_else_is_left_beside_it(tiny_export, folder, tmp_path):
    out = tmp_path / "scores.jsonl"
    r = run_cli("vae-score", folder / "sub", "--model", tiny_export, "--jsonl", "--out", out, "--bits-per-dim")
    assert r.returncode == 0 and f"to {out}" in r.stdout, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [set(row) for row in rows] == [{"path", "score"}] * 3
    paths = [folder / "sub" / f"b{i}.png" for i in range(3)]
    np.testing.assert_allclose([row["score"] for row in rows], _expected(tiny_export, paths) / (64 * math.log(2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "scores.jsonl"]


def test_an_npy_piped_in_is_scored_by_row_index_and_piped_out(tiny_export, tmp_path):
    x = blobs(5)
    np.save(tmp_path / "x.npy", x)
    buf = io.BytesIO()
    np.save(buf, x)
    r = subprocess.run([str(BIN / "vae-score"), "-", "--model", str(tiny_export), "--out", "-", "--quiet"],
                       input=buf.getvalue(), capture_output=True)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    rows = _rows(r.stdout.decode())
    assert [row["index"] for row in rows] == ["0", "1", "2", "3", "4"]
    from_file = run_cli("vae-score", tmp_path / "x.npy", "--model", tiny_export, "--quiet")
    assert from_file.stdout == r.stdout.decode()
    np.testing.assert_array_equal([float(row["score"]) for row in rows], VAE.load(tiny_export).score(x, seed=0))


def test_an_unreadable_file_is_named_skipped_and_counted(tiny_export, folder):
    (folder / "sub" / "broken.png").write_bytes(b"not a png")
    r = run_cli("vae-score", folder, "--model", tiny_export)
    assert r.returncode == 0, r.stderr
    assert len(_rows(r.stdout)) == 7
    assert f"skipped: cannot read image {folder / 'sub' / 'broken.png'}: " in r.stderr
    assert "; skipped 1 unreadable file" in r.stderr


def test_strict_stops_at_an_unreadable_file_with_exit_2_and_writes_nothing(tiny_export, folder, tmp_path):
    (folder / "sub" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "scores.csv"
    r = run_cli("vae-score", folder, "--model", tiny_export, "--strict", "--out", out)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "broken.png" in r.stderr and "(--strict)" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".scores.csv.*"))


def test_a_0_1_0_folder_is_refused_in_one_line(folder):
    from conftest import REPO

    r = run_cli("vae-score", folder, "--model", REPO / "tests" / "fixtures" / "format1-mlp")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "re-export it with vae-export" in r.stderr


def test_the_calibrated_threshold_leaves_at_most_the_rate_of_a_known_set_above_it():
    scores = np.arange(1.0, 201.0)[np.random.default_rng().permutation(200)]
    assert thresholds.calibrate(scores, 0.01) == (198.0, 2)
    assert thresholds.calibrate(scores, 0.005) == (199.0, 1)
    assert thresholds.calibrate(np.array([5.0] * 99 + [9.0]), 0.01) == (5.0, 1)


def test_fewer_images_than_one_over_the_rate_are_refused():
    assert thresholds.allowed_false_positives(100, 0.01) == 1
    with pytest.raises(RuntimeInputError, match="99 normal images are too few for a false-positive rate of 0.01: "
                                                "at least 100 are needed"):
        thresholds.allowed_false_positives(99, 0.01)


def _calibrate(model, tmp_path, *args):
    np.save(tmp_path / "normal.npy", blobs(100, seed=1))
    saved = tmp_path / "threshold.json"
    r = run_cli("vae-score", "--calibrate", tmp_path / "normal.npy", "--model", model, "--fpr", "0.02",
                "--save", saved, *args)
    assert r.returncode == 0, r.stderr
    return saved, r


def test_calibrate_saves_the_threshold_with_what_it_was_computed_on(tiny_export, tmp_path):
    saved, r = _calibrate(tiny_export, tmp_path, "--k", "2")
    t = json.loads(saved.read_text())
    scores = VAE.load(tiny_export).score(blobs(100, seed=1), k=2, seed=0)
    assert t["threshold"] == np.sort(scores)[97] and t["flagged"] == 2 and "flags 2 of 100 normal images" in r.stdout
    meta = json.loads((tiny_export / "vae.json").read_text())
    assert t["files"] == {key: meta["files"][key]["sha256"] for key in ("encoder", "decoder", "score")}
    assert (t["precision"], t["k"], t["pixel_rule"], t["images"], t["fpr"], t["units"]) == \
        ("fp32", 2, "grey levels in [0, 1]", 100, 0.02, "nats per image")


def test_a_threshold_flags_the_scores_above_it(tiny_export, tmp_path):
    saved, _ = _calibrate(tiny_export, tmp_path)
    r = run_cli("vae-score", tmp_path / "normal.npy", "--model", tiny_export, "--threshold", saved)
    rows = _rows(r.stdout)
    t = json.loads(saved.read_text())["threshold"]
    assert [row["flag"] for row in rows] == [str(int(float(row["score"]) > t)) for row in rows]
    assert sum(row["flag"] == "1" for row in rows) == 2


@pytest.mark.parametrize("args, message", [
    (["--k", "2"], "was made with k 1, these scores with 2"),
    (["--precision", "int8"], "was made with precision 'fp32', these scores with 'int8'"),
    (["--bits-per-dim"], "was made with units 'nats per image', these scores with 'bits per dimension'"),
])
def test_a_threshold_is_refused_for_another_k_precision_or_unit(tiny_export, tmp_path, args, message):
    saved, _ = _calibrate(tiny_export, tmp_path)
    r = run_cli("vae-score", tmp_path / "normal.npy", "--model", tiny_export, "--threshold", saved, *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_a_threshold_is_refused_for_another_model(tiny_export, vamp_export, tmp_path):
    saved, _ = _calibrate(tiny_export, tmp_path)
    r = run_cli("vae-score", tmp_path / "normal.npy", "--model", vamp_export, "--threshold", saved)
    assert r.returncode == 2 and "was made for another model" in r.stderr, r.stderr


@pytest.mark.parametrize("args, message", [
    (["--calibrate", "--threshold", "t.json"], "give one of them"),
    (["--save", "t.json"], "--save writes a threshold: use it with --calibrate"),
    (["--calibrate", "--fpr", "1.5"], "--fpr must be a rate between 0 and 1"),
    (["--k", "0"], "--k must be >= 1"),
    (["a.npy", "b.npy"], "not both or several .npy"),
])
def test_bad_options_are_one_line_errors(tiny_export, tmp_path, args, message):
    r = run_cli("vae-score", "x.npy", *args, "--model", tiny_export, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def _peak_kib(folder, out) -> int:
    return peak_kib("vae_edge.runtime.score_cli:score_main", folder, "--out", out, "--batch-size", 100,
                    "--model", "fashion-mnist", "--quiet")


@pytest.mark.slow
def test_memory_stays_bounded_whatever_the_number_of_images(tmp_path):
    """Peak memory on 20,000 images is within 6 MiB of that on 300, where holding the images even as uint8 would
    take 15 MiB more (tried: a run that lists its chunks first fails here): the walk, the images and the rows
    stream in chunks of --batch-size."""
    rng = np.random.default_rng()
    for n in (300, 20000):
        for i in range(n):
            write_png_file(tmp_path / str(n) / f"{i // 1000}" / f"{i}.png", rng.integers(0, 256, (1, 28, 28), np.uint8))
    small, large = (_peak_kib(tmp_path / str(n), tmp_path / f"{n}.csv") for n in (300, 20000))
    assert len((tmp_path / "20000.csv").read_text().splitlines()) == 20001
    assert large - small < 6 * 1024, (small, large)

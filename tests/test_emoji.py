"""The emoji set (train/emoji.py): Debian's Noto Color Emoji font drawn with Pillow, 64x64 RGB on white, its license
beside it; a folder vae-train reads, and a small conv VAE trains on it and exports."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import need, run_cli
from PIL import Image

from vae_edge.train import emoji
from vae_edge.train.data import load_data

INSTALLED = emoji.FONT.is_file() and emoji.NOTICE.is_file()
WHY = f"the Noto Color Emoji font is not installed ({emoji.FONT}): apt-get install fonts-noto-color-emoji"
GRINNING = 0x1F600


def _command(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vae_edge.train.emoji", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def emoji_set(tmp_path_factory):
    """The whole set, made once by the command (64x64)."""
    need(INSTALLED, WHY)
    out = tmp_path_factory.mktemp("emoji") / "emoji"
    r = _command("--out", out)
    assert r.returncode == 0, r.stderr
    return out


def _images(folder):
    return sorted(folder.glob("*.png"))


def test_the_set_is_over_a_thousand_64x64_rgb_images_without_alpha_named_by_code_point(emoji_set):
    paths = _images(emoji_set)
    assert len(paths) >= 1000
    for path in paths:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64)), path.name
    assert {int(p.stem, 16) for p in paths} <= set(emoji.code_points(emoji.FONT))
    assert all(p.name == emoji.file_name(int(p.stem, 16)) for p in paths)


def test_each_image_draws_something_and_they_differ(emoji_set):
    pixels = np.stack([np.asarray(Image.open(p)) for p in _images(emoji_set)])
    assert (pixels.reshape(len(pixels), -1) < 255).any(axis=1).all()
    assert len({p.tobytes() for p in pixels}) > 0.95 * len(pixels)


def test_a_round_emoji_sits_on_white(emoji_set):
    face = np.asarray(Image.open(emoji_set / emoji.file_name(GRINNING)))
    assert (face[[0, 0, -1, -1], [0, -1, 0, -1]] == 255).all()  # the corners, outside the face
    assert (face[32, 32] != 255).any()


def test_the_font_license_notice_sits_beside_the_images(emoji_set):
    notice = (emoji_set / emoji.LICENSE_NAME).read_bytes()
    assert notice == emoji.NOTICE.read_bytes() and b"SIL OPEN FONT LICENSE Version 1.1" in notice
    source = (emoji_set / "SOURCE.txt").read_text()
    assert f"{len(_images(emoji_set))} emoji, 64x64 RGB" in source and "SIL Open Font License 1.1" in source


def test_a_second_run_writes_the_same_bytes(emoji_set, tmp_path):
    again = emoji.make(tmp_path / "again")
    assert again == len(_images(emoji_set))
    for path in emoji_set.iterdir():
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), path.name


def test_vae_train_reads_the_folder_as_64x64_rgb(emoji_set):
    data = load_data(str(emoji_set), image_size=64, channels=3)
    assert data.shape == (3, 64, 64)
    assert len(data.train) + len(data.test) == len(_images(emoji_set))


def test_a_missing_font_is_one_line_that_names_the_package(tmp_path):
    r = _command("--out", tmp_path / "out", "--font", tmp_path / "no-such-font.ttf")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr == (f"error: the Noto Color Emoji font is not installed ({tmp_path / 'no-such-font.ttf'}): "
                        f"apt-get install fonts-noto-color-emoji\n")
    assert not (tmp_path / "out").exists()


def test_a_folder_that_holds_files_is_kept_without_force(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.png").write_bytes(b"keep")
    r = _command("--out", tmp_path / "out")
    assert (r.returncode, r.stderr) == (2, f"error: --out {tmp_path / 'out'} exists and is not empty; --force "
                                           f"replaces it\n")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.png"]


@pytest.fixture
def two_emoji(monkeypatch):
    need(INSTALLED, WHY)
    monkeypatch.setattr(emoji, "code_points", lambda font_path: [GRINNING, GRINNING + 1])


def test_force_replaces_the_folder_as_a_whole(tmp_path, two_emoji):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.png").write_bytes(b"from another run")
    assert emoji.make(tmp_path / "out", force=True) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "1f600.png", "1f601.png", "LICENSE-noto-color-emoji.txt", "SOURCE.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left beside it


def test_an_interrupted_run_leaves_nothing(tmp_path, two_emoji, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(emoji, "png_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        emoji.make(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def _killed_mid_swap(tmp_path):
    """What a run killed between the swap's renames leaves: no out, the finished set and the earlier one beside it,
    and a folder a run killed while writing left."""
    for what, text in (("new", "the finished set"), ("old", "the earlier set")):
        (tmp_path / f".out.emoji.{what}").mkdir()
        (tmp_path / f".out.emoji.{what}" / "SOURCE.txt").write_text(text)
    (tmp_path / ".out.emoji.k3x9q2ab.tmp").mkdir()


def test_the_next_run_puts_back_the_set_a_killed_swap_finished_and_clears_the_rest(tmp_path, two_emoji):
    _killed_mid_swap(tmp_path)
    with pytest.raises(emoji.EmojiError, match="--force replaces it"):  # recovered, then not replaced unasked
        emoji.make(tmp_path / "out")
    assert (tmp_path / "out" / "SOURCE.txt").read_text() == "the finished set"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_with_force_the_next_run_replaces_what_a_killed_swap_left(tmp_path, two_emoji):
    _killed_mid_swap(tmp_path)
    assert emoji.make(tmp_path / "out", force=True) == 2
    assert "2 emoji" in (tmp_path / "out" / "SOURCE.txt").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_grid_picture_is_8x8_small_and_in_colour(emoji_set, tmp_path):
    emoji.write_grid(emoji_set, tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (8 * 66 + 2, 8 * 66 + 2) and grid.mode == "P"
        assert len(np.unique(np.asarray(grid.convert("RGB")).reshape(-1, 3), axis=0)) > 64
    assert (tmp_path / "grid.png").stat().st_size < 100_000


@pytest.mark.slow
def test_a_small_conv_vae_trains_on_the_emoji_and_exports(emoji_set, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for path in _images(emoji_set)[::4][:300]:
        shutil.copy(path, few)
    r = run_cli("vae-train", "--dataset", few, "--image-size", 64, "--channels", 3, "--arch", "conv",
                "--hidden-dim", 32, "--latent-dim", 8, "--epochs", 2, "--batch-size", 32, "--device", "cpu",
                "--out-dir", tmp_path / "runs", "--name", "emoji", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first, last = (json.loads(line) for line in (tmp_path / "runs/emoji/metrics.jsonl").read_text().splitlines())
    assert np.isfinite(last["test_loss"]) and last["train_loss"] < first["train_loss"]
    e = run_cli("vae-export", tmp_path / "runs/emoji/model.pt", "--out", tmp_path / "onnx", cwd=tmp_path)
    assert e.returncode == 0, e.stderr
    from vae_edge.runtime import VAE

    images = VAE.load(tmp_path / "onnx").sample(4, seed=0)
    assert images.shape == (4, 3, 64, 64) and np.isfinite(images).all()

"""An image folder's decoded cache (train/image_cache.py) and the one rule every reader of images follows
(runtime/images.read_image): what the cache holds, when it is reused, redone or rebuilt, where it lives and how it
is cleared; transparency, non-square sizes and unreadable files."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import blobs, run_cli, write_png_file
from vae_edge.runtime.errors import RuntimeInputError
from vae_edge.runtime.images import load_images, read_image
from vae_edge.runtime.walk import files
from vae_edge.train import image_cache
from vae_edge.train.data import DataError, Mapped, image_hw, load_data

SHAPE = (3, 10, 12)


def folder_of(root, n: int, size: int = 16, seed: int = 0) -> list:
    """n RGB PNGs of random pixels, a third of them one folder down; their paths in walk order."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_png_file(root / ("sub" if i % 3 == 0 else "") / f"{i:04d}.png",
                       rng.integers(0, 256, (3, size, size), dtype=np.uint8))
    return list(files([str(root)], None))


def cached(root, cache, lines=None, **kw) -> image_cache.Cached:
    return image_cache.folder_images(root, SHAPE, "white", cache, say=(lines.append if lines is not None else
                                                                       lambda _: None), **kw)


def test_the_cache_holds_what_the_runtime_reads_in_the_walks_order(tmp_path):
    paths = folder_of(tmp_path / "imgs", 20)
    got = cached(tmp_path / "imgs", tmp_path / "cache")
    np.testing.assert_array_equal(got.images, load_images(paths, SHAPE))
    assert got.names == [p.relative_to(tmp_path / "imgs").as_posix() for p in paths]
    assert isinstance(got.images, np.memmap)


def test_worker_processes_decode_what_one_process_decodes(tmp_path):
    folder_of(tmp_path / "imgs", 2 * image_cache.BLOCK + 5)
    lines: list[str] = []
    parallel = cached(tmp_path / "imgs", tmp_path / "a", lines, workers=2)
    serial = cached(tmp_path / "imgs", tmp_path / "b", workers=1)
    np.testing.assert_array_equal(parallel.images, serial.images)
    assert "decoding 133 files into" in lines[0]


def test_a_second_run_reads_the_cache_and_decodes_nothing(tmp_path, monkeypatch):
    folder_of(tmp_path / "imgs", 8)
    first = np.array(cached(tmp_path / "imgs", tmp_path / "cache").images)
    monkeypatch.setattr(image_cache, "decode", lambda *a: pytest.fail("decoded again"))
    lines: list[str] = []
    again = cached(tmp_path / "imgs", tmp_path / "cache", lines)
    np.testing.assert_array_equal(again.images, first)
    assert len(lines) == 1 and lines[0].startswith("image cache: 8 images of ") and "from" in lines[0]


def test_a_changed_file_alone_is_decoded_again(tmp_path, monkeypatch):
    paths = folder_of(tmp_path / "imgs", 8)
    cached(tmp_path / "imgs", tmp_path / "cache")
    write_png_file(paths[5], np.random.default_rng(9).integers(0, 256, (3, 16, 16), dtype=np.uint8))
    os.utime(paths[5], ns=(1, 1))  # a time of its own, whatever the clock's resolution
    seen: list[list[str]] = []
    real = image_cache.decode
    monkeypatch.setattr(image_cache, "decode", lambda p, *a: seen.append(p) or real(p, *a))
    lines: list[str] = []
    got = cached(tmp_path / "imgs", tmp_path / "cache", lines, workers=1)
    assert seen == [[str(paths[5])]]
    assert "1 file changed, 0 added and 0 removed" in lines[0] and "the other 7 from the cache" in lines[0]
    np.testing.assert_array_equal(got.images, load_images(paths, SHAPE))


def test_added_and_removed_files_are_found_and_the_rows_follow_the_folder(tmp_path):
    paths = folder_of(tmp_path / "imgs", 8)
    cached(tmp_path / "imgs", tmp_path / "cache")
    paths[2].unlink()
    write_png_file(tmp_path / "imgs" / "0003b.png", blobs(1, size=16, channels=3)[0])
    lines: list[str] = []
    got = cached(tmp_path / "imgs", tmp_path / "cache", lines)
    now = list(files([str(tmp_path / "imgs")], None))
    assert "0 files changed, 1 added and 1 removed" in lines[0]
    np.testing.assert_array_equal(got.images, load_images(now, SHAPE))


def test_another_size_or_background_is_another_entry_and_both_stay(tmp_path):
    folder_of(tmp_path / "imgs", 4)
    a = image_cache.folder_images(tmp_path / "imgs", (3, 10, 12), "white", tmp_path / "cache")
    b = image_cache.folder_images(tmp_path / "imgs", (3, 8, 8), "white", tmp_path / "cache")
    c = image_cache.folder_images(tmp_path / "imgs", (3, 10, 12), "#808080", tmp_path / "cache")
    assert len({a.entry, b.entry, c.entry}) == 3 and len(image_cache.entries(tmp_path / "cache")) == 3


def test_a_damaged_cache_is_rebuilt_with_its_reason(tmp_path):
    paths = folder_of(tmp_path / "imgs", 6)
    entry = cached(tmp_path / "imgs", tmp_path / "cache").entry
    with open(entry / "images.npy", "r+b") as f:
        f.truncate(200)
    lines: list[str] = []
    got = cached(tmp_path / "imgs", tmp_path / "cache", lines)
    assert lines[0].startswith(f"image cache: the cache in {entry} is unreadable (") and "decoding 6 files" in lines[0]
    np.testing.assert_array_equal(got.images, load_images(paths, SHAPE))


def test_a_cache_of_another_decoding_version_is_rebuilt(tmp_path):
    folder_of(tmp_path / "imgs", 3)
    entry = cached(tmp_path / "imgs", tmp_path / "cache").entry
    index = json.loads((entry / "index.json").read_text())
    index["preprocessing"]["version"] = image_cache.VERSION - 1
    (entry / "index.json").write_text(json.dumps(index))
    lines: list[str] = []
    cached(tmp_path / "imgs", tmp_path / "cache", lines)
    assert "made by another version of the decoding; decoding 3 files" in lines[0]


def test_an_interrupted_decode_leaves_the_old_entry_or_nothing(tmp_path, monkeypatch):
    paths = folder_of(tmp_path / "imgs", 6)

    def interrupted(p, *a):
        raise KeyboardInterrupt

    monkeypatch.setattr(image_cache, "decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached(tmp_path / "imgs", tmp_path / "cache")
    (entry,) = image_cache.entries(tmp_path / "cache")
    assert sorted(p.name for p in entry.iterdir()) == ["lock"]
    monkeypatch.undo()
    before = np.array(cached(tmp_path / "imgs", tmp_path / "cache").images)
    os.utime(paths[0], ns=(1, 1))
    monkeypatch.setattr(image_cache, "decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached(tmp_path / "imgs", tmp_path / "cache")
    assert sorted(p.name for p in entry.iterdir()) == ["images.npy", "index.json", "lock"]
    np.testing.assert_array_equal(np.load(entry / "images.npy"), before)


def test_unreadable_files_are_named_skipped_and_counted_or_stop_a_strict_run(tmp_path):
    paths = folder_of(tmp_path / "imgs", 5)
    for name in ("bad1.png", "bad2.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"not an image")
    lines: list[str] = []
    got = cached(tmp_path / "imgs", tmp_path / "cache", lines)
    assert len(got.images) == 5 and len(got.skipped) == 2
    assert lines[-1].startswith("skipped 2 unreadable files: cannot read image ") and "bad1.png" in lines[-1]
    again: list[str] = []
    cached(tmp_path / "imgs", tmp_path / "cache", again)  # named again from the index, not decoded again
    assert again[-1] == lines[-1]
    with pytest.raises(RuntimeInputError, match=r"bad1.png.*\(--strict\)$"):
        cached(tmp_path / "imgs", tmp_path / "cache", strict=True)
    with pytest.raises(RuntimeInputError, match=r"\(--strict\)$"):
        cached(tmp_path / "imgs", tmp_path / "fresh", strict=True)
    assert not (image_cache.entries(tmp_path / "fresh")[0] / "images.npy").exists()
    assert got.names == [p.relative_to(tmp_path / "imgs").as_posix() for p in paths]


def test_transparent_pixels_are_composited_onto_the_background(tmp_path):
    from PIL import Image

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 10, 10, 0)  # fully transparent: the background alone
    rgba[0, 1] = (200, 10, 10, 255)  # opaque: its own colour
    rgba[1, 0] = (0, 0, 0, 128)  # half: between black and the background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    white = read_image(tmp_path / "a.png", (3, 2, 2), (255, 255, 255))
    grey = read_image(tmp_path / "a.png", (3, 2, 2), (128, 128, 128))
    assert tuple(white[:, 0, 0]) == (255, 255, 255) and tuple(grey[:, 0, 0]) == (128, 128, 128)
    assert tuple(white[:, 0, 1]) == (200, 10, 10)
    assert 120 <= white[0, 1, 0] <= 135
    assert tuple(read_image(tmp_path / "a.png", (4, 2, 2), (255, 255, 255))[:, 0, 0]) == (200, 10, 10, 0)


def test_a_palette_image_with_a_transparent_colour_is_composited_too(tmp_path):
    from PIL import Image

    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 250, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "p.png", transparency=0)
    assert read_image(tmp_path / "p.png", (1, 1, 2), (255, 255, 255))[0].tolist() == [[255, 75]]


def test_training_and_the_runtime_read_a_transparent_folder_alike(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (9, 7, 4), dtype=np.uint8), "RGBA").save(tmp_path / f"{i}.png")
    data = load_data(str(tmp_path), image_size="10x12", channels=3, test_fraction=0.5, background="#102030")
    read = load_images(sorted(tmp_path.glob("*.png")), (3, 10, 12), "#102030")
    taken = np.concatenate([data.train.numpy(), data.test.numpy()])
    assert sorted(x.tobytes() for x in taken) == sorted(x.tobytes() for x in read)


@pytest.mark.parametrize("size,hw", [(28, (28, 28)), ("32", (32, 32)), ("64x48", (64, 48)), (" 8X4", (8, 4))])
def test_image_size_is_n_or_h_by_w(size, hw):
    assert image_hw(size) == hw


@pytest.mark.parametrize("size", ["0", "64x", "x64", "64x48x3", "-4", "big"])
def test_a_bad_image_size_is_refused_in_one_line(size):
    with pytest.raises(DataError, match=r"--image-size takes N or HxW"):
        image_hw(size)


def test_a_non_square_size_stretches_every_image_to_h_by_w(tmp_path):
    folder_of(tmp_path / "imgs", 4, size=16)
    data = load_data(str(tmp_path / "imgs"), image_size="6x10", channels=3, test_fraction=0.25)
    assert tuple(data.train.shape) == (3, 3, 6, 10) and tuple(data.test.shape) == (1, 3, 6, 10)


def test_a_folder_s_train_split_can_stay_mapped_on_the_cache(tmp_path):
    folder_of(tmp_path / "imgs", 10)
    mapped = load_data(str(tmp_path / "imgs"), image_size=8, channels=3, test_fraction=0.2, keep_mapped=True)
    whole = load_data(str(tmp_path / "imgs"), image_size=8, channels=3, test_fraction=0.2)
    assert isinstance(mapped.train, Mapped) and isinstance(mapped.train.array, np.memmap)
    assert mapped.train.shape == (8, 3, 8, 8) and mapped.train.nbytes == 8 * 3 * 64
    np.testing.assert_array_equal(mapped.train.tensor().numpy(), whole.train.numpy())
    import torch

    idx = torch.tensor([5, 0, 7])
    np.testing.assert_array_equal(mapped.train.take(idx).numpy(), whole.train[idx].numpy())


def test_the_cache_folder_is_the_option_then_the_environment_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_EDGE_CACHE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert image_cache.cache_root(tmp_path / "opt") == tmp_path / "opt"
    assert image_cache.cache_root() == tmp_path / "env"
    monkeypatch.delenv("VAE_EDGE_CACHE_DIR")
    assert image_cache.cache_root() == tmp_path / "xdg" / "vae-edge" / "images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert image_cache.cache_root() == tmp_path / "home" / ".cache" / "vae-edge" / "images"


def test_clear_cache_removes_the_entries_and_nothing_else(tmp_path):
    folder_of(tmp_path / "imgs", 3)
    cached(tmp_path / "imgs", tmp_path / "cache")
    image_cache.folder_images(tmp_path / "imgs", (1, 4, 4), "white", tmp_path / "cache")
    (tmp_path / "cache" / "mine.txt").write_text("not the cache's")
    r = run_cli("vae-train", "--clear-cache", "--cache-dir", tmp_path / "cache")
    assert r.returncode == 0 and r.stdout.startswith("removed 2 image caches (")
    assert r.stdout.rstrip().endswith(f"MB) from {tmp_path / 'cache'}")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["mine.txt"]


def test_vae_train_decodes_on_its_first_run_and_not_on_its_second(tmp_path):
    folder_of(tmp_path / "imgs", 40, size=8)
    runs = []
    for name in ("a", "b"):
        r = run_cli("vae-train", "--dataset", tmp_path / "imgs", "--image-size", 8, "--channels", 3, "--epochs", 1,
                    "--hidden-dim", 16, "--latent-dim", 2, "--batch-size", 16, "--cache-dir", tmp_path / "cache",
                    "--out-dir", tmp_path / "runs", "--name", name)
        assert r.returncode == 0, r.stderr
        runs.append(r.stdout)
    first, second = ([line for line in out.splitlines() if line.startswith(("time:", "image cache:"))] for out in runs)
    assert "decoding 40 files into" in first[0] and "decoding images" in first[-1]
    assert "40 images of" in second[0] and "decoding" not in second[-1]


def test_the_runtime_composites_onto_the_background_its_model_was_trained_with(tmp_path):
    from PIL import Image

    from vae_edge.runtime.folder import recipe_background
    from vae_edge.runtime.walk import Walk

    rng = np.random.default_rng(2)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (6, 6, 4), dtype=np.uint8), "RGBA").save(tmp_path / f"{i}.png")
    meta = {"recipe": {"background": "#102030"}}
    assert recipe_background(meta) == "#102030" and recipe_background({"recipe": None}) == "white"
    walked = Walk([str(tmp_path)], None, (3, 6, 6), 2, False, True, "vae-encode", recipe_background(meta))
    taken = np.concatenate([x for _, x in walked.chunks])
    np.testing.assert_array_equal(taken, load_images(sorted(tmp_path.glob("*.png")), (3, 6, 6), "#102030"))
    assert not np.array_equal(taken, load_images(sorted(tmp_path.glob("*.png")), (3, 6, 6)))


def test_a_bad_background_is_refused_in_one_line(tmp_path):
    folder_of(tmp_path / "imgs", 2)
    with pytest.raises(DataError, match=r"a background is white, black or #RRGGBB \(as #808080\), got 'grey'"):
        load_data(str(tmp_path / "imgs"), background="grey")


def test_a_folder_without_images_is_refused_and_leaves_no_entry(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"no images in .*imgs \(files ending in \.png, "):
        load_data(str(tmp_path / "imgs"), cache_dir=str(tmp_path / "cache"))
    assert image_cache.entries(tmp_path / "cache") == []

"""The one atomic write (runtime/outputs.py): what an interrupted, failed or killed write leaves, and what it never
replaces."""
import os

import numpy as np
import pytest

from vae_edge.runtime import RuntimeInputError
from vae_edge.runtime.images import save_grid_and_npy, save_npy, save_npy_chunks
from vae_edge.runtime.outputs import atomic_file, atomic_files, check_output


def test_keyboard_interrupt_during_a_write_leaves_no_temporary_file(tmp_path):
    def chunks():
        yield np.ones((5, 3), np.float32)
        raise KeyboardInterrupt  # Ctrl-C half way through a streamed .npy
    with pytest.raises(KeyboardInterrupt):
        save_npy_chunks(chunks(), tmp_path / "a.npy", (10, 3))
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_during_a_write_keeps_the_earlier_file(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"earlier")
    with pytest.raises(KeyboardInterrupt), atomic_file(tmp_path / "a.bin") as f:
        f.write(b"half of the new")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"earlier"


def test_the_next_write_to_a_path_removes_what_a_killed_write_left_beside_it(tmp_path):
    (tmp_path / ".a.npy.0123456789ab.tmp").write_bytes(b"half of a killed write")
    kept = [".a.npy.notes.tmp", ".b.npy.0123456789ab.tmp", "a.npy.0123456789ab.tmp"]  # not a leftover of a.npy
    for name in kept:
        (tmp_path / name).write_bytes(b"someone's")
    save_npy(np.ones(3, np.float32), tmp_path / "a.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "a.npy"])


def test_a_write_is_fsynced_before_the_rename_and_the_folder_after(monkeypatch, tmp_path):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", None)) or real_replace(a, b))
    save_npy(np.ones(3, np.float32), tmp_path / "a.npy")
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]


def test_a_failed_write_names_the_file_and_leaves_nothing(monkeypatch, tmp_path):
    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        save_npy(np.ones(3, np.float32), tmp_path / "a.npy")
    assert e.value.filename == str(tmp_path / "a.npy") and e.value.strerror == "No space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make", ["fifo", "symlink", "folder"])
def test_a_write_never_replaces_anything_but_a_regular_file(tmp_path, make):
    path, target = tmp_path / "out.npy", tmp_path / "target.npy"
    target.write_bytes(b"theirs")
    {"fifo": lambda: os.mkfifo(path), "symlink": lambda: path.symlink_to(target), "folder": path.mkdir}[make]()
    with pytest.raises(RuntimeInputError, match="not a regular file; refusing to replace it"):
        save_npy(np.ones(3, np.float32), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "target.npy"]
    assert os.path.islink(path) == (make == "symlink") and target.read_bytes() == b"theirs"


def test_check_output_refuses_a_missing_folder_in_one_line(tmp_path):
    with pytest.raises(RuntimeInputError, match=r"^--out \S+/gone/a.npy: there is no folder \S+/gone; make it first$"):
        check_output(tmp_path / "gone" / "a.npy", "--out")
    assert list(tmp_path.iterdir()) == []


# -- the grid and its .npy, published as a pair ------------------------------------------------------

def earlier_pair(tmp_path):
    png, npy = tmp_path / "s.png", tmp_path / "s.npy"
    png.write_bytes(b"earlier grid")
    npy.write_bytes(b"earlier array")
    return png, npy


@pytest.mark.parametrize("killed_at", [1, 2])
def test_a_kill_between_the_renames_of_a_pair_never_leaves_one_from_another_run(monkeypatch, tmp_path, killed_at):
    """The earlier .npy goes before the new grid comes in: whatever the moment, no grid sits beside an array
    that another run wrote (here the kill is a BaseException at the Nth rename: what it leaves at the paths is
    what a SIGKILL at that moment would, less the temporary files, which the exception removes)."""
    png, npy = earlier_pair(tmp_path)
    real_replace, calls = os.replace, []

    def killed(src, dst):
        calls.append(dst)
        if len(calls) == killed_at:
            raise SystemExit("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    images = np.random.default_rng().random((4, 1, 6, 6), dtype=np.float32)
    with pytest.raises(SystemExit):
        save_grid_and_npy(images, png, npy)
    assert not npy.exists()  # never the earlier array beside either grid
    assert (png.read_bytes() == b"earlier grid") == (killed_at == 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png"]


def test_a_pair_replaces_both_files_of_an_earlier_pair(tmp_path):
    png, npy = earlier_pair(tmp_path)
    images = np.random.default_rng().random((4, 1, 6, 6), dtype=np.float32)
    save_grid_and_npy(images, png, npy)
    np.testing.assert_array_equal(np.load(npy), images)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "s.npy", "s.png"]


def test_several_files_are_written_each_to_its_own_path(tmp_path):
    with atomic_files(tmp_path / "a", tmp_path / "b") as (a, b):
        a.write(b"A")
        b.write(b"B")
    assert (tmp_path / "a").read_bytes() == b"A" and (tmp_path / "b").read_bytes() == b"B"

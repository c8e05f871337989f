"""vae-train --classes / --exclude-classes: a labelled data set cut to some classes in both splits, recorded in the
run's config and the export's recipe, so that an anomaly set-up (train on normal classes, score the rest) repeats."""
import json

import pytest

from conftest import run_cli
from vae_edge.train.data import DataError, load_data, parse_classes, select_classes


def test_exclude_classes_drops_them_from_both_splits(fashion_mnist):
    data = select_classes(load_data("fashion-mnist", str(fashion_mnist), download=False), None, [0, 3])
    assert sorted(set(data.train_labels.tolist())) == sorted(set(data.test_labels.tolist())) == [1, 2, 4, 5, 6, 7, 8, 9]
    assert (len(data.train), len(data.test)) == (48000, 8000) == (len(data.train_labels), len(data.test_labels))


def test_classes_keeps_only_them(fashion_mnist):
    data = select_classes(load_data("fashion-mnist", str(fashion_mnist), download=False), [7], None)
    assert set(data.train_labels.tolist()) == {7} and len(data.test) == 1000


@pytest.mark.parametrize("classes, exclude, message", [
    ([12], None, "has no class 12; its classes are 0 to 9"),
    ([1], [1], "leave no class to train on"),
])
def test_classes_that_leave_nothing_or_do_not_exist_are_refused(fashion_mnist, classes, exclude, message):
    with pytest.raises(DataError, match=message):
        select_classes(load_data("fashion-mnist", str(fashion_mnist), download=False), classes, exclude)


def test_class_lists_are_numbers_separated_by_commas():
    assert parse_classes("3,0,3", "--classes") == [0, 3] and parse_classes(None, "--classes") is None
    with pytest.raises(DataError, match="--exclude-classes takes class numbers separated by commas"):
        parse_classes("shirts", "--exclude-classes")


def test_an_unlabelled_data_set_refuses_classes_in_one_line(tiny_npy, tmp_path):
    r = run_cli("vae-train", "--dataset", tiny_npy, "--exclude-classes", "0", "--out-dir", tmp_path, "--epochs", 1)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "need a labelled data set" in r.stderr, r.stderr


@pytest.mark.slow
def test_the_classes_are_recorded_in_the_run_and_the_export_s_recipe(fashion_mnist, tmp_path):
    r = run_cli("vae-train", "--dataset", "fashion-mnist", "--data-dir", fashion_mnist, "--exclude-classes", "3,0",
                "--hidden-dim", 16, "--latent-dim", 2, "--epochs", 1, "--batch-size", 512, "--device", "cpu",
                "--out-dir", tmp_path / "runs", "--name", "normal", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    e = run_cli("vae-export", tmp_path / "runs" / "normal" / "model.pt", "--out", tmp_path / "onnx", cwd=tmp_path)
    assert e.returncode == 0, e.stderr
    recipe = json.loads((tmp_path / "onnx" / "vae.json").read_text())["recipe"]
    assert (recipe["exclude_classes"], recipe["classes"]) == ([0, 3], None)

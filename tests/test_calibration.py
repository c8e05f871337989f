"""Calibration data for int8 is what the user gave or what is already on this machine: an export never downloads."""
from __future__ import annotations

import pytest
import torch

from vae_edge.export import export_model
from vae_edge.export.calibration import calibration
from vae_edge.train.data import DataError, load_data
from vae_edge.train.model import VAE


@pytest.fixture
def no_download(monkeypatch):
    """torchvision's dataset classes replaced by one that records the call: nothing can reach the network."""
    import torchvision.datasets

    calls = []

    def refuse(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError("a download was attempted")

    for cls in ("MNIST", "FashionMNIST", "KMNIST"):
        monkeypatch.setattr(torchvision.datasets, cls, refuse)
    return calls


def test_the_loader_without_download_refuses_a_missing_named_dataset_in_one_line(tmp_path, no_download):
    with pytest.raises(DataError) as e:
        load_data("mnist", str(tmp_path), download=False)
    assert "mnist is not on this machine" in str(e.value) and str(tmp_path) in str(e.value)
    assert "\n" not in str(e.value)
    assert no_download == [] and list(tmp_path.iterdir()) == []


def test_a_recipe_whose_dataset_is_missing_calibrates_on_random_inputs_and_says_so_in_one_line(tmp_path, no_download):
    said = []
    recipe = {"dataset": "mnist", "data_dir": str(tmp_path / "data")}
    data = calibration(VAE("mlp", (1, 28, 28), 32, 4), None, recipe, said.append)
    assert no_download == [] and not (tmp_path / "data").exists()
    assert len(data.x) == 0 and data.source.startswith("random inputs")
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith("note: int8 measured on random inputs") and "mnist is not on this machine" in said[0]


def test_an_int8_export_of_a_model_trained_on_missing_data_downloads_nothing(tmp_path, no_download, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe's data_dir is relative: ./data
    torch.manual_seed(0)
    said = []
    facts = {"dataset": "kmnist", "recipe": {"dataset": "kmnist", "data_dir": "data"}}
    info = export_model(VAE("mlp", (1, 28, 28), 32, 4), tmp_path / "out", facts=facts, quantize="int8",
                        force_int8=True, say=said.append)
    assert no_download == [] and not (tmp_path / "data").exists()
    assert info["int8"]["calibration"].startswith("random inputs")
    notes = [line for line in said if "random inputs" in line]
    assert len(notes) == 1 and "kmnist is not on this machine" in notes[0]


def test_a_recipe_whose_data_is_here_calibrates_on_it(tmp_path, no_download):
    import numpy as np

    from conftest import blobs

    np.save(tmp_path / "images.npy", blobs(64, size=8))
    said = []
    data = calibration(VAE("mlp", (1, 8, 8), 16, 3), 20, {"dataset": str(tmp_path / "images.npy")}, said.append)
    assert said == [] and no_download == []
    assert len(data.x) == 20 and "training images of" in data.source

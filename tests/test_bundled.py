"""The model bundled in the package: found when no model is named, intact, and as good as its vae.json says."""
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from vae_edge.runtime import VAE, ModelFolderError, bundled, verify_files

FOLDER = REPO / "runtime" / "models" / bundled.DEFAULT


def test_the_package_bundles_the_default_model_as_a_vae_export_folder():
    assert bundled.names()[0] == "fashion-mnist" and FOLDER.is_dir()
    meta = json.loads((FOLDER / "vae.json").read_text())
    assert {"encoder", "decoder", "encoder_int8", "decoder_int8"} <= set(meta["files"])
    assert meta["dataset"] == "fashion-mnist" and meta["onnx"]["min_onnxruntime"] == "1.12"


def test_every_bundled_file_matches_its_sha256():
    checks = verify_files(FOLDER)
    assert checks and all(problem is None for _, _, problem in checks), checks


# Options that decide how the data is read, not what is learned, and that a recipe does not record: the image
# cache's (mapped and in-memory training end with the same weights: test_image_cache.py).
HOW_DATA_IS_READ = {"cache_dir", "clear_cache", "strict"}


def test_vae_json_records_the_recipe_that_make_model_trains():
    """Every training option as `vae-train $(MODEL_RECIPE)` sets it: the Makefile's flags, and vae-train's defaults
    for the rest, so that changing a default that MODEL_RECIPE does not name cannot go unnoticed."""
    import typer.main

    from vae_edge.train.cli import train_app

    recipe = json.loads((FOLDER / "vae.json").read_text())["recipe"]
    makefile = (REPO / "Makefile").read_text()
    options = re.search(r"^MODEL_RECIPE := (.*)$", makefile, re.M)[1].split()
    params = typer.main.get_command(train_app).make_context("vae-train", options).params
    params = {k: v for k, v in params.items() if k not in ("out_dir", "name", "resume", "force")}
    assert set(recipe) - {"input_shape"} <= set(params), "the recipe holds an option vae-train no longer has"
    for key, value in params.items():
        if key in HOW_DATA_IS_READ and key not in recipe:
            continue
        assert key in recipe, f"--{key.replace('_', '-')} is in no recipe: retrain (make model)"
        if key == "image_size" and value.isdigit():  # N or HxW on the command line; Config keeps N as a number
            value = int(value)
        assert recipe[key] == value, (key, recipe[key], value)


def test_no_model_named_and_no_vae_onnx_here_means_the_bundled_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    vae = VAE.load()
    assert vae.bundled == "fashion-mnist" and vae.folder == FOLDER
    assert vae.sample(4, seed=0).shape == (4, *vae.input_shape)


def test_a_bundled_model_can_be_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert VAE.load("fashion-mnist", precision="int8").bundled == "fashion-mnist"


def test_a_vae_onnx_folder_here_wins_over_the_bundled_model(tmp_path, monkeypatch):
    shutil.copytree(FOLDER, tmp_path / "vae-onnx")
    monkeypatch.chdir(tmp_path)
    vae = VAE.load()
    assert vae.bundled is None and vae.folder == Path("vae-onnx")


def test_a_broken_vae_onnx_here_is_an_error_not_a_silent_fallback(tmp_path, monkeypatch):
    (tmp_path / "vae-onnx").mkdir()
    (tmp_path / "vae-onnx" / "vae.json").write_text("{not json")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFolderError, match=r"^vae-onnx/vae.json is not readable JSON"):
        VAE.load()


def test_an_unknown_bundled_name_lists_the_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFolderError, match="no model folder or bundled model named 'mnist'; bundled models: "
                                               "fashion-mnist"):
        VAE.load("mnist")


def test_vae_sample_with_no_options_in_an_empty_folder_uses_the_bundled_model_and_says_so(tmp_path):
    from conftest import run_cli
    r = run_cli("vae-sample", "--n", "16", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["using the bundled model fashion-mnist (vae-info --list; --model FOLDER for "
                                     "your own)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.png"]


def test_vae_info_lists_the_bundled_models_with_metrics_and_sizes(tmp_path):
    from conftest import run_cli
    r = run_cli("vae-info", "--list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("fashion-mnist (default): conv VAE, 1x28x28 images") and "test_loss" in r.stdout
    assert "decoder.onnx" in r.stdout and "MiB" in r.stdout


def test_the_recorded_test_loss_is_what_the_bundled_files_give_on_the_test_set(fashion_mnist):
    """Re-evaluate the negative ELBO with the runtime alone, one z per image, within 0.5 nats of vae.json: score.onnx's
    log-weight at one sample is log p(x|z) + log p(z) - log q(z|x), the ELBO's one-z estimate that training's test
    figure is too (a VampPrior's KL has no closed form)."""
    import gzip
    meta = json.loads((FOLDER / "vae.json").read_text())
    with gzip.open(fashion_mnist / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float64) / 255
    assert meta["recipe"]["binarize"] and meta["prior"]["name"] == "vamp"
    x = (np.random.default_rng(0).random(x.shape) < x).astype(np.float32)
    loss = -float(VAE.load(FOLDER).log_likelihood(x, k=1, seed=1).mean())
    assert abs(loss - meta["metrics"]["test_loss"]) <= 0.5, (loss, meta["metrics"]["test_loss"])


# -- the wheel ---------------------------------------------------------------------------------------------

PUBLISHED_GAUSSIAN_VAE = 228.70  # Norouzi et al. 2020, Table 1: the NLL the bundled model must beat


def test_the_bundled_model_records_its_nll_at_k_5000_ahead_of_the_published_vae():
    """make model-score records the whole test set's figure (48 minutes here); until a session has run it after a
    new model, the first 500 images' figure stands, recorded as that (vae-eval --record --limit 500)."""
    iwae = json.loads((FOLDER / "vae.json").read_text())["metrics"]["iwae"]
    assert iwae["k"] == 5000 and iwae["split"] == "test" and "score.onnx" in iwae["route"]
    assert iwae["test_images"] == 10_000 and iwae["images"] in (500, 10_000) and iwae["subset"]["images"] == 500
    assert iwae["nll"] <= PUBLISHED_GAUSSIAN_VAE


@pytest.mark.slow
def test_the_recorded_nll_holds_on_the_first_500_test_images_recomputed_from_the_files(fashion_mnist):
    """vae.json's metrics.iwae (make model-score: vae-eval FOLDER --iwae-k 5000 --record, whole test set; or its
    first 500 images alone) keeps its first 500 images' mean apart. Those images at k = 1000 from the bundled files,
    on fresh noise, must sit within a nat of it: the two differ only by k and the noise (tenths of a nat), while a
    changed file or a mis-recorded figure moves it by more."""
    from vae_edge.export import score

    subset = json.loads((FOLDER / "vae.json").read_text())["metrics"]["iwae"]["subset"]
    x = score.test_pixels(FOLDER)[:subset["images"]]
    seed = int(np.random.default_rng().integers(2**32))
    nll = -score.log_likelihoods(VAE.load(FOLDER), x, 1000, seed=seed, show_progress=False).mean()
    assert abs(nll - subset["nll"]) <= 1.0, (nll, subset, seed)


WHEEL_LIMIT = 15 * 2**20


def _model_files() -> set[str]:
    meta = json.loads((FOLDER / "vae.json").read_text())
    return {"vae.json", *(f["path"] for f in meta["files"].values())}


@pytest.mark.slow
def test_the_wheel_and_the_sdist_carry_the_bundled_model(dist):
    wheel, sdist = next(dist.glob("*.whl")), next(dist.glob("*.tar.gz"))
    assert wheel.stat().st_size < WHEEL_LIMIT
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"vae_edge/runtime/models/fashion-mnist/{f}" for f in _model_files()} <= names
    assert not any(n.startswith("vae_edge/train/") and n.endswith(".pt") for n in names)
    import tarfile
    members = {m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
    assert {f"runtime/models/fashion-mnist/{f}" for f in _model_files()} <= members


@pytest.mark.slow
def test_a_fresh_venv_from_the_wheel_samples_the_bundled_model_with_no_options(base_install, tmp_path):
    """pip install vae-edge && vae-sample --n 64, in an empty folder, on a machine without torch."""
    bin_dir, env = base_install
    assert subprocess.run([bin_dir / "python", "-c", "import torch"], capture_output=True).returncode != 0
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([bin_dir / "vae-sample", "--n", "64"], cwd=empty, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "bundled model fashion-mnist" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in empty.iterdir()) == ["samples.png"]
    from PIL import Image
    grid = np.asarray(Image.open(empty / "samples.png"))
    assert grid.shape == (242, 242)
    tiles = [grid[2 + 30 * i:30 * i + 30, 2 + 30 * j:30 * j + 30] for i in range(8) for j in range(8)]
    assert all(t.shape == (28, 28) and t.std() > 10 for t in tiles)  # 64 pictures, none blank
    assert len({t.tobytes() for t in tiles}) == 64  # and no two alike
    listing = subprocess.run([bin_dir / "vae-info", "--list"], cwd=empty, capture_output=True, text=True,
                             env=env)
    assert listing.returncode == 0 and "fashion-mnist" in listing.stdout, listing.stderr

"""`vae-eval FOLDER`: an exported folder's log-likelihood from its own files (score.onnx), recorded in its vae.json
with how it was computed, and printed by vae-info (export/score.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, run_cli
from vae_edge.runtime import VAE
from vae_edge.export import score


@pytest.fixture(scope="module")
def vamp_folder(tmp_path_factory):
    """A VampPrior model trained one epoch on 96 8x8 images (an .npy, so its recipe names its data), exported."""
    from conftest import blobs
    from vae_edge.export import export_checkpoint
    from vae_edge.train.config import Config
    from vae_edge.train.train import train

    root = tmp_path_factory.mktemp("vamp-run")
    np.save(root / "tiny.npy", blobs())
    train(Config(dataset=str(root / "tiny.npy"), prior="vamp", prior_components=5, binarize=True, hidden_dim=32,
                 latent_dim=4, epochs=1, out_dir=str(root), name="v"), quiet=True)
    export_checkpoint(root / "v/model.pt", root / "onnx")
    return root


def test_vae_eval_records_a_folders_nll_and_how_it_was_computed(vamp_folder, tmp_path):
    import shutil

    folder = tmp_path / "onnx"
    shutil.copytree(vamp_folder / "onnx", folder)
    r = run_cli("vae-eval", folder, "--iwae-k", 30, "--record", cwd=vamp_folder)
    assert r.returncode == 0, r.stderr
    iwae = json.loads((folder / "vae.json").read_text())["metrics"]["iwae"]
    x = score.test_pixels(folder)
    expected = -score.log_likelihoods(VAE.load(folder), x, 30, show_progress=False).mean()
    assert iwae["k"] == 30 and iwae["images"] == iwae["test_images"] == len(x) and iwae["split"] == "test"
    assert "score.onnx" in iwae["route"]
    assert iwae["nll"] == pytest.approx(expected, abs=1e-9) and iwae["subset"]["nll"] == pytest.approx(expected)
    assert iwae["cpu"] and iwae["seconds"] >= 0


def test_record_with_limit_records_the_first_images_figure_as_that(vamp_folder, tmp_path):
    import shutil

    folder = tmp_path / "onnx"
    shutil.copytree(vamp_folder / "onnx", folder)
    r = run_cli("vae-eval", folder, "--iwae-k", 10, "--record", "--limit", 3, cwd=vamp_folder)
    assert r.returncode == 0 and "the first 3 test images" in r.stdout, r.stderr
    iwae = json.loads((folder / "vae.json").read_text())["metrics"]["iwae"]
    x = score.test_pixels(folder)
    assert (iwae["images"], iwae["test_images"]) == (3, len(x)) and len(x) > 3
    expected = -score.log_likelihoods(VAE.load(folder), x[:3], 10, show_progress=False).mean()
    assert iwae["nll"] == pytest.approx(expected, abs=1e-9)
    assert f"the first 3 of {len(x)} test images" in run_cli("vae-info", "--model", folder).stdout


def test_vae_info_prints_the_recorded_nll(vamp_folder, tmp_path):
    import shutil

    folder = tmp_path / "onnx"
    shutil.copytree(vamp_folder / "onnx", folder)
    assert "nll:      not recorded" in run_cli("vae-info", "--model", folder).stdout
    assert run_cli("vae-eval", folder, "--iwae-k", 10, "--record", cwd=vamp_folder).returncode == 0
    nll = json.loads((folder / "vae.json").read_text())["metrics"]["iwae"]["nll"]
    r = run_cli("vae-info", "--model", folder)
    assert r.returncode == 0 and f"nll:      {nll:.2f} nats" in r.stdout and "IWAE k=10" in r.stdout


def test_an_images_figure_depends_on_its_batch_alone_so_a_subset_scores_as_in_the_full_run(vamp_folder, monkeypatch):
    monkeypatch.setattr(score, "BATCH", 2)
    vae, x = VAE.load(vamp_folder / "onnx"), score.test_pixels(vamp_folder / "onnx")
    assert len(x) > 4
    full = score.log_likelihoods(vae, x, 20, show_progress=False)
    np.testing.assert_array_equal(score.log_likelihoods(vae, x[:4], 20, show_progress=False), full[:4])
    assert not np.array_equal(score.log_likelihoods(vae, x[:4], 20, seed=1, show_progress=False), full[:4])


def test_the_iwae_of_a_folder_sits_above_its_elbo(vamp_folder):
    vae, x = VAE.load(vamp_folder / "onnx"), score.test_pixels(vamp_folder / "onnx")
    iwae = score.log_likelihoods(vae, x, 200, show_progress=False)
    elbo = score.log_likelihoods(vae, x, 1, show_progress=False)  # one sample: a draw of the ELBO
    assert iwae.mean() > elbo.mean()


@pytest.mark.parametrize("args, message", [
    (["--iwae-k", "0"], "--iwae-k must be 1 or more"),
])
def test_bad_options_for_a_folder_are_one_line_errors(vamp_folder, args, message):
    r = run_cli("vae-eval", vamp_folder / "onnx", *args, cwd=vamp_folder)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_a_0_1_0_folder_has_no_score_graph_and_says_so_in_one_line(tmp_path):
    r = run_cli("vae-eval", REPO / "tests" / "fixtures" / "format1-mlp", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "has no score.onnx (exported before vae-edge 0.2.0 wrote one): re-export it" in r.stderr


def test_record_is_refused_for_a_checkpoint(vamp_folder):
    r = run_cli("vae-eval", vamp_folder / "v/model.pt", "--record", cwd=vamp_folder)
    assert r.returncode == 2 and "give the folder" in r.stderr

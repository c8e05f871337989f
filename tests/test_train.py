"""Training: the loss, the models, the data sources, reproducibility, interrupts and resume."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import BIN, blobs, run_cli
from trained import train_cached
from vae_edge.train import checkpoint
from vae_edge.train.config import Config
from vae_edge.train.data import DataError, load_data
from vae_edge.train.iwae import iwae_log_likelihood
from vae_edge.train.model import VAE, conv_stages, elbo_terms, recon_nll
from vae_edge.train.prior import Gaussian
from vae_edge.train.train import TrainError, train

SMALL = dict(hidden_dim=32, latent_dim=4, batch_size=16, epochs=2)


def small_cfg(tmp_path, npy, **kw) -> Config:
    return Config(dataset=str(npy), out_dir=str(tmp_path / "runs"), name="t", **{**SMALL, **kw})


def weights(path) -> dict:
    return checkpoint.load(path)["state_dict"]


# --- the loss ---------------------------------------------------------------------------------


def test_config_model_is_a_deprecated_alias_of_architecture():
    cfg = Config(arch="conv", input_shape=(3, 16, 12), prior="vamp")
    with pytest.deprecated_call(match="Config.architecture"):
        assert cfg.model() == cfg.architecture()

def test_reconstruction_term_is_bernoulli_nll_computed_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    x = torch.tensor([[1.0, 0.0, 0.25]])
    p = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.5])))
    by_hand = -(np.log(p[0]) + np.log(1 - p[1]) + 0.25 * np.log(p[2]) + 0.75 * np.log(1 - p[2]))
    assert recon_nll(logits, x).item() == pytest.approx(by_hand, rel=1e-6)


def test_kl_term_is_the_analytic_gaussian_kl_computed_by_hand():
    mu, logvar = torch.tensor([[1.0, -0.5]]), torch.tensor([[0.0, math.log(4.0)]])
    # KL(N(1, 1) || N(0, 1)) = 0.5; KL(N(-0.5, 4) || N(0, 1)) = 0.5 (4 + 0.25 - 1 - ln 4)
    by_hand = 0.5 + 0.5 * (4 + 0.25 - 1 - math.log(4))
    assert Gaussian(2).kl(mu, logvar).item() == pytest.approx(by_hand, rel=1e-6)


def test_elbo_terms_use_the_reparameterized_sample():
    torch.manual_seed(0)
    model = VAE("mlp", (1, 4, 4), 8, 3)
    x, eps = torch.rand(5, 1, 4, 4), torch.randn(5, 3)
    rec, kld = elbo_terms(model, x, eps)
    mu, logvar = model.encode(x)
    z = mu + eps * torch.exp(0.5 * logvar)
    expected = F.binary_cross_entropy(model.probs(z), x, reduction="none").flatten(1).sum(1)
    assert torch.allclose(rec, expected, atol=1e-4)
    assert torch.allclose(kld, Gaussian(3).kl(mu, logvar))


# --- the models -------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,shape", [("mlp", (1, 28, 28)), ("mlp", (3, 10, 6)), ("conv", (1, 28, 28)),
                                        ("conv", (3, 32, 16))])
def test_encoder_and_decoder_shapes(arch, shape):
    model = VAE(arch, shape, hidden_dim=64, latent_dim=7)
    x = torch.rand(5, *shape)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 7)
    assert model.decode(mu).shape == (5, *shape)
    p = model.probs(torch.randn(5, 7))
    assert p.shape == (5, *shape) and 0 <= p.min() and p.max() <= 1


def test_mlp_keeps_the_reference_layer_names():
    names = {k.split(".")[0] for k in VAE("mlp").state_dict()}
    assert names == {"fc1", "fc21", "fc22", "fc3", "fc4"}
    assert VAE("mlp").state_dict()["fc1.weight"].shape == (400, 784)


def test_logvar_is_clamped_so_extreme_inputs_stay_finite():
    model = VAE("mlp", (1, 4, 4), 8, 3)
    with torch.no_grad():
        model.fc22.bias.fill_(1e4)
    x = torch.rand(2, 1, 4, 4)
    rec, kld = elbo_terms(model, x, torch.randn(2, 3))
    assert torch.isfinite(rec).all() and torch.isfinite(kld).all()


def test_conv_refuses_a_size_that_is_not_a_multiple_of_2_to_its_stages_and_names_the_nearest_that_fit():
    with pytest.raises(ValueError, match="2 stride-2 stages .* multiples of 4; 28x28 and 32x32 fit"):
        VAE("conv", (1, 30, 30))
    with pytest.raises(ValueError, match="3 stride-2 stages .* multiples of 8; 32x32 and 40x40 fit"):
        VAE("conv", (1, 36, 36))


@pytest.mark.parametrize("h,w,stages", [(28, 28, 2), (16, 12, 2), (4, 8, 2), (32, 32, 2), (40, 40, 3), (64, 64, 3),
                                        (64, 16, 3), (128, 128, 4), (96, 128, 4)])
def test_conv_stages_are_the_fewest_from_2_that_leave_a_map_of_at_most_8x8(h, w, stages):
    model = VAE("conv", (3, h, w), hidden_dim=8, latent_dim=2)
    assert conv_stages(h, w) == model.stages == stages
    assert model.feat == (64, h >> stages, w >> stages) and max(model.feat[1:]) <= 8
    assert stages == 2 or max(h, w) >> (stages - 1) > 8  # one stage fewer would leave more than 8
    assert [m.stride for m in model.enc_conv if isinstance(m, torch.nn.Conv2d)] == [(2, 2)] * stages
    assert model.decode(torch.randn(2, 2)).shape == (2, 3, h, w)


def test_a_28x28_conv_is_todays_two_stage_network():
    shapes = {k: tuple(v.shape) for k, v in VAE("conv", (1, 28, 28)).state_dict().items()}
    assert shapes == {
        "enc_conv.0.weight": (32, 1, 4, 4), "enc_conv.0.bias": (32,),
        "enc_conv.2.weight": (64, 32, 4, 4), "enc_conv.2.bias": (64,),
        "fc1.weight": (400, 3136), "fc1.bias": (400,), "fc21.weight": (20, 400), "fc21.bias": (20,),
        "fc22.weight": (20, 400), "fc22.bias": (20,), "fc3.weight": (400, 20), "fc3.bias": (400,),
        "fc4.weight": (3136, 400), "fc4.bias": (3136,),
        "dec_conv.0.weight": (64, 32, 4, 4), "dec_conv.0.bias": (32,),
        "dec_conv.2.weight": (32, 1, 4, 4), "dec_conv.2.bias": (1,)}


def test_an_image_folder_at_a_size_the_conv_cannot_take_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr("vae_edge.train.train.load_data", lambda *a, **k: pytest.fail("the folder was read"))
    (tmp_path / "imgs").mkdir()
    cfg = Config(dataset=str(tmp_path / "imgs"), arch="conv", image_size=36, out_dir=str(tmp_path / "runs"), name="t")
    with pytest.raises(TrainError, match="cannot take 36x36: its 3 stride-2 stages"):
        train(cfg, quiet=True)


def test_a_conv_state_dict_of_another_stage_count_than_its_size_gets_is_refused_in_one_line():
    VAE("conv", (1, 28, 28)).check_stages(VAE("conv", (1, 28, 28)).state_dict())  # the same network: no complaint
    with pytest.raises(ValueError, match="a conv checkpoint of 2 stride-2 stages at 64x64, where this version builds"):
        VAE("conv", (3, 64, 64), 8, 2).check_stages(VAE("conv", (3, 32, 32), 8, 2).state_dict())


ENCODER_LAYERS, DECODER_LAYERS = ("enc_conv", "fc1", "fc21", "fc22"), ("fc3", "fc4", "dec_conv")


@pytest.mark.parametrize("size", [64, 128])
def test_an_rgb_conv_of_64x64_and_up_at_todays_width_has_networks_of_at_most_8_mb_in_fp32(size):
    model = VAE.from_config(Config(arch="conv", input_shape=(3, size, size)).architecture())  # today's defaults
    params = {name: p.numel() for name, p in model.named_parameters()}
    fp32_bytes = [4 * sum(n for name, n in params.items() if name.split(".")[0] in layers)
                  for layers in (ENCODER_LAYERS, DECODER_LAYERS)]
    assert sum(fp32_bytes) == 4 * sum(params.values())  # every weight is in one network or the other
    assert max(fp32_bytes) <= 8_000_000


def test_a_64x64_rgb_conv_trains_and_its_checkpoint_rebuilds_it_from_the_input_shape_alone(tmp_path):
    path = tmp_path / "rgb64.npy"
    np.save(path, blobs(24, size=64, channels=3))
    model, history = train(small_cfg(tmp_path, path, arch="conv", epochs=1, batch_size=8), quiet=True)
    assert model.stages == 3 and math.isfinite(history[0]["test_loss"])
    saved = checkpoint.load(tmp_path / "runs/t/model.pt")
    assert "stages" not in json.dumps(saved["config"])  # no new fact: the shape gives the stage count
    again = VAE.from_config(Config.from_dict(saved["config"]).architecture())
    again.load_state_dict(saved["state_dict"])
    assert again.stages == 3


def test_iwae_bound_is_above_the_elbo():
    torch.manual_seed(0)
    model = VAE("mlp", (1, 8, 8), 16, 2)
    x = torch.from_numpy(blobs(32)).float() / 255
    g = torch.Generator().manual_seed(0)
    rec, kld = elbo_terms(model, x, torch.randn(32, 2, generator=g))
    iwae = iwae_log_likelihood(model, x, k=500, generator=g, chunk=64)
    assert iwae.shape == (32,)
    assert iwae.mean() > -(rec + kld).mean()


# --- data sources -----------------------------------------------------------------------------

def test_npy_of_n_h_w_uint8_is_split_into_train_and_test(tiny_npy):
    data = load_data(str(tiny_npy), test_fraction=0.25)
    assert data.train.shape == (72, 1, 8, 8) and data.test.shape == (24, 1, 8, 8)
    assert data.train.dtype == torch.uint8


def test_npy_of_float_n_c_h_w_in_unit_range_is_accepted(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, blobs(20, channels=3).astype(np.float32) / 255)
    data = load_data(str(path))
    assert data.shape == (3, 8, 8)
    assert data.train.dtype == torch.uint8


def test_image_folder_is_resized_and_converted(tmp_path):
    from PIL import Image

    for i, img in enumerate(blobs(6, size=20, channels=3)):
        Image.fromarray(img.transpose(1, 2, 0)).save(tmp_path / f"{i}.{'png' if i % 2 else 'jpg'}")
    gray = load_data(str(tmp_path), image_size=12, test_fraction=0.5)
    rgb = load_data(str(tmp_path), image_size=16, channels=3, test_fraction=0.5)
    assert gray.train.shape == (3, 1, 12, 12) and rgb.test.shape == (3, 3, 16, 16)


def test_named_dataset_reads_local_idx_files_before_downloading(tmp_path):
    import gzip

    def idx(n):
        return b"\x00\x00\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (n, 8, 8)) + blobs(n).tobytes()

    for prefix, n in (("train", 10), ("t10k", 4)):
        with gzip.open(tmp_path / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(idx(n))
    data = load_data("mnist", data_dir=str(tmp_path))
    assert data.train.shape == (10, 1, 8, 8) and data.test.shape == (4, 1, 8, 8)
    assert torch.equal(data.train[:, 0], torch.from_numpy(blobs(10)[:, 0]))


def test_fashion_mnist_loads_from_debian(fashion_mnist):
    data = load_data("fashion-mnist", data_dir="/nonexistent")
    assert data.train.shape == (60000, 1, 28, 28) and data.test.shape == (10000, 1, 28, 28)


def test_missing_dataset_path_is_a_clear_error():
    with pytest.raises(DataError, match="neither a known name"):
        load_data("no/such/folder")


def test_corrupt_npy_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="not a readable .npy"):
        load_data(str(path))


def test_floats_outside_the_unit_range_are_refused(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.full((4, 8, 8), 3.0, np.float32))
    with pytest.raises(DataError, match="outside"):
        load_data(str(path))


# --- the training loop ------------------------------------------------------------------------

def test_training_writes_model_metrics_and_pictures(tmp_path, tiny_npy):
    _, history = train(small_cfg(tmp_path, tiny_npy), quiet=True)
    out = tmp_path / "runs" / "t"
    assert {p.name for p in out.iterdir()} == {"model.pt", "last.pt", "metrics.jsonl", "curves.png", "samples.png",
                                               "reconstructions.png"}
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == history and [m["epoch"] for m in lines] == [1, 2]
    assert {"train_loss", "test_loss", "test_rec", "test_kl", "seconds", "examples_per_s"} <= set(lines[0])
    assert lines[0]["test_loss"] == pytest.approx(lines[0]["test_rec"] + lines[0]["test_kl"])


def test_the_learning_curves_are_redrawn_from_the_records_of_each_epoch(tmp_path):
    """curves.png plots train and test -ELBO and the KL per epoch: another epoch's record, another picture."""
    from PIL import Image

    from vae_edge.train.curves import draw

    record = lambda e: {"epoch": e, "train_loss": 200.0 / e, "test_loss": 210.0 / e, "test_kl": 5.0 + e}  # noqa: E731
    draw([record(1)], tmp_path / "one.png")
    draw([record(1), record(2), record(3)], tmp_path / "three.png")
    one, three = (np.asarray(Image.open(tmp_path / f"{n}.png").convert("L")) for n in ("one", "three"))
    assert one.shape == three.shape and one.shape[1] > one.shape[0] > 200
    assert (one != three).mean() > 0.01
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_run_writes_its_pictures_without_onnxruntime(tmp_path, tiny_npy):
    """The grids and curves come from the runtime's PNG writer and matplotlib, not through onnxruntime."""
    code = (f"import sys; from vae_edge.train.config import Config; from vae_edge.train.train import train; "
            f"train(Config(dataset={str(tiny_npy)!r}, epochs=1, hidden_dim=16, latent_dim=2, "
            f"out_dir={str(tmp_path)!r}), quiet=True); print('onnxruntime' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "False"
    assert len(list(tmp_path.glob("*/curves.png"))) == 1


def test_checkpoint_is_a_plain_dict_that_loads_with_weights_only(tmp_path, tiny_npy):
    train(small_cfg(tmp_path, tiny_npy), quiet=True)
    ckpt = torch.load(tmp_path / "runs" / "t" / "model.pt", weights_only=True)
    assert ckpt["format"] == "vae-edge-checkpoint" and ckpt["version"] == 1
    assert ckpt["config"]["input_shape"] == [1, 8, 8] and ckpt["config"]["arch"] == "mlp"
    model = VAE.from_config(Config.from_dict(ckpt["config"]).architecture())
    model.load_state_dict(ckpt["state_dict"])


def test_loss_goes_down(tmp_path, tiny_npy):
    _, history = train(small_cfg(tmp_path, tiny_npy, epochs=6, lr=3e-3), quiet=True)
    assert history[-1]["test_loss"] < history[0]["test_loss"]


def test_same_seed_gives_the_same_losses_and_weights(tmp_path, tiny_npy):
    _, a = train(small_cfg(tmp_path / "a", tiny_npy, binarize=True, kl_warmup=1), quiet=True)
    _, b = train(small_cfg(tmp_path / "b", tiny_npy, binarize=True, kl_warmup=1), quiet=True)
    def strip(history):
        return [{k: v for k, v in m.items() if k not in ("seconds", "examples_per_s")} for m in history]

    assert strip(a) == strip(b)
    wa, wb = weights(tmp_path / "a/runs/t/model.pt"), weights(tmp_path / "b/runs/t/model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_another_seed_gives_other_weights(tmp_path, tiny_npy):
    train(small_cfg(tmp_path / "a", tiny_npy), quiet=True)
    train(small_cfg(tmp_path / "b", tiny_npy, seed=2), quiet=True)
    assert not torch.equal(weights(tmp_path / "a/runs/t/model.pt")["fc1.weight"],
                           weights(tmp_path / "b/runs/t/model.pt")["fc1.weight"])


def test_conv_trains_on_rgb_images(tmp_path):
    path = tmp_path / "rgb.npy"
    np.save(path, blobs(40, channels=3))
    _, history = train(small_cfg(tmp_path, path, arch="conv", epochs=1), quiet=True)
    assert math.isfinite(history[0]["test_loss"])


def test_an_existing_run_is_not_overwritten_without_force(tmp_path, tiny_npy):
    train(small_cfg(tmp_path, tiny_npy, epochs=1), quiet=True)
    with pytest.raises(TrainError, match="already holds a run"):
        train(small_cfg(tmp_path, tiny_npy, epochs=1), quiet=True)
    train(small_cfg(tmp_path, tiny_npy, epochs=1), quiet=True, force=True)


@pytest.mark.parametrize("kind", ["a FIFO", "a symlink"])
def test_a_run_refuses_to_replace_an_output_that_is_not_a_regular_file_before_training(tmp_path, tiny_npy, kind):
    run = tmp_path / "runs" / "t"
    run.mkdir(parents=True)
    os.mkfifo(run / "samples.png") if kind == "a FIFO" else (run / "samples.png").symlink_to(tmp_path / "theirs.png")
    with pytest.raises(TrainError, match=f"samples.png is {kind}, not a regular file; refusing to replace it"):
        train(small_cfg(tmp_path, tiny_npy, epochs=1), quiet=True)
    assert [p.name for p in run.iterdir()] == ["samples.png"]


def test_a_run_folder_that_is_a_file_is_refused_in_one_line(tmp_path, tiny_npy):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "t").write_text("not a folder")
    r = run_cli("vae-train", "--dataset", tiny_npy, "--out-dir", tmp_path / "runs", "--name", "t", "--epochs", 1)
    assert (r.returncode, r.stderr) == (2, f"error: the run folder {tmp_path / 'runs' / 't'} is a file, not a folder; "
                                           f"pick another --name or --out-dir\n")


def test_vae_eval_refuses_a_json_output_whose_folder_is_missing_before_any_work(tmp_path):
    r = run_cli("vae-eval", tmp_path / "no-model.pt", "--json", tmp_path / "gone" / "e.json")
    assert (r.returncode, r.stderr.count("\n")) == (2, 1) and "there is no folder" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_iwae_k_records_the_log_likelihood(tmp_path, tiny_npy):
    _, history = train(small_cfg(tmp_path, tiny_npy, epochs=1, iwae_k=50), quiet=True)
    assert history[-1]["test_iwae_50"] > -history[-1]["test_loss"]


# --- data read from its memory map (--data-access) -----------------------------------------

@pytest.mark.parametrize("binarize", [False, True])
def test_training_from_the_map_ends_with_the_weights_and_figures_of_training_in_memory(tmp_path, tiny_npy, binarize):
    _, mapped = train(small_cfg(tmp_path / "a", tiny_npy, data_access="mapped", binarize=binarize, iwae_k=5),
                      quiet=True)
    _, whole = train(small_cfg(tmp_path / "b", tiny_npy, data_access="memory", binarize=binarize, iwae_k=5),
                     quiet=True)
    a, b = weights(tmp_path / "a/runs/t/model.pt"), weights(tmp_path / "b/runs/t/model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("train_loss", "test_loss"):
        assert [m[key] for m in mapped] == [m[key] for m in whole], key
    assert mapped[-1]["test_iwae_5"] == whole[-1]["test_iwae_5"]


def test_a_run_from_the_map_says_so_on_its_first_line(tmp_path, tiny_npy, capsys):
    train(small_cfg(tmp_path, tiny_npy, data_access="mapped", epochs=1))
    assert "; batches read from the memory-mapped 0 MB" in capsys.readouterr().out.splitlines()[0]


def test_auto_holds_a_set_that_fits_in_memory_and_maps_one_that_does_not(tiny_npy, monkeypatch):
    from vae_edge.train import data as data_module

    data = load_data(str(tiny_npy), keep_mapped=True)
    cpu = torch.device("cpu")
    assert data_module.hold_in_memory("auto", data, cpu) and not data_module.hold_in_memory("mapped", data, cpu)
    monkeypatch.setattr(data_module, "_host_available", lambda: 2 * data.train.nbytes - 1)
    assert not data_module.hold_in_memory("auto", data, cpu) and data_module.hold_in_memory("memory", data, cpu)


def test_an_unknown_data_access_is_refused_before_the_data_is_read(tmp_path, tiny_npy):
    with pytest.raises(TrainError, match="unknown --data-access 'disk'; choose one of auto, memory, mapped"):
        train(small_cfg(tmp_path, tiny_npy, data_access="disk"), quiet=True)


# The peak of RssAnon (this process's own memory, not the file's pages in the page cache) over a run, less its value
# before: modules a run imports (matplotlib for curves.png) are imported first.
PEAK_ANON = """
import sys, threading, time
import matplotlib.pyplot
from vae_edge.train.config import Config
from vae_edge.train.train import train

def anon():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))

peak, running = [anon()], [True]
def sample():
    while running[0]:
        peak[0] = max(peak[0], anon())
        time.sleep(0.002)

before = anon()
sampler = threading.Thread(target=sample)
sampler.start()
try:
    train(Config(dataset=sys.argv[1], data_access=sys.argv[2], hidden_dim=16, latent_dim=2, batch_size=64, epochs=1,
                 test_fraction=0.005, out_dir=sys.argv[3], name=sys.argv[2]), quiet=True)
finally:
    running[0] = False
    sampler.join()
print(max(peak[0], anon()) - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RssAnon from /proc/self/status (Linux)")
def test_a_set_several_times_the_memory_bound_trains_from_its_map_under_the_bound(tmp_path):
    bound_mib, images = 100, 20480  # 3 x 64 x 64 uint8 each: a 240 MiB array, 2.4 times the bound
    path = tmp_path / "big.npy"
    array = np.lib.format.open_memmap(path, "w+", np.uint8, (images, 3, 64, 64))
    rng = np.random.default_rng()
    for i in range(0, images, 2048):
        array[i:i + 2048] = rng.integers(0, 256, (min(2048, images - i), 3, 64, 64), dtype=np.uint8)
    array.flush()
    del array
    growth = {}
    for access in ("mapped", "memory"):
        r = subprocess.run([sys.executable, "-c", PEAK_ANON, str(path), access, str(tmp_path / "runs")],
                           capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr
        growth[access] = int(r.stdout.split()[-1]) / 1024
    assert growth["mapped"] < bound_mib, growth
    assert growth["memory"] > path.stat().st_size / 2 ** 20, growth  # the probe sees a set held whole


# --- interrupts and resume (real signals, real processes) ------------------------------------

def _start(tmp_path, npy, name, epochs):
    args = ["--dataset", npy, "--out-dir", tmp_path / "runs", "--name", name, "--epochs", epochs,
            "--hidden-dim", 32, "--latent-dim", 4, "--batch-size", 4, "--test-fraction", 0.05]
    return [str(BIN / "vae-train"), *map(str, args)]


@pytest.fixture
def big_npy(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, blobs(2000))  # 475 steps an epoch: long enough to be interrupted mid-epoch
    return path


def _interrupt(cmd, tmp_path, name, sig=signal.SIGINT):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs" / name / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not metrics.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_last_pt_and_exits_cleanly(tmp_path, big_npy, sig):
    code, out, err = _interrupt(_start(tmp_path, big_npy, "run", 5), tmp_path, "run", sig)
    assert code == 128 + sig
    assert "Traceback" not in err and "interrupted: saved" in err
    state = checkpoint.load(tmp_path / "runs" / "run" / "last.pt")
    assert state["epoch"] == 2 and 0 < state["step"] < 500
    assert not (tmp_path / "runs" / "run" / "model.pt").exists()


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path, big_npy):
    assert subprocess.run(_start(tmp_path, big_npy, "straight", 3), capture_output=True).returncode == 0
    code, _, _ = _interrupt(_start(tmp_path, big_npy, "broken", 3), tmp_path, "broken")
    assert code == 130
    resumed = subprocess.run([str(BIN / "vae-train"), "--resume", str(tmp_path / "runs" / "broken")],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "runs/straight/model.pt"), weights(tmp_path / "runs/broken/model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma = (tmp_path / "runs/straight/metrics.jsonl").read_text().splitlines()
    mb = (tmp_path / "runs/broken/metrics.jsonl").read_text().splitlines()
    for key in ("train_loss", "test_loss"):  # train_loss of the broken epoch sums both halves
        assert [json.loads(s)[key] for s in ma] == [json.loads(s)[key] for s in mb], key


# --- the command line -------------------------------------------------------------------------

def test_help_documents_every_option():
    out = run_cli("vae-train", "--help").stdout
    for field in Config.__dataclass_fields__:
        if field != "input_shape":
            assert "--" + field.replace("_", "-") in out, field
    assert "--resume" in out and "--force" in out


def test_vae_eval_help_documents_every_option():
    out = run_cli("vae-eval", "--help", env={**os.environ, "COLUMNS": "200"}).stdout
    for option in ("--iwae-k", "--iwae-backend", "--dataset", "--data-dir", "--device", "--limit", "--json"):
        assert option in out, option


@pytest.mark.parametrize("args,message", [
    (["--dataset", "no/such/dir"], "neither a known name"),
    (["--dataset", "{npy}", "--arch", "conv", "--image-size", "30"], "multiples of 4"),
    (["--dataset", "{npy}", "--image-size", "64x"], "--image-size takes N or HxW"),
    (["--dataset", "{npy}", "--image-size", "8", "--background", "grey"], "a background is white, black or #RRGGBB"),
    (["--dataset", "{npy}", "--image-size", "8", "--data-access", "disk"], "unknown --data-access 'disk'"),
    (["--dataset", "{bad}"], "not a readable .npy"),
    (["--resume", "no/such/run"], "nothing to resume"),
    (["--dataset", "{npy}", "--arch", "transformer"], "unknown architecture"),
])
def test_bad_input_gets_a_one_line_error_and_exit_code_2(tmp_path, tiny_npy, args, message):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(blobs(8, size=30)):
        Image.fromarray(img[0]).save(folder / f"{i}.png")
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    subst = {"{npy}": str(folder if "--image-size" in args else tiny_npy), "{bad}": str(bad)}
    args = [subst.get(a, a) for a in args]
    r = run_cli("vae-train", *args, "--out-dir", tmp_path / "runs", "--epochs", 1)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "vae" / "model.pt").exists()


def test_vae_eval_reports_elbo_and_iwae(tmp_path, tiny_npy):
    train(small_cfg(tmp_path, tiny_npy, epochs=1), quiet=True)
    r = run_cli("vae-eval", tmp_path / "runs/t/model.pt", "--iwae-k", 20, "--json", tmp_path / "e.json")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["test_iwae_20"] > -result["test_loss"]


def test_vae_eval_refuses_a_plain_state_dict_in_one_line(tmp_path):
    torch.save(VAE("mlp", (1, 8, 8), 16, 2).state_dict(), tmp_path / "sd.pt")
    r = run_cli("vae-eval", tmp_path / "sd.pt")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'sd.pt'} is not a vae-train checkpoint"]


# --- the real thing ---------------------------------------------------------------------------

@pytest.mark.slow
def test_default_recipe_on_fashion_mnist_reaches_the_reference_loss(tmp_path, fashion_mnist):
    """The run is kept in .cache/trained/ until the code, the data or the libraries change (tests/trained.py)."""
    _, history = train_cached(Config(out_dir=str(tmp_path), name="fm"))
    assert len(history) == 10
    assert history[-1]["test_loss"] <= 244.5

"""Opsets and onnxruntime versions: what vae-export writes by default, what --opset allows, what the runtime refuses."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import invoke, trained
from vae_edge.export import ExportError, export_model
from vae_edge.runtime import VAE, ModelFolderError
from vae_edge.runtime import compat
from vae_edge.runtime import model as runtime_model
from vae_edge.runtime.cli import info_main
from vae_edge.train.model import VAE as TorchVAE

TOL = 1e-5


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return trained(TorchVAE("mlp", hidden_dim=32, latent_dim=4))


@pytest.fixture(scope="module")
def default_export(small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("opsets") / "default"
    return folder, export_model(small, folder, quantize="int8", ort_format=True)


def _decode_error(model, folder, **load) -> float:
    z = np.random.default_rng().standard_normal((7, model.latent_dim)).astype(np.float32)
    with torch.no_grad():
        ref = model.probs(torch.from_numpy(z)).numpy()
    return float(np.abs(VAE.load(folder, **load).decode(z) - ref).max())


def test_the_default_export_is_opset_17_at_ir_8_which_onnxruntime_1_12_reads(default_export):
    folder, info = default_export
    assert info["onnx"] == {"ir_version": 8, "opset": 17, "min_onnxruntime": "1.12"}
    for key in ("encoder", "decoder", "encoder_int8", "decoder_int8"):
        proto = onnx.load(str(folder / info["files"][key]["path"]))
        assert (proto.ir_version, compat.onnx_versions((folder / info["files"][key]["path"]).read_bytes())) == \
               (8, (8, 17))
        assert json.loads({p.key: p.value for p in proto.metadata_props}["onnx"]) == info["onnx"]


@pytest.mark.parametrize("opset,ir,needs", [(14, 7, "1.12"), (18, 8, "1.14"), (21, 10, "1.18"), (23, 11, "1.23")])
def test_each_end_of_the_opset_range_exports_at_its_lowest_ir_with_parity(small, tmp_path, opset, ir, needs):
    info = export_model(small, tmp_path / "out", opset=opset)
    assert info["onnx"] == {"ir_version": ir, "opset": opset, "min_onnxruntime": needs}
    assert onnx.load(str(tmp_path / "out" / "decoder.onnx")).ir_version == ir
    assert _decode_error(small, tmp_path / "out") <= TOL


@pytest.mark.parametrize("opset", [13, 24])
def test_an_opset_outside_the_range_is_refused_naming_the_range(small, tmp_path, opset):
    with pytest.raises(ExportError, match=f"cannot export at opset {opset}: vae-export writes opsets 14 to 23"):
        export_model(small, tmp_path / "out", opset=opset)
    assert not (tmp_path / "out").exists()


def test_a_file_newer_than_the_installed_onnxruntime_is_refused_naming_both_versions(small, tmp_path, monkeypatch):
    export_model(small, tmp_path / "o21", opset=21)
    monkeypatch.setattr(runtime_model.ort, "__version__", "1.17.3")
    with pytest.raises(ModelFolderError) as e:
        VAE.load(tmp_path / "o21")
    assert str(e.value) == (f"{tmp_path / 'o21' / 'encoder.onnx'} needs onnxruntime >= 1.18 (installed: 1.17.3): "
                            f"it is ONNX IR version 10, opset 21; upgrade onnxruntime, or re-export with "
                            f"vae-export --opset 20")
    assert "corrupt" not in str(e.value)


def test_the_table_answers_which_release_reads_which_file():
    assert compat.problem(8, 17, "1.12.0") is None and compat.problem(7, 14, "1.12.0") is None
    assert "needs onnxruntime >= 1.14 (installed: 1.13.1)" in compat.problem(8, 18, "1.13.1")
    assert "needs onnxruntime >= 1.15" in compat.problem(9, 18, "1.14.1")  # IR 9 alone locks 1.14 out
    assert "upgrade onnxruntime to 1.12 or newer" in compat.problem(8, 17, "1.11.0")
    assert compat.problem(11, 23, "1.23.2") is None and compat.problem(12, 24, "1.32.0") is None  # newer: not ours
    assert compat.min_onnxruntime(10, 22) == (1, 21) and compat.min_onnxruntime(99, 17) is None


def test_reading_the_versions_of_something_that_is_not_onnx_raises_value_error():
    with pytest.raises(ValueError):
        compat.onnx_versions(b"\x0a\xff\xff\xff")
    with pytest.raises(ValueError):
        compat.onnx_versions(b"")


def test_reading_a_files_inputs_outputs_and_metadata_gives_what_onnxruntime_gives(default_export):
    folder, info = default_export
    for entry in info["files"].values():
        if entry["path"].endswith(".onnx"):
            session = ort.InferenceSession(str(folder / entry["path"]), providers=["CPUExecutionProvider"])
            assert compat.onnx_signature((folder / entry["path"]).read_bytes()) == (
                [(i.name, i.shape) for i in session.get_inputs()], [(o.name, o.shape) for o in session.get_outputs()],
                session.get_modelmeta().custom_metadata_map)


def test_ort_format_files_run_at_parity_fp32_and_int8(small, default_export):
    folder, info = default_export
    assert {"encoder_ort", "decoder_ort", "encoder_int8_ort", "decoder_int8_ort", "required_operators"} <= \
           set(info["files"])
    assert "ai.onnx;" in (folder / "required_operators.config").read_text()
    assert all(info["ort_format"]["parity"][k] <= TOL for k in ("mu", "logvar", "x"))
    assert _decode_error(small, folder, ort_format=True) <= TOL
    x = np.random.default_rng().random((5, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(VAE.load(folder, ort_format=True, precision="int8").encode(x)[0],
                               VAE.load(folder, precision="int8").encode(x)[0], atol=1e-6)


def test_ort_format_files_refuse_an_onnxruntime_older_than_the_one_that_wrote_them(default_export, monkeypatch):
    folder, info = default_export
    monkeypatch.setattr(runtime_model.ort, "__version__", "1.16.0")
    with pytest.raises(ModelFolderError, match=f"need onnxruntime >= {info['ort_format']['made_by_onnxruntime']} "
                                               r"\(installed: 1.16.0\)"):
        VAE.load(folder, ort_format=True)


def test_ort_format_asked_of_a_folder_without_it_says_how_to_make_it(small, tmp_path):
    export_model(small, tmp_path / "plain")
    with pytest.raises(ModelFolderError, match="no ORT-format files; re-export with `vae-export ... --ort`"):
        VAE.load(tmp_path / "plain", ort_format=True)


def test_vae_info_prints_what_the_files_need(default_export):
    folder, _ = default_export
    r = invoke(info_main, "--model", folder)
    assert r.exit_code == 0, r.stderr
    import onnxruntime
    assert f"needs:    onnxruntime >= 1.12 (installed: {onnxruntime.__version__}, ok)" in r.stdout

"""docs/format.md and docs/vae.schema.json: every export's vae.json is valid under the schema, the schema says
what the readers say (the format, its version, sizes, paths), and a folder that readers refuse for its vae.json
is one the schema refuses too."""
import json
import math
import re

import jsonschema
import pytest
import torch

from conftest import REPO
from vae_edge.export import ExportError, export_model
from vae_edge.runtime import folder as runtime_folder
from vae_edge.runtime import bundled
from vae_edge.train.model import VAE as TorchVAE

SCHEMA = json.loads((REPO / "docs" / "vae.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
CONFORMANCE = REPO / "tests" / "conformance"
CASES = json.loads((CONFORMANCE / "cases.json").read_text())["cases"]
# Refusals for what vae.json says (not for the ONNX files, the caller's arguments or unreadable JSON).
META_REFUSALS = ("is not a vae-edge ONNX export", "has format_version", "lacks valid", "lists no",
                 "is not a plain path")


def _problems(meta: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(meta)]


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_names_the_runtimes_format_version_sizes_and_paths():
    assert SCHEMA["properties"]["format"]["const"] == runtime_folder.FORMAT
    assert SCHEMA["properties"]["format_version"]["enum"] == list(runtime_folder.FORMAT_VERSIONS)
    assert SCHEMA["$defs"]["size"]["maximum"] == runtime_folder.SIZE_LIMIT - 1
    assert SCHEMA["$defs"]["file"]["properties"]["bytes"]["maximum"] == runtime_folder.SIZE_LIMIT - 1
    assert "bytes" in SCHEMA["$defs"]["file"]["required"]
    assert SCHEMA["$defs"]["file"]["properties"]["path"]["pattern"] == f"^{runtime_folder.PLAIN_PATH.pattern}$"


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("format") / "vae-onnx"
    export_model(TorchVAE(arch="mlp", hidden_dim=16, latent_dim=4).eval(), folder)
    return folder


def test_an_export_writes_a_vae_json_the_schema_accepts(small_export):
    assert _problems(json.loads((small_export / "vae.json").read_text())) == []


@pytest.mark.slow
def test_an_export_with_int8_and_ort_files_writes_a_vae_json_the_schema_accepts(tmp_path):
    torch.manual_seed(1)
    info = export_model(TorchVAE(arch="conv", input_shape=(1, 8, 8), hidden_dim=16, latent_dim=3).eval(),
                        tmp_path / "vae-onnx", quantize="int8", force_int8=True, ort_format=True)
    assert {"encoder_int8", "decoder_int8", "encoder_ort", "decoder_ort"} <= set(info["files"])
    assert _problems(json.loads((tmp_path / "vae-onnx" / "vae.json").read_text())) == []


@pytest.mark.parametrize("name", bundled.names())
def test_each_bundled_model_has_a_vae_json_the_schema_accepts(name):
    assert _problems(json.loads((bundled.path(name) / "vae.json").read_text())) == []


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_an_export_writes_metrics_that_are_not_finite_as_null(tmp_path):
    """vae.json is strict JSON (no NaN or Infinity), which every reader parses."""
    model = TorchVAE(arch="mlp", hidden_dim=16, latent_dim=4).eval()
    export_model(model, tmp_path / "out", facts={"metrics": {"test_loss": math.nan, "test_kl": math.inf}})
    meta = _strict_json((tmp_path / "out" / "vae.json").read_text())
    assert meta["metrics"] == {"test_loss": None, "test_kl": None}


def test_the_folder_writer_refuses_nan_and_writes_nothing(tmp_path):
    from vae_edge.export.folder import write_folder

    with pytest.raises(ExportError, match="NaN or infinity"):
        write_folder(tmp_path / "out", {}, {"parity": {"x": math.nan}}, force=False)
    assert list(tmp_path.iterdir()) == []


def _case_meta(case: dict):
    path = CONFORMANCE / case["folder"] / "vae.json"
    return json.loads(path.read_text()) if path.is_file() else None


@pytest.mark.parametrize("case", [c for c in CASES if c["outcome"] == "accepted"], ids=lambda c: c["name"])
def test_a_folder_every_reader_accepts_has_a_vae_json_the_schema_accepts(case):
    assert _problems(_case_meta(case)) == []


@pytest.mark.parametrize("case", [c for c in CASES if c["outcome"] == "refused" and "sample" not in c
                                  and any(m in c["message"] for m in META_REFUSALS)], ids=lambda c: c["name"])
def test_a_folder_readers_refuse_for_its_vae_json_is_one_the_schema_refuses(case):
    assert _problems(_case_meta(case)) != []


def test_the_format_document_names_every_top_level_key_of_the_schema():
    text = (REPO / "docs" / "format.md").read_text()
    named = set(re.findall(r"`([a-z_0-9]+)`", text))
    assert set(SCHEMA["properties"]) <= named, set(SCHEMA["properties"]) - named

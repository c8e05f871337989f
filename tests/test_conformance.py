"""The shared conformance cases (tests/conformance/): the Python runtime, and the JavaScript library under Node,
give each case's outcome; the checked-in cases are what make_cases.py writes; every folder a reader accepts has
a vae.json that the format's JSON Schema accepts too."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from vae_edge.runtime import VAE, ModelFolderError, RuntimeInputError

CONFORMANCE = REPO / "tests" / "conformance"
CASES = json.loads((CONFORMANCE / "cases.json").read_text())["cases"]
ERRORS = {"ModelFolderError": ModelFolderError, "RuntimeInputError": RuntimeInputError}


def _python(case: dict):
    """What the Python runtime does with a case: load the folder, then sample if the case says so."""
    vae = VAE.load(CONFORMANCE / case["folder"], precision=case.get("precision", "fp32"),
                   decoder_only=case.get("decoder_only", False))
    if "sample" in case:
        args = dict(case["sample"])
        vae.sample(args.pop("n"), **args)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_python_runtime_gives_each_case_its_outcome(case):
    if case["outcome"] == "accepted":
        _python(case)
        return
    with pytest.raises(ERRORS[case["error"]]) as e:
        _python(case)
    assert type(e.value) is ERRORS[case["error"]]
    assert case["message"] in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_every_case_names_its_rule_and_an_outcome_a_reader_can_check():
    assert len({c["name"] for c in CASES}) == len(CASES)
    for case in CASES:
        assert case["rule"] and case["outcome"] in ("accepted", "refused"), case
        assert case["outcome"] == "accepted" or (case["error"] in ERRORS and case["message"]), case


def test_the_checked_in_cases_are_what_make_cases_writes(tmp_path):
    copy = tmp_path / "conformance"
    shutil.copytree(CONFORMANCE, copy, ignore=shutil.ignore_patterns("folders", "cases.json", "__pycache__"))
    subprocess.run([sys.executable, copy / "make_cases.py"], check=True, capture_output=True)
    written = sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    kept = sorted(p.relative_to(CONFORMANCE) for p in CONFORMANCE.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)
    assert written == kept
    for path in written:
        assert (copy / path).read_bytes() == (CONFORMANCE / path).read_bytes(), f"{path} differs: run make_cases.py"


def test_the_javascript_library_gives_each_case_its_outcome():
    node = shutil.which("node")
    if node is None or not (REPO / "web" / "node_modules" / "onnxruntime-node").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("node or web/node_modules is missing")
        pytest.skip("node or web/node_modules is missing (make web-deps)")
    r = subprocess.run([node, "--test", "test/conformance.test.js"], cwd=REPO / "web", capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]

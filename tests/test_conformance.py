"""The shared conformance cases (tests/conformance/): the Python runtime, and the JavaScript library under Node,
give each case's outcome; the checked-in cases are what make_cases.py writes; every folder a reader accepts has
a vae.json that the format's JSON Schema accepts too."""
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from vae_edge.runtime import VAE, ModelFolderError, RuntimeInputError

CONFORMANCE = REPO / "tests" / "conformance"
CASES = json.loads((CONFORMANCE / "cases.json").read_text())["cases"]
ERRORS = {"ModelFolderError": ModelFolderError, "RuntimeInputError": RuntimeInputError}


def _python(case: dict, folder: Path):
    """What the Python runtime does with a case: load the folder, then sample if the case says so."""
    vae = VAE.load(folder, precision=case.get("precision", "fp32"), decoder_only=case.get("decoder_only", False))
    if "sample" in case:
        args = dict(case["sample"])
        vae.sample(args.pop("n"), **args)


def outcome(case: dict, folder: Path) -> dict:
    """The case's outcome in cases.json's words: accepted, or refused with the error's kind and message."""
    try:
        _python(case, folder)
    except (ModelFolderError, RuntimeInputError) as e:
        return {"outcome": "refused", "error": type(e).__name__, "message": str(e)}
    return {"outcome": "accepted"}


def apply_setup(folder: Path, setup: list) -> None:
    """README.md's setup steps on a copy of a case's folder (what git cannot hold: a FIFO, a symlink)."""
    for step in setup:
        (kind, name), = ((k, v) for k, v in step.items() if k != "to")
        path = folder / name
        if kind == "move_out" or kind == "move_in":
            moved = folder.parent / "outside" / name if kind == "move_out" else folder / "real" / name
            moved.parent.mkdir(parents=True, exist_ok=True)
            path.rename(moved)
            path.symlink_to(os.path.relpath(moved, path.parent))
            continue
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "symlink":
            path.symlink_to(step["to"])
        elif kind == "mkdir":
            path.mkdir()
        else:
            raise ValueError(f"unknown setup step {step}")  # README.md lists them


# A case with a setup runs in a child process with a time limit, so that a reader that hangs on a FIFO fails the
# test instead of hanging it, and with an address-space limit, so that one that reads /dev/zero fails it too.
SETUP_TIMEOUT_S, SETUP_MEMORY = 120, 4 << 30
SETUP_STEPS = {"fifo", "symlink", "move_out", "move_in", "mkdir"}  # README.md
CHILD = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_conformance import outcome; "
         "print(json.dumps(outcome(json.loads(sys.argv[2]), sys.argv[3])))")


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (SETUP_MEMORY, SETUP_MEMORY))


def _outcome_after_setup(case: dict, tmp: Path) -> dict:
    folder = tmp / Path(case["folder"]).name
    shutil.copytree(CONFORMANCE / case["folder"], folder, symlinks=True)
    apply_setup(folder, case["setup"])
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "tests"), json.dumps(case), str(folder)],
                           capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case['name']}: the reader did not finish in {SETUP_TIMEOUT_S} s (it hangs)")
    assert r.returncode == 0, f"{case['name']}: the reader failed (exit {r.returncode}): {r.stderr[-3000:]}"
    return json.loads(r.stdout.splitlines()[-1])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_python_runtime_gives_each_case_its_outcome(case, tmp_path):
    got = _outcome_after_setup(case, tmp_path) if "setup" in case else outcome(case, CONFORMANCE / case["folder"])
    if case["outcome"] == "accepted":
        assert got == {"outcome": "accepted"}, got
        return
    assert got["outcome"] == "refused", f"{case['name']} was accepted; expected {case['error']}: {case['message']}"
    assert got["error"] == case["error"], got
    assert case["message"] in got["message"] and "\n" not in got["message"], got["message"]


def test_every_case_names_its_rule_and_an_outcome_a_reader_can_check():
    assert len({c["name"] for c in CASES}) == len(CASES)
    for case in CASES:
        assert case["rule"] and case["outcome"] in ("accepted", "refused"), case
        assert case["outcome"] == "accepted" or (case["error"] in ERRORS and case["message"]), case
        for step in case.get("setup", []):
            assert set(step) - {"to"} <= SETUP_STEPS and len(set(step) - {"to"}) == 1, case


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

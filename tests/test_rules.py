"""The format's rules live in one file, runtime/format_rules.json (docs/format.md): Python reads it, JavaScript and
C get copies that tests/conformance/make_rules.py writes. A copy that drifts from the source, or a reader that
states a rule again by hand, fails here."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_rules", ROOT / "tests" / "conformance" / "make_rules.py")
make_rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_rules)


@pytest.mark.parametrize("copy,write", [(make_rules.JS, make_rules.javascript), (make_rules.C, make_rules.c_header)],
                         ids=["javascript", "c"])
def test_each_readers_copy_is_what_the_generator_writes_from_the_source(copy, write):
    assert copy.read_text() == write(make_rules.rules()), "run python tests/conformance/make_rules.py"


def test_the_python_runtime_reads_the_source_itself():
    from vae_edge.runtime import compat, folder, inputs, model, rules

    r = make_rules.rules()
    assert rules.RULES == r
    assert folder.FORMAT_VERSIONS == (1, 2) and folder.PRECISIONS["int8"] == ("encoder_int8", "decoder_int8")
    assert (inputs.COUNT_LIMIT, model.MAX_THREADS, model.DEFAULT_BATCH_SIZE) == (1048576, 1024, 1024)
    assert [(compat.show_release(v), ir, opset) for v, ir, opset in compat.READS] == [tuple(row) for row in
                                                                             r["onnxruntime_reads"]]


# What a reader may no longer say by hand: each rule's literal, in the readers' sources.
STATED_ONCE = {
    "the format versions": r"FORMAT_VERSIONS\s*=\s*[\[(]|format_version(\)|\"\])?\s*===?\s*2|v != 1 &&",
    "the precisions' files": r"['\"]encoder_int8['\"],\s*['\"]decoder_int8['\"]",
    "the plain path": r"\[A-Za-z0-9_\]|isalnum",
    "the limits": r"\b(1 << 20|2 \*\* 20|2\*\*20(?! ?:)|2 \*\* 31|2\*\*31|1048576|2147483648|= 1024|\b1024\))",
    "the default folder": r"= ['\"]vae-onnx['\"]|Path\(\"vae-onnx\"\)|\(default: vae-onnx\)",
    "the messages": r"no int8 files;|lists no .{0,6} file \(path|is not a plain path inside|but no valid prior|"
                    r"newer than this vae-edge reads|needs onnxruntime >=|seed must be an integer in|"
                    r"temperature must be a finite|(?<![-\w])\w+ must be >= 1, got|(?<!-)precision must be one of|"
                    r"which a model folder may not|is not a loadable ONNX model|is not readable JSON|"
                    r"(?<!\w)failed to run: |(?<!\w) returned .{0,40}; expected float32|encoder and decoder swapped|"
                    r"is not a decoder \(z|is not an encoder \(x|; expected mu and logvar|"
                    r"but vae.json says input_shape|the decoder and vae.json disagree|"
                    r"vae.json describes: it maps",
}
READERS = [*sorted((ROOT / "runtime").glob("*.py")), *sorted((ROOT / "web" / "src").glob("*.js")),
           ROOT / "native" / "vae_edge.c", ROOT / "native" / "vae_sample.c", ROOT / "native" / "vae_edge.h",
           ROOT / "native" / "onnx_check.c"]
COPIES = {make_rules.JS, make_rules.C}


@pytest.mark.parametrize("rule", STATED_ONCE)
def test_no_reader_states_a_rule_again_by_hand(rule):
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in READERS if path not in COPIES
             for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(STATED_ONCE[rule], line)]
    assert found == []


def test_a_message_escapes_what_a_folder_wrote_that_is_not_printable_so_it_stays_one_line():
    """A key or an operator domain comes from the folder: a newline or a record separator (which str.splitlines
    also splits on) in it is escaped, as tests/test_fuzz.py found."""
    from vae_edge.runtime.rules import message

    for text in ("\n\x04beta\x00", "\x1e", "\u2028a\x85"):
        got = message("g1_domain", domain=text)
        assert len(got.splitlines()) == 1 and got.isprintable(), got
    assert message("g1_domain", domain="ai.onnx.ml") == "uses operator domain 'ai.onnx.ml'"

"""Fuzzing what the runtime reads from outside: vae.json, the .onnx files, .npy inputs and the command lines.

Each case either succeeds or fails the way bad input must: the library raises its own ModelFolderError or
RuntimeInputError with a one-line message, a command exits 2 with one `error: ...` line (`vae-NAME: error: ...`
for a usage error), and no output file is left half-written. Never a traceback, a crash or a hang: a watchdog
(faulthandler) ends the run with every thread's stack if one case takes longer than WATCHDOG_S.

Cases come from hypothesis with a fixed seed (derandomize), FUZZ_CASES of each kind in `make test`;
`make fuzz` sets VAE_EDGE_FUZZ_CASES for a long run. The same model folders go through the JavaScript library's
loader under Node (test_the_javascript_loader_...). Only public names are used: vae_edge.runtime's and the
console scripts' entry functions, called in this process.
"""
from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, invoke
from test_native import SANITIZER_ENV, sanitized_native, sanitizers_silent, vae_sample
from vae_edge.runtime import VAE, ModelFolderError, RuntimeInputError
from vae_edge.runtime.cli import decode_main, encode_main, info_main, sample_main

FUZZ_CASES = int(os.environ.get("VAE_EDGE_FUZZ_CASES", "60"))
WATCHDOG_S = 120  # per case: generous, a hang and not a slow machine
FUZZ = settings(max_examples=FUZZ_CASES, derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))
KEYS = ("encoder", "decoder", "encoder_int8", "decoder_int8")
OURS = (ModelFolderError, RuntimeInputError)


@contextlib.contextmanager
def watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


class Original(tuple):
    """(vae.json, {key: bytes}) of the tiny export; shown short in hypothesis's reports."""

    def __repr__(self) -> str:
        return "<the tiny export>"


@pytest.fixture(scope="module")
def model(tiny_export) -> Original:
    """The tiny export's vae.json and file bytes, which each case copies and tampers with."""
    meta = json.loads((tiny_export / "vae.json").read_text())
    return Original((meta, {k: (tiny_export / meta["files"][k]["path"]).read_bytes() for k in KEYS}))


def write_folder(folder: Path, meta, files: dict[str, bytes], raw_meta: bytes | None = None) -> None:
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "vae.json").write_bytes(raw_meta if raw_meta is not None else json.dumps(meta).encode())


# -- what the cases are made of -------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from([0, -1, 2**31, 2**63, 10**400])
    | st.floats() | st.text(max_size=12) | st.sampled_from(["", "..", "../vae.json", "/etc/passwd", "a\x00b"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6)


def paths(doc, prefix=()):
    """Every (key or index) path into a JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, (*prefix, i))


def edit(doc, path, how, value):
    """doc with the value at path set, deleted, wrapped in a list or a dict, or given an extra key."""
    if not path:
        return value if how == "set" else [doc] if how == "wrap" else doc
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    k = path[-1]
    if how == "set":
        parent[k] = value
    elif how == "delete":
        del parent[k]
    elif how == "wrap":
        parent[k] = [parent[k]] if isinstance(value, bool) and value else {"value": parent[k]}
    elif how == "extra" and isinstance(parent[k], dict):
        parent[k]["unexpected"] = value
    return doc


@st.composite
def tampered_meta(draw, meta):
    """vae.json with one to three edits; or its bytes cut short or not UTF-8."""
    doc = json.loads(json.dumps(meta))
    if draw(st.integers(0, 9)) == 0:
        text = json.dumps(doc).encode()
        cut = draw(st.integers(0, len(text)))
        return doc, text[:cut] + draw(st.sampled_from([b"", b"\xff\xfe", b"}", b"\x00"]))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(doc))))
        doc = edit(doc, where, draw(st.sampled_from(["set", "set", "delete", "wrap", "extra"])), draw(JSON))
    return doc, None


@st.composite
def tampered_files(draw, files):
    """The .onnx bytes with one to three of them cut short, bit-flipped, swapped, replaced or emptied."""
    files = dict(files)
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True)):
        data = files[key]
        how = draw(st.sampled_from(["truncate", "flip", "flip", "swap", "garbage"]))
        if how == "truncate":
            data = data[:draw(st.integers(0, len(data) - 1))]
        elif how == "flip":
            b = bytearray(data)
            for _ in range(draw(st.integers(1, 8))):
                i = draw(st.integers(0, len(b) - 1))
                b[i] ^= 1 << draw(st.integers(0, 7))
            data = bytes(b)
        elif how == "swap":
            data = files[draw(st.sampled_from([k for k in KEYS if k != key]))]
        else:
            data = draw(st.binary(max_size=64))
        files[key] = data
    return files


def rehashed(meta: dict, files: dict[str, bytes]) -> tuple[dict, dict[str, bytes]]:
    """vae.json with each file's sha256 and size rewritten, so that tampered bytes reach the parsers."""
    meta = json.loads(json.dumps(meta))
    for key, data in files.items():
        meta["files"][key].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    return meta, {meta["files"][k]["path"]: files[k] for k in files}


DTYPES = ["uint8", "float32", "float64", "float16", ">f4", "int64", "int8", "bool", "complex64", "U3", "O",
          "datetime64[s]", [("a", "<f4"), ("b", "<f4")]]


@st.composite
def npy_bytes(draw, row: int):
    """An .npy file: mostly the right row length, in many dtypes and shapes, with NaN, inf and out-of-range
    values, or a pickle of objects; sometimes cut short or with a damaged header."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    n = draw(st.sampled_from([0, 1, 2, 3, 5]))
    shape = draw(st.sampled_from([(n, row), (n, row + 1), (row,), (), (n, 1, row), (n, row, 1), (n, 0)]))
    values = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, -1.0, 2.0, 255.0, 256.0, math.nan, math.inf, -math.inf]),
                           min_size=1, max_size=4))
    size = int(np.prod(shape))
    a = np.resize(np.array(values), size).reshape(shape)
    try:
        with np.errstate(all="ignore"):
            a = a.astype(dtype)
    except (TypeError, ValueError):
        a = np.zeros(shape, dtype)
    if dtype == object:  # noqa: E721 (a numpy dtype equals object; it is not object)
        a = np.empty(shape, object)
        a.flat[:] = [{"x": 1}] * size if size else []
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    data = buf.getvalue()
    how = draw(st.sampled_from(["keep", "keep", "keep", "truncate", "header"]))
    if how == "truncate":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    elif how == "header":
        i = draw(st.integers(8, 60))
        data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
    return data


def one_line_error(e: BaseException) -> None:
    assert isinstance(e, OURS), f"{type(e).__name__} escaped: {e}"
    assert str(e).strip() and "\n" not in str(e), repr(str(e))


def use(vae: VAE) -> None:
    """Everything a loaded VAE offers, on a few fresh inputs."""
    rng = np.random.default_rng()
    vae.sample(3, seed=0)
    vae.decode(rng.standard_normal((2, vae.latent_dim)).astype(np.float32))
    if vae.precision == "fp32" or vae.meta.get("int8"):
        with contextlib.suppress(RuntimeInputError):  # decoder_only
            vae.reconstruct(rng.random((2, *vae.input_shape), dtype=np.float32))


def load_and_use(folder: Path) -> None:
    for precision in ("fp32", "int8"):
        for decoder_only in (False, True):
            try:
                use(VAE.load(folder, precision=precision, decoder_only=decoder_only))
            except Exception as e:  # noqa: BLE001 (the check is that it is ours)
                one_line_error(e)


def cli(main, *args) -> tuple[int, str, str]:
    """A console script's entry function, run here: (exit code, stdout, stderr)."""
    r = invoke(main, *args)
    return r.exit_code, r.stdout_bytes.decode(errors="replace"), r.stderr


def check_exit(code: int, err: str, args) -> None:
    """0, or 2 with one last line `error: ...` (the runtime's) or `vae-NAME: error: ...` (a usage error) and no
    error line before it."""
    assert "Traceback" not in err, (args, err)
    assert code in (0, 2), (args, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert lines and re.match(r"(vae-[a-z]+: )?error: ", lines[-1]), (args, err)
        assert not any(re.match(r"(vae-[a-z]+: )?error", line) for line in lines[:-1]), (args, err)


def only(folder: Path, expected: set[str]) -> None:
    """Nothing in folder but the expected names: no temporary or half-written file."""
    assert {p.name for p in folder.iterdir()} == expected


# -- the cases ---------------------------------------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_a_tampered_vae_json_loads_or_is_refused_in_one_line(model, data):
    meta, files = model
    doc, raw = data.draw(tampered_meta(meta))
    with tempfile.TemporaryDirectory() as tmp, watchdog():
        folder = Path(tmp) / "m"
        write_folder(folder, doc, {meta["files"][k]["path"]: files[k] for k in KEYS}, raw)
        load_and_use(folder)
        code, _, err = cli(info_main, "--model", folder)
        check_exit(code, err, doc if raw is None else raw[:80])


@FUZZ
@given(data=st.data())
def test_tampered_onnx_files_with_matching_sha256_load_or_are_refused_in_one_line(model, data):
    meta, files = model
    doc, on_disk = rehashed(meta, data.draw(tampered_files(files)))
    with tempfile.TemporaryDirectory() as tmp, watchdog():
        folder = Path(tmp) / "m"
        write_folder(folder, doc, on_disk)
        load_and_use(folder)
        for main, args in ((info_main, []), (sample_main, ["--n", 3, "--out", Path(tmp) / "s.png"]),
                           (sample_main, ["--n", 3, "--npy", Path(tmp) / "s.npy", "--precision", "int8"])):
            code, _, err = cli(main, "--model", folder, *args)
            check_exit(code, err, args)
        made = {"s.png", "s.npy"} & {p.name for p in Path(tmp).iterdir()}
        only(Path(tmp), {"m", *made})
        for name in made:  # what was written is whole
            assert (Path(tmp) / name).stat().st_size > 0


@FUZZ
@given(data=st.data())
def test_npy_inputs_are_encoded_decoded_or_refused_in_one_line(tiny_export, data):
    vae = VAE.load(tiny_export)
    what = data.draw(st.sampled_from(["x", "z"]))
    raw = data.draw(npy_bytes(int(np.prod(vae.input_shape)) if what == "x" else vae.latent_dim))
    with tempfile.TemporaryDirectory() as tmp, watchdog():
        tmp = Path(tmp)
        (tmp / "in.npy").write_bytes(raw)
        try:
            a = np.load(tmp / "in.npy", allow_pickle=False)
        except Exception:  # noqa: BLE001 (numpy's own refusal: the runtime never sees it)
            a = None
        if a is not None:
            try:
                vae.encode(a) if what == "x" else vae.decode(a)
            except Exception as e:  # noqa: BLE001
                one_line_error(e)
        if what == "x":
            code, _, err = cli(encode_main, tmp / "in.npy", "--model", tiny_export, "--out", tmp / "out.npy")
        else:
            code, _, err = cli(decode_main, tmp / "in.npy", "--model", tiny_export, "--npy", tmp / "out.npy")
        check_exit(code, err, raw[:120])
        written = {"out.npy", "out.index.csv"} if what == "x" else {"out.npy"}  # vae-encode names its rows
        only(tmp, {"in.npy", *written} if code == 0 else {"in.npy"})
        if code == 0:
            assert np.isfinite(np.load(tmp / "out.npy")).all()


NUMBERS = st.sampled_from(["0", "1", "3", "-1", "-0", "2147483648", "99999999999999999999", "1e3", "nan", "inf",
                           "-inf", "0.5", "", "abc", "0x10", "3 ", "٣"])
OPTIONS = {
    sample_main: ["--n", "--seed", "--temperature", "--nrow", "--threads", "--batch-size", "--precision", "--out",
                  "--npy", "--model"],
    decode_main: ["--nrow", "--threads", "--batch-size", "--precision", "--out", "--npy", "--model"],
    encode_main: ["--sample", "--seed", "--threads", "--batch-size", "--precision", "--out", "--model"],
    info_main: ["--json", "--list", "--model"],
}
FLAGS = {"--sample", "--json", "--list"}


@st.composite
def command_line(draw, main, model: Path, tmp: Path):
    args = []
    for name in draw(st.lists(st.sampled_from(OPTIONS[main] + ["--bogus", "-x"]), max_size=5)):
        args.append(name)
        if name in FLAGS or name in ("--bogus", "-x") and draw(st.booleans()):
            continue
        if name == "--precision":
            args.append(draw(st.sampled_from(["fp32", "int8", "int4", "", "FP32"])))
        elif name in ("--out", "--npy"):
            args.append(str(tmp / draw(st.sampled_from(["o.png", "o.npy", "o.jpg", "o.txt", "d/o.png", "",
                                                         "in.npy", "exists", "o.bmp"]))))
        elif name == "--model":
            args.append(draw(st.sampled_from([str(model), str(tmp), str(tmp / "none"), "fashion-mnist", "nope",
                                              str(tmp / "in.npy")])))
        elif name == "--seed":  # negative seeds: the runtime's own fix (issue 25) adds them here
            args.append(draw(st.sampled_from(["0", "7", str(2**64), "1.5", "abc", "", "nan"])))
        else:
            args.append(draw(NUMBERS))
    if main in (decode_main, encode_main) and draw(st.integers(0, 7)):
        args.insert(0, str(tmp / draw(st.sampled_from(["in.npy", "in.npy", "none.npy", "img.png"]))))
    if main is not info_main and "--model" not in args:
        args += ["--model", str(model)]
    # A run that succeeds writes everything it is asked for; keep those small (no streaming of 10^20 images).
    if main is sample_main and not any(a in args for a in ("--out",)) and "--npy" in args:
        args += ["--out", str(tmp / "o.png")]
    return args


@FUZZ
@given(data=st.data())
def test_command_lines_succeed_or_exit_2_with_one_line_and_write_nothing_half(tiny_export, data):
    main = data.draw(st.sampled_from(list(OPTIONS)))
    vae = VAE.load(tiny_export)
    with tempfile.TemporaryDirectory() as tmp, watchdog():
        tmp = Path(tmp)
        np.save(tmp / "in.npy", np.random.default_rng().random((3, vae.latent_dim if main is decode_main else
                                                                int(np.prod(vae.input_shape)))).astype(np.float32))
        (tmp / "exists").mkdir()
        before = {p.name for p in tmp.iterdir()}
        args = data.draw(command_line(main, tiny_export, tmp))
        cwd = os.getcwd()
        os.chdir(tmp)  # default outputs (samples.png, grid.png, latents.npy) land here
        try:
            code, _, err = cli(main, *args)
        finally:
            os.chdir(cwd)
        check_exit(code, err, args)
        after = {p.name for p in tmp.iterdir()}
        assert not any(n.startswith(".") and n.endswith(".tmp") for n in after), after
        if code != 0:
            assert after - before <= {"d"} and not any((tmp / "d").glob("*")), (args, after - before)


def test_a_folder_given_as_npy_is_refused_before_the_grid_is_written(tiny_export, tmp_path):
    """Found by `make fuzz`: the grid was written, then the .npy failed, and the failed command left the grid."""
    code, _, err = cli(sample_main, "--model", tiny_export, "--n", 3, "--out", tmp_path / "o.png", "--npy", tmp_path)
    assert code == 2
    assert err.strip() == f"error: --npy {tmp_path} is a folder, not a regular file; refusing to replace it"
    only(tmp_path, set())


# -- the JavaScript library and the C program ---------------------------------------------------------------------

def fuzzed_folders(model, tmp_path: Path) -> list[Path]:
    """FUZZ_CASES folders, each a tampered vae.json or tampered .onnx files with matching sha256 and bytes."""
    meta, files = model
    folders = []

    @FUZZ
    @given(data=st.data())
    def make(data):
        folder = tmp_path / f"case{len(folders)}"
        if data.draw(st.booleans()):
            doc, raw = data.draw(tampered_meta(meta))
            write_folder(folder, doc, {meta["files"][k]["path"]: files[k] for k in KEYS}, raw)
        else:
            write_folder(folder, *rehashed(meta, data.draw(tampered_files(files))))
        folders.append(folder)

    make()
    return folders


def test_the_javascript_loader_loads_or_throws_its_own_one_line_error_on_the_same_folders(model, tmp_path):
    """The Node library (web/src/node.js) on tampered vae.json and .onnx files, one Node process for all."""
    node = shutil.which("node")
    if node is None or not (REPO / "web" / "node_modules" / "onnxruntime-node").is_dir():
        msg = "node or web/node_modules is missing (make web-deps)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    folders = [str(f) for f in fuzzed_folders(model, tmp_path)]
    (tmp_path / "cases.json").write_text(json.dumps(folders))
    r = subprocess.run([node, str(REPO / "web" / "tools" / "fuzz-load.mjs"), str(tmp_path / "cases.json")],
                       capture_output=True, text=True, timeout=WATCHDOG_S + 10 * len(folders), cwd=REPO / "web")
    assert r.returncode == 0, r.stderr[-3000:]
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(results) == 4 * len(folders)
    for res in results:
        if not res["ok"]:
            assert res["name"] in ("ModelFolderError", "RuntimeInputError"), res
            assert res["message"].strip() and "\n" not in res["message"], res


def test_the_c_program_under_the_sanitizers_loads_or_refuses_in_one_line_the_same_folders(model, tmp_path):
    """The C program (native/), built with AddressSanitizer and UndefinedBehaviorSanitizer, on the same folders:
    --check, and a sample (fp32 and int8 in turn), a process each; each run exits 0 or 2 with one `vae-sample: ...`
    line, within the watchdog's time, and no sanitizer speaks (a finding ends the run with another exit status)."""
    exe = sanitized_native()
    out = tmp_path / "out"
    out.mkdir()
    verdicts = {0: 0, 2: 0}
    for i, folder in enumerate(fuzzed_folders(model, tmp_path)):
        for args in (["--check"], ["--n", 2, "--npy", out / "x.npy", "--out", out / "x.pgm", "--precision",
                                   ("fp32", "int8")[i % 2]]):
            r = vae_sample(exe, "--model", folder, *args, env=SANITIZER_ENV, cwd=out, timeout=WATCHDOG_S)
            assert sanitizers_silent(r) and r.returncode in (0, 2), (folder, args, r.returncode, r.stderr[-4000:])
            verdicts[r.returncode] += 1
            if r.returncode == 2:
                lines = r.stderr.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("vae-sample: "), (folder, args, r.stderr)
            made = {p.name for p in out.iterdir()}
            assert made <= ({"x.npy", "x.pgm"} if r.returncode == 0 else set()), made  # nothing half-written
            for name in made:
                (out / name).unlink()
    print(f"C program under the sanitizers: {verdicts[0]} runs succeeded, {verdicts[2]} refused in one line")

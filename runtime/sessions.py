"""onnxruntime: imported with a diagnosis when it cannot be, and the sessions that run a model folder's files.

A file is checked before onnxruntime reads it: that it is ONNX at all, and that the installed onnxruntime reads
its IR version and opset (compat.py). The encoder's session can wait until something encodes (LazySession).
"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np

from typing import Any

from . import closed_list, compat
from .errors import ModelFolderError, one_line
from .rules import message
from .folder import ModelFolder


def _import_onnxruntime():
    """import onnxruntime; an older release built for numpy 1.x under numpy 2 fails here, so say which is which."""
    try:
        import onnxruntime
    except ImportError as e:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ort_version = version("onnxruntime")
        except PackageNotFoundError:
            raise ImportError("onnxruntime is not installed: pip install onnxruntime") from None
        if int(np.__version__.split(".")[0]) >= 2 and compat.parse_version(ort_version) < (1, 19):
            raise ImportError(f"onnxruntime {ort_version} was built for numpy 1.x, and numpy {np.__version__} is "
                              f"installed: pip install 'numpy<2', or onnxruntime >= 1.19") from None
        raise ImportError(f"cannot import onnxruntime {ort_version}: {one_line(e)}") from None
    return onnxruntime


ort = _import_onnxruntime()
InferenceSession = Any  # onnxruntime ships no types: its sessions are Any to a type checker

# Each session has its own thread pool, whose threads spin after a run waiting for more work; by default
# long enough to hold a core the next session needs (reconstruct runs the encoder, then the decoder) or another
# process needs. 100 µs still bridges back-to-back calls (docs/performance.md, onnxruntime settings, measures
# both). Versions without the key ignore it.
SESSION_CONFIG = {"session.intra_op.spin_duration_us": "100"}


def check_readable(data: bytes, name: str) -> tuple[int, int]:
    """Refuse a file that is not ONNX (no IR version or opset: damage, or a few stray bytes), one that holds what
    a model folder may not (closed_list.py), and, in one line that names both versions, a file newer than the
    installed onnxruntime reads."""
    try:
        ir_version, opset = compat.onnx_versions(data)
        outside_the_list = closed_list.problem(data)
    except ValueError as e:
        raise ModelFolderError(message("not_onnx", path=name, reason=e)) from None
    if outside_the_list:
        raise ModelFolderError(message("outside_list", path=name, what=outside_the_list))
    problem = compat.problem(ir_version, opset, ort.__version__, name)
    if problem:
        raise ModelFolderError(problem)
    return ir_version, opset


def new_session(data: bytes, threads: int | None = None, providers: list | None = None, ort_format: bool = False,
                config: dict | None = None, **attributes) -> InferenceSession:
    """The one onnxruntime session factory (the runtime's files, the export's parity check, the benchmarks): from
    bytes, errors-only logging, `threads` intra-op threads and one inter-op (None: onnxruntime decides),
    config's session entries (SESSION_CONFIG unless given: {} is onnxruntime's defaults) and SessionOptions
    attributes. Checks nothing: session() below is the one for a model folder's files."""
    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: warnings from the graph optimizer are noise for users
    if ort_format:
        so.add_session_config_entry("session.load_model_format", "ORT")
    for key, value in (SESSION_CONFIG if config is None else config).items():
        so.add_session_config_entry(key, value)
    for key, value in attributes.items():
        setattr(so, key, value)
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=so, providers=providers or ["CPUExecutionProvider"])


def session(name: str, data: bytes, threads: int | None, providers: list,
            ort_format: bool = False) -> InferenceSession:
    """A session built from data, the bytes of the file `name` that ModelFolder.read verified: never from the path
    again, so that a file replaced after its check never runs (issue 31). Its cost in peak memory against the
    path-based load is in docs/performance.md (bench/cold_start.py). An ORT-format file is not an ONNX protobuf,
    so there is no closed list to walk (rule G1): onnxruntime checks its own format."""
    versions = None if ort_format else check_readable(data, name)
    try:
        return CheckedSession(new_session(data, threads, providers, ort_format), name)
    except Exception as e:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        too_new = versions and compat.refused(*versions, ort.__version__, name)
        raise ModelFolderError(too_new or message("not_onnx", path=name, reason=one_line(e))) from None


class CheckedSession:
    """An onnxruntime session whose failure to run is one line that names its file (ModelFolderError), and whose
    outputs are checked after every run (rule G3): float32, of exactly the shapes the caller expects.

    The runtime checks every input before a run, so a run that fails is a file that does not compute what it
    declares: damage that still parses, passes onnxruntime's checks and has the right inputs and outputs, such
    as a layer fed the wrong tensor. onnxruntime does not hold a run's outputs to
    the shapes the graph declares, so a graph can declare [batch, C, H, W] and return one image, or more pixels."""

    def __init__(self, session: InferenceSession, name: str):
        self._session, self._name = session, name

    @property
    def name(self) -> str:
        """The file's path, as every message names it."""
        return self._name

    def __getattr__(self, name: str):  # get_inputs, get_outputs, get_providers, ...: the session's own
        if name.startswith("_"):  # not set yet (a copy being made): not the session's either
            raise AttributeError(name)
        return getattr(self._session, name)

    def run(self, names: list[str] | None, feed: dict, expect: list[tuple[int, ...]]) -> list[np.ndarray]:
        """The outputs `names` (None: all) for `feed`; expect holds each one's shape (all float32)."""
        try:
            outputs = self._session.run(names, feed)
        except Exception as e:
            if not type(e).__module__.startswith("onnxruntime"):
                raise
            if "Failed to allocate" in str(e):  # its arena out of memory: the batch's fault, not the file's
                raise MemoryError(one_line(e)) from None
            raise ModelFolderError(message("failed_to_run", path=self._name, reason=one_line(e))) from None
        if len(outputs) != len(expect):  # names=None on a graph of more outputs than the contract lets through
            raise ModelFolderError(f"{self._name} returned {len(outputs)} outputs; expected {len(expect)}")
        for got, shape in zip(outputs, expect):
            if not (isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == tuple(shape)):
                what = f"{got.dtype} {show_shape(got.shape)}" if isinstance(got, np.ndarray) else type(got).__name__
                raise ModelFolderError(message("returned", path=self._name, got=what, shape=show_shape(shape)))
        return outputs


def show_shape(shape) -> str:
    """[1, 1, 2, 3], as every reader writes a shape."""
    return f"[{', '.join(map(str, shape))}]"


class LazySession:
    """An encoder checked from its file's bytes at load, whose onnxruntime session is made on its first run.

    VAE.load checks the encoder against vae.json and the decoder from the graph's inputs and outputs, read from
    the file's bytes (compat.onnx_signature, the same facts the session would give); the session (its time and
    memory: docs/performance.md) waits until something encodes. The file's sha256 is checked again
    then, as it is read once more: its bytes are not kept meanwhile, so that sampling never holds them (their
    size in memory), and the session is built from the bytes of that second read, verified again (ModelFolder.read).
    Thread-safe: the first run makes the one session under a lock."""

    def __init__(self, make, signature: tuple[list, list, dict]):
        self._make, self._lock = make, threading.Lock()
        self._session: Any = None
        inputs, outputs, _ = signature
        arg = lambda name_dims: SimpleNamespace(name=name_dims[0], shape=name_dims[1])  # noqa: E731 (a NodeArg)
        self._inputs, self._outputs = [arg(i) for i in inputs], [arg(o) for o in outputs]

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def run(self, names: list[str] | None, feed: dict, expect: list[tuple[int, ...]]) -> list[np.ndarray]:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._make()
        return self._session.run(names, feed, expect)


def lazy_session(make, data: bytes, name: str):
    """The session that make() returns, made on first use (a LazySession); the file's bytes (data) are checked
    now. Made now where the graph does not parse: then onnxruntime's own error speaks at load."""
    check_readable(data, name)
    try:
        signature = compat.onnx_signature(data)
    except ValueError:
        return make()
    return LazySession(make, signature)


def check_ort_format(folder: ModelFolder, *keys: str) -> None:
    """ORT-format files must be there, and the installed onnxruntime as new as the one that wrote them."""
    if not all(folder.has(k) for k in keys):
        raise ModelFolderError(f"{folder.path} has no ORT-format files; re-export with `vae-export ... --ort`")
    made = (folder.meta.get("ort_format") or {}).get("made_by_onnxruntime")
    if made and compat.parse_version(ort.__version__) < compat.parse_version(made):
        raise ModelFolderError(f"{folder.path}: the .ort files need onnxruntime >= {made} (installed: "
                               f"{ort.__version__}), which wrote them; upgrade onnxruntime, or load the .onnx files")


def open_file(folder: ModelFolder, key: str, threads: int | None, providers: list, ort_format: bool = False,
              lazy: bool = False):
    """The session of files[key], its bytes checked against vae.json first; lazy: a LazySession."""
    name = str(folder.where(key))
    make = lambda: session(name, folder.read(key), threads, providers, ort_format)  # noqa: E731
    return lazy_session(make, folder.read(key), name) if lazy else make()

"""The torch-free VAE: an exported encoder and decoder run by onnxruntime, numpy in and out.

Everything here is stateless after loading (onnxruntime sessions and a dict; the encoder's session is made
once, under a lock, on first use), so one loaded VAE can be shared by many threads: InferenceSession.run is
thread-safe and every call makes its own random Generator.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np

from . import bundled, compat, prior


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:300] if s else type(e).__name__


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
        raise ImportError(f"cannot import onnxruntime {ort_version}: {_one_line(e)}") from None
    return onnxruntime


ort = _import_onnxruntime()

FORMAT = "vae-edge-onnx"  # the versions this runtime reads: prior.FORMAT_VERSIONS
PRECISIONS = {"fp32": ("encoder", "decoder"), "int8": ("encoder_int8", "decoder_int8")}
DEFAULT_BATCH_SIZE = 1024


class RuntimeInputError(ValueError):
    """Bad input from the caller (shape, dtype, NaN/inf, n <= 0, ...); the message is one line."""


class ModelFolderError(ValueError):
    """A model folder that is missing, corrupt, tampered with or inconsistent; the message is one line."""


def missing_model_message(folder: Path) -> str:
    return f"no exported model at {folder}; run `vae-export model.pt --out {folder}` first"


def read_meta(path: str | os.PathLike = "vae-onnx") -> dict:
    """Read and sanity-check vae.json of an export folder."""
    folder = Path(path)
    meta_path = folder / "vae.json"
    if not folder.is_dir() or not meta_path.is_file():
        raise ModelFolderError(missing_model_message(folder))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{meta_path} is not readable JSON (corrupt?): {_one_line(e)}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFolderError(f"{meta_path} is not a vae-edge ONNX export (format should be {FORMAT!r})")
    if prior.format_problem(meta):
        raise ModelFolderError(f"{meta_path} {prior.format_problem(meta)}")
    try:
        model, files = meta["model"], meta["files"]
        shape = tuple(int(v) for v in model["input_shape"])
        latent_dim = int(model["latent_dim"])
        assert len(shape) == 3 and min(shape) > 0 and latent_dim > 0 and isinstance(files, dict)
    except (KeyError, TypeError, ValueError, AssertionError):
        raise ModelFolderError(f"{meta_path} lacks valid model.input_shape, model.latent_dim or files") from None
    return meta


def check_file(folder: Path, meta: dict, key: str) -> bytes:
    """Return the bytes of files[key], refusing a missing file or one whose sha256 differs from vae.json."""
    entry = meta["files"].get(key)
    if not isinstance(entry, dict) or "path" not in entry or "sha256" not in entry:
        raise ModelFolderError(f"{folder / 'vae.json'} lists no {key} file")
    # The path comes from a file we do not control: keep it inside the folder.
    name = str(entry["path"])
    if os.path.isabs(name) or ".." in Path(name).parts:
        raise ModelFolderError(f"{folder / 'vae.json'}: {key} path {name!r} leaves the model folder")
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelFolderError(f"cannot read {path}: {_one_line(e)}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ModelFolderError(f"{path} does not match the sha256 in vae.json (tampered or corrupt); "
                               f"refusing to load it")
    return data


def verify_files(path: str | os.PathLike = "vae-onnx") -> list[tuple[str, str, str | None]]:
    """Check every file listed in vae.json: (key, path, None if it is intact else the reason)."""
    folder = Path(path)
    meta = read_meta(folder)
    out = []
    for key in meta["files"]:
        try:
            check_file(folder, meta, key)
            out.append((key, str(folder / meta["files"][key]["path"]), None))
        except ModelFolderError as e:
            entry = meta["files"][key]
            where = str(folder / entry["path"]) if isinstance(entry, dict) and "path" in entry else key
            out.append((key, where, str(e)))
    return out


# Each session has its own thread pool, whose threads spin after a run waiting for more work; by default
# long enough to hold a core the next session needs (reconstruct runs the encoder, then the decoder: 2.3x
# slower at batch 1024 on 2 cores) or another process needs. 100 µs still bridges back-to-back calls, so
# batch-1 latency is unchanged (bench/runtime.py measures both). Versions without the key ignore it.
SESSION_CONFIG = {"session.intra_op.spin_duration_us": "100"}


def check_readable(data: bytes, name: str) -> None:
    """Refuse, in one line that names both versions, a file newer than the installed onnxruntime reads."""
    try:
        ir_version, opset = compat.onnx_versions(data)
    except ValueError:
        return  # not ONNX protobuf (an .ort file, or damage): onnxruntime's own check speaks
    problem = compat.problem(ir_version, opset, ort.__version__)
    if problem:
        raise ModelFolderError(f"{name} {problem}")


def _session(path: Path, data: bytes, threads: int | None, providers: list,
             ort_format: bool = False) -> ort.InferenceSession:
    """A session for the file at path, whose bytes (data) check_file has checked. onnxruntime reads the file
    again from disk (the page cache): handed the bytes, it keeps a copy of its own beside ours while it builds
    the session, 3.3 MiB more peak memory for the bundled decoder (bench/cold_start.py)."""
    name = str(path)
    so = ort.SessionOptions()
    if ort_format:
        so.add_session_config_entry("session.load_model_format", "ORT")
    else:
        check_readable(data, name)
    del data  # the caller holds no other reference: freed before onnxruntime allocates
    so.log_severity_level = 3  # errors only: warnings from the graph optimizer are noise for users
    for key, value in SESSION_CONFIG.items():
        so.add_session_config_entry(key, value)
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(name, sess_options=so, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise ModelFolderError(f"{name} is not a loadable ONNX model (corrupt?): {_one_line(e)}") from None


class _LaterSession:
    """An encoder checked from its file's bytes at load, whose onnxruntime session is made on its first run.

    VAE.load checks the encoder against vae.json and the decoder from the graph's inputs, outputs and metadata,
    read from the file's bytes (compat.onnx_signature, the same facts the session would give); the session, about
    12 ms and 7 MiB for the bundled encoder, waits until something encodes. The file's sha256 is checked again
    then, as onnxruntime reads it once more. Thread-safe: the first run makes the one session under a lock."""

    def __init__(self, make, signature: tuple[list, list, dict]):
        self._make, self._session, self._lock = make, None, threading.Lock()
        inputs, outputs, meta = signature
        arg = lambda name_dims: SimpleNamespace(name=name_dims[0], shape=name_dims[1])  # noqa: E731 (a NodeArg)
        self._inputs, self._outputs = [arg(i) for i in inputs], [arg(o) for o in outputs]
        self._meta = SimpleNamespace(custom_metadata_map=meta)

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def get_modelmeta(self):
        return self._meta

    def run(self, *args, **kwargs):
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._make()
        return self._session.run(*args, **kwargs)


def _show(dims: list):
    return dims[0] if len(dims) == 1 else dims


def _dims(shape) -> list:
    """Static dims as ints; symbolic (batch) dims as None."""
    return [d if isinstance(d, int) else None for d in shape]


class VAE:
    """An exported VAE on onnxruntime: encode, decode, sample, reconstruct, interpolate."""

    def __init__(self, encoder: ort.InferenceSession | None, decoder: ort.InferenceSession, meta: dict,
                 precision: str = "fp32", batch_size: int = DEFAULT_BATCH_SIZE, name: str = "model"):
        self._enc, self._dec, self._meta = encoder, decoder, meta
        self.precision = precision
        self.folder: Path | None = None  # where it was loaded from, and the bundled model's name if it is one
        self.bundled: str | None = None
        self._prior: prior.Prior | None = None  # a format-2 folder's prior.onnx and score.onnx (VAE.load)
        self.batch_size = _check_count(batch_size, "batch_size")
        self._shape = tuple(int(v) for v in meta["model"]["input_shape"])
        self._latent = int(meta["model"]["latent_dim"])
        dec_latent = self._check_decoder(name)
        enc_latent = self._check_encoder(name) if encoder is not None else None
        want = [self._latent]
        if enc_latent is not None and (enc_latent != want or dec_latent != want):
            raise ModelFolderError(
                f"{name}: encoder and decoder disagree on latent_dim: the encoder gives {_show(enc_latent)}"
                f"{' (as vae.json says)' if enc_latent == want else ''}, the decoder takes {_show(dec_latent)}"
                f"{' (as vae.json says)' if dec_latent == want else ''}")
        if dec_latent != want:
            raise ModelFolderError(f"{name}: the decoder and vae.json disagree on latent_dim: vae.json says "
                                   f"{self._latent}, the decoder takes {_show(dec_latent)}")

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, precision: str = "fp32", threads: int | None = None,
             providers: list | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
             decoder_only: bool = False, ort_format: bool = False) -> "VAE":
        """Load an export folder, refusing files whose sha256 differs from vae.json.

        path: a folder written by vae-export, or the name of a model bundled with the package; None means
        ./vae-onnx if it exists, else the bundled default (`vae-info --list` lists them).

        Both files are checked at load (sha256, versions, shapes, roles); the encoder's onnxruntime session is
        made when something first encodes, so that sampling never pays for it.
        decoder_only=True reads the decoder alone: enough for sample and decode; encode, reconstruct and
        interpolate then raise.
        ort_format=True loads the ORT-format files (.ort) that `vae-export --ort` wrote, as onnxruntime's
        mobile and minimal builds would.
        """
        if precision not in PRECISIONS:
            raise RuntimeInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
            raise RuntimeInputError(f"threads must be a non-negative int (0: onnxruntime decides), got {threads!r}")
        providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        for p in providers:
            pname = p[0] if isinstance(p, (tuple, list)) else p
            if pname not in available:
                # onnxruntime would only warn and fall back to CPU; an explicit request deserves an error.
                raise RuntimeInputError(f"provider {pname!r} is not available here; available: {', '.join(available)}")
        folder, bundled_name = bundled.resolve(path)
        meta = read_meta(folder)
        enc_key, dec_key = (f"{k}_ort" if ort_format else k for k in PRECISIONS[precision])
        if precision == "int8" and not (enc_key in meta["files"] and dec_key in meta["files"]):
            if meta.get("int8") and "method" not in meta["int8"]:
                raise ModelFolderError(f"{folder} has no int8 files: at export their error against fp32 was over "
                                       f"the bound (vae-info shows it); use precision='fp32'")
            raise ModelFolderError(f"{folder} has no int8 files; re-export with `vae-export ... --quantize int8` "
                                   f"or use precision='fp32'")
        if ort_format:
            _check_ort_format(folder, meta, enc_key, dec_key)

        def session(key):
            return _session(folder / meta["files"][key]["path"], check_file(folder, meta, key), threads, providers,
                            ort_format)

        encoder = None if decoder_only else session(enc_key) if ort_format else _later(session, enc_key, folder, meta)
        vae = cls(encoder, session(dec_key), meta, precision, batch_size, name=str(folder))
        vae.folder, vae.bundled = folder, bundled_name
        if meta.get("prior"):  # prior.onnx and score.onnx stay fp32 at any precision
            vae._prior = prior.Prior(meta, lambda key: _session(folder / meta["files"][key]["path"],
                                                                check_file(folder, meta, key), threads, providers))
        return vae

    def _check_decoder(self, name: str) -> list:
        """The decoder must map z [batch, latent_dim] -> x [batch, C, H, W]; returns z's dims past the batch."""
        din, dout = self._dec.get_inputs(), self._dec.get_outputs()
        tagged = self._dec.get_modelmeta().custom_metadata_map.get("role")
        if len(din) != 1 or len(dout) != 1 or tagged not in (None, "decoder"):
            raise ModelFolderError(f"{name}: the decoder file is not a decoder (z -> x); encoder and decoder swapped?")
        if _dims(dout[0].shape)[1:] != list(self._shape):
            raise ModelFolderError(f"{name}: the decoder returns x of shape {dout[0].shape} but vae.json says "
                                   f"input_shape {list(self._shape)}")
        self._z_name = din[0].name
        return _dims(din[0].shape)[1:]

    def _check_encoder(self, name: str) -> list:
        """The encoder must map x [batch, C, H, W] -> mu, logvar [batch, latent_dim]; returns mu's dims."""
        ein, eout = self._enc.get_inputs(), self._enc.get_outputs()
        tagged = self._enc.get_modelmeta().custom_metadata_map.get("role")
        if len(ein) != 1 or len(eout) != 2 or tagged not in (None, "encoder"):
            raise ModelFolderError(f"{name}: the encoder file is not an encoder (x -> mu, logvar); "
                                   f"encoder and decoder swapped?")
        if _dims(ein[0].shape)[1:] != list(self._shape):
            raise ModelFolderError(f"{name}: the encoder takes x of shape {ein[0].shape} but vae.json says "
                                   f"input_shape {list(self._shape)}")
        self._x_name = ein[0].name
        names = [o.name for o in eout]
        self._enc_out = ["mu", "logvar"] if set(names) == {"mu", "logvar"} else names
        mu_dims, logvar_dims = (_dims(o.shape)[1:] for o in eout)
        return mu_dims if mu_dims == logvar_dims else [mu_dims, logvar_dims]

    # -- facts -----------------------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self._latent

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def meta(self) -> dict:
        """The vae.json dict (a copy: the loaded model never changes)."""
        return json.loads(json.dumps(self._meta))

    def __repr__(self) -> str:
        m = self._meta["model"]
        return (f"VAE(arch={m.get('arch')!r}, input_shape={self._shape}, latent_dim={self._latent}, "
                f"precision={self.precision!r}, batch_size={self.batch_size}"
                f"{', decoder_only=True' if self._enc is None else ''})")

    # -- input checks ----------------------------------------------------------------------------------
    def _layout(self, x) -> tuple[np.ndarray, bool]:
        """Check x's shape and dtype; return it as an array and whether it is flat (N, C*H*W)."""
        x = np.asarray(x)
        c, h, w = self._shape
        d = c * h * w
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise RuntimeInputError(f"x has dtype {x.dtype}; pass floats in [0, 1] or uint8 in [0, 255]")
        if x.ndim == 4 and x.shape[1:] == self._shape:
            flat = False
        elif x.ndim == 2 and x.shape[1] == d:
            flat = True
        else:
            hint = "; add a batch axis (x[None])" if x.shape in (self._shape, (d,)) else ""
            raise RuntimeInputError(f"x has shape {tuple(x.shape)}; expected (N, {c}, {h}, {w}) or (N, {d}){hint}")
        if x.shape[0] == 0:
            raise RuntimeInputError("x holds no images (N = 0)")
        return x, flat

    def _to_float(self, x: np.ndarray) -> np.ndarray:
        """One chunk of checked input -> float32 (N, C, H, W) in [0, 1]."""
        x = x.reshape(x.shape[0], *self._shape)
        if x.dtype == np.uint8:
            return x.astype(np.float32) / np.float32(255)
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise RuntimeInputError("x contains NaN or inf")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise RuntimeInputError(f"x has values in [{lo:g}, {hi:g}]; floats must lie in [0, 1] "
                                    f"(or pass uint8 in [0, 255])")
        return np.ascontiguousarray(x)

    def _check_z(self, z) -> np.ndarray:
        z = np.asarray(z)
        if not np.issubdtype(z.dtype, np.floating):
            raise RuntimeInputError(f"z has dtype {z.dtype}; latents must be floats")
        if z.ndim != 2 or z.shape[1] != self._latent:
            hint = "; add a batch axis (z[None])" if z.shape == (self._latent,) else ""
            raise RuntimeInputError(f"z has shape {tuple(z.shape)}; expected (N, {self._latent}) "
                                    f"(latent_dim is {self._latent}){hint}")
        if z.shape[0] == 0:
            raise RuntimeInputError("z holds no latents (N = 0)")
        return z

    # -- the networks ----------------------------------------------------------------------------------
    def _encode_chunk(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tuple(self._enc.run(self._enc_out, {self._x_name: self._to_float(x)}))

    def _decode_chunk(self, z: np.ndarray) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.float32)
        if not np.isfinite(z).all():
            raise RuntimeInputError("z contains NaN or inf")
        return self._dec.run(None, {self._z_name: z})[0]

    def encode(self, x, sample: bool = False, seed: int | None = None):
        """x -> (mu, logvar), each (N, latent_dim) float32; or, with sample=True, z = mu + exp(logvar/2) * eps.

        eps ~ N(0, I) comes from numpy.random.default_rng(seed), drawn in order, so the result does not
        depend on batch_size.
        """
        if self._enc is None:
            raise RuntimeInputError("this VAE was loaded with decoder_only=True; load it without to encode")
        x, _ = self._layout(x)
        n, bs = x.shape[0], self.batch_size
        mu = np.empty((n, self._latent), np.float32)
        logvar = np.empty((n, self._latent), np.float32)
        for i in range(0, n, bs):
            mu[i:i + bs], logvar[i:i + bs] = self._encode_chunk(x[i:i + bs])
        if not sample:
            return mu, logvar
        rng = np.random.default_rng(seed)
        z = np.empty_like(mu)
        for i in range(0, n, bs):
            eps = rng.standard_normal((min(bs, n - i), self._latent))
            z[i:i + bs] = mu[i:i + bs] + np.exp(0.5 * logvar[i:i + bs]) * eps
        return z

    def decode(self, z) -> np.ndarray:
        """z (N, latent_dim) -> pixel probabilities (N, C, H, W) float32 in [0, 1]."""
        z = self._check_z(z)
        out = np.empty((z.shape[0], *self._shape), np.float32)
        i = 0
        for chunk in self._iter_decode(z):
            out[i:i + len(chunk)] = chunk
            i += len(chunk)
        return out

    def iter_decode(self, z) -> Iterator[np.ndarray]:
        """Yield decode(z) in chunks of batch_size; z may be a memory-mapped .npy of any length."""
        return self._iter_decode(self._check_z(z))

    def _iter_decode(self, z: np.ndarray) -> Iterator[np.ndarray]:
        for i in range(0, z.shape[0], self.batch_size):
            yield self._decode_chunk(z[i:i + self.batch_size])

    def iter_samples(self, n: int, seed: int | None = None, temperature: float = 1.0,
                     batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Yield n samples in chunks of batch_size, (m, C, H, W) each; they concatenate to sample(n, seed)."""
        n = _check_count(n, "n")
        temperature = _check_temperature(temperature)
        bs = self.batch_size if batch_size is None else _check_count(batch_size, "batch_size")
        return self._iter_samples(n, seed, temperature, bs)

    def _iter_samples(self, n: int, seed, temperature: float, bs: int) -> Iterator[np.ndarray]:
        # Generator.standard_normal fills values in order, so drawing (m, latent_dim) chunk after chunk
        # gives the same numbers as one (n, latent_dim) draw: the samples do not depend on bs.
        noise = prior.Noise(seed)  # eps as default_rng(seed) draws it; a learned prior's u from a spawned stream
        for i in range(0, n, bs):
            z = noise.eps((min(bs, n - i), self._latent)) * temperature
            if self._prior is not None:  # temperature scales eps, never the mixture's u
                z = self._prior.z(z, noise.u(len(z)))
            yield self._decode_chunk(z)

    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> np.ndarray:
        """n images (n, C, H, W) float32 decoded from z = temperature * N(0, I), z from default_rng(seed); with a
        learned prior or two layers, z = prior.onnx(temperature * eps, u) (runtime/prior.py)."""
        n = _check_count(n, "n")
        out = np.empty((n, *self._shape), np.float32)
        i = 0
        for chunk in self.iter_samples(n, seed, temperature):
            out[i:i + len(chunk)] = chunk
            i += len(chunk)
        return out

    @property
    def prior(self) -> str:
        """The prior's name: gaussian (N(0, I)) or vamp; vae.json's "prior" says more."""
        return self._prior.name if self._prior is not None else "gaussian"

    def from_noise(self, eps, u=None) -> np.ndarray:
        """The z that sample() decodes for noise eps (N, latent_dim) and, for a mixture, u (N,) in [0, 1)."""
        eps = self._check_z(eps)
        return self._prior.z(eps, u) if self._prior is not None else eps.astype(np.float32)

    def log_likelihood(self, x, k: int = 1000, seed: int | None = None, eps=None) -> np.ndarray:
        """The IWAE estimate of log p(x) in nats, per image, with k samples, from score.onnx (format 2 folders);
        x holds the pixels the likelihood is defined on (0/1 for a --binarize model); eps (k, N, latent_dim)
        optional noise."""
        if self._prior is None:
            raise RuntimeInputError("this folder has no score.onnx (a format-1, Gaussian-prior export); "
                                    "use vae-eval on its checkpoint")
        x, _ = self._layout(x)
        return self._prior.log_likelihood(self._to_float(x), _check_count(k, "k"), seed, eps)

    def reconstruct(self, x) -> np.ndarray:
        """decode(mu(x)): probabilities in the layout of x ((N, C, H, W) or (N, C*H*W)), float32."""
        x, flat = self._layout(x)
        mu, _ = self.encode(x)
        out = self.decode(mu)
        return out.reshape(len(out), -1) if flat else out

    def interpolate(self, x1, x2, steps: int = 8) -> np.ndarray:
        """Decode `steps` points on the line from mu(x1) to mu(x2), both ends included.

        x1, x2: single images ((C, H, W) or (C*H*W,)) -> (steps, *image shape); or batches of the
        same shape ((N, C, H, W) or (N, C*H*W)) -> (steps, N, *image shape).
        """
        steps = _check_count(steps, "steps")
        if steps < 2:
            raise RuntimeInputError(f"steps must be >= 2 (both ends are included), got {steps}")
        a, b = np.asarray(x1), np.asarray(x2)
        if a.shape != b.shape:
            raise RuntimeInputError(f"x1 and x2 differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
        single = a.ndim in (1, 3)
        if single:
            a, b = a[None], b[None]
        a, flat = self._layout(a)
        self._layout(b)
        mu1, _ = self.encode(a)
        mu2, _ = self.encode(b)
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None, None]
        z = (1 - t) * mu1[None] + t * mu2[None]  # (steps, N, latent_dim)
        out = self.decode(z.reshape(-1, self._latent))
        n = a.shape[0]
        out = out.reshape(steps, n, -1) if flat else out.reshape(steps, n, *self._shape)
        return out[:, 0] if single else out


def _later(session, key: str, folder: Path, meta: dict):
    """The encoder's session made on first use (_LaterSession), or now where its bytes do not parse as ONNX
    (then onnxruntime's own error speaks at load) or are newer than the installed onnxruntime reads."""
    data = check_file(folder, meta, key)
    check_readable(data, str(folder / meta["files"][key]["path"]))
    try:
        signature = compat.onnx_signature(data)
    except ValueError:
        return session(key)
    return _LaterSession(lambda: session(key), signature)


def _check_ort_format(folder: Path, meta: dict, *keys: str) -> None:
    """ORT-format files must be there, and the installed onnxruntime as new as the one that wrote them."""
    if not all(k in meta["files"] for k in keys):
        raise ModelFolderError(f"{folder} has no ORT-format files; re-export with `vae-export ... --ort`")
    made = (meta.get("ort_format") or {}).get("made_by_onnxruntime")
    if made and compat.parse_version(ort.__version__) < compat.parse_version(made):
        raise ModelFolderError(f"{folder}: the .ort files need onnxruntime >= {made} (installed: {ort.__version__}), "
                               f"which wrote them; upgrade onnxruntime, or load the .onnx files")


def _check_count(n, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise RuntimeInputError(f"{what} must be an int, got {n!r}")
    if n <= 0:
        raise RuntimeInputError(f"{what} must be >= 1, got {n}")
    return int(n)


def _check_temperature(t) -> float:
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise RuntimeInputError(f"temperature must be a number, got {t!r}") from None
    if not math.isfinite(t) or t < 0:
        raise RuntimeInputError(f"temperature must be finite and >= 0, got {t}")
    return t

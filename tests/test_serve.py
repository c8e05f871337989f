"""vae-serve: batching gives each request what it would get alone; the routes, their formats and their errors;
the limits, the guards and the faults (a client gone, a slow client, a flood, SIGTERM, a killed worker).

Servers run as the real command on loopback, on a free port, each stopped at the end of its test or module.
Nothing here asserts a time: timeouts only bound how long a test may wait for an outcome."""
from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra: pip install -e '.[serve]'")

from vae_edge.runtime import VAE  # noqa: E402
from vae_edge.runtime.serve.batcher import Batcher, Job, QueueFull  # noqa: E402
from vae_edge.runtime.model import check_provider  # noqa: E402
from vae_edge.runtime.serve.codecs import HTTPError, negotiate, read_npy  # noqa: E402
from vae_edge.runtime.serve.metrics import Metrics  # noqa: E402
from vae_edge.runtime.errors import RuntimeInputError  # noqa: E402

BIN = Path(sys.executable).parent
JSON_HEADERS = {"Content-Type": "application/json"}
NPY = "application/x-npy"


# -- batching: each request gets what it would get alone ------------------------------------------------------
def _coalesced(vae, jobs: list[Job]) -> tuple[list, Metrics]:
    """Run the jobs through one Batcher, all queued before its first run (max_batch is their rows: one batch)."""
    metrics = Metrics()
    batcher = Batcher(vae, sum(j.rows for j in jobs), max_wait_s=10.0, max_queue=len(jobs), metrics=metrics)

    async def main():
        futures = [batcher.submit(j) for j in jobs]
        return await asyncio.gather(*futures)

    batcher.start()
    try:
        results = asyncio.run(main())
    finally:
        batcher.stop()
    return results, metrics


@pytest.fixture(params=["bundled-fp32", "bundled-int8", "mlp-fp32", "mlp-int8", "vamp-fp32"])
def model(request, tiny_export, vamp_export):
    """A loaded VAE of each kind: the bundled conv (a VampPrior), a small mlp, a two-layer VampPrior mlp."""
    name, precision = request.param.split("-")
    folder = {"bundled": None, "mlp": tiny_export, "vamp": vamp_export}[name]
    return VAE.load(folder, precision=precision)


def test_coalesced_requests_get_what_each_would_get_alone_bit_for_bit(model):
    rng = np.random.default_rng()
    c, h, w = model.input_shape
    samples = [(int(n), int(rng.integers(2**53)), float(t)) for n, t in zip(rng.integers(1, 40, 4), [1.0, 0.7, 0, 1.3])]
    latents = [rng.standard_normal((int(n), model.latent_dim)).astype(np.float32) for n in rng.integers(1, 30, 3)]
    images = [rng.random((int(n), c, h, w), dtype=np.float32) for n in rng.integers(1, 30, 3)]
    scores = [(x, int(k), int(rng.integers(2**53)), bits) for x, k, bits in zip(images, [1, 3], [False, True])]
    jobs = ([Job("sample", n, (n, s, t)) for n, s, t in samples] + [Job("decode", len(z), (z,)) for z in latents]
            + [Job("encode", len(x), (x,)) for x in images] + [Job("score", len(a[0]), a) for a in scores])
    rng.shuffle(jobs)
    results, metrics = _coalesced(model, jobs)
    assert metrics.batch_requests.count == 1  # one batch: each file that may be coalesced ran once
    coalesce = Batcher(model, 1, 0, 1, Metrics()).coalesce
    assert metrics.runs["decoder"].count == (1 if coalesce["decoder"] else 7)
    assert metrics.runs["encoder"].count == (1 if coalesce["encoder"] else 3)
    for job, got in zip(jobs, results):
        if job.kind == "sample":
            np.testing.assert_array_equal(got, model.sample(*job.args))
        elif job.kind == "decode":
            np.testing.assert_array_equal(got, model.decode(job.args[0]))
        elif job.kind == "score":  # each request's images scored alone, from image 0 of its seed's noise
            x, k, seed, bits = job.args
            np.testing.assert_array_equal(got, model.score(x, k=k, seed=seed, bits_per_dim=bits))
        else:
            mu, logvar = model.encode(job.args[0])
            np.testing.assert_array_equal(got[0], mu)
            np.testing.assert_array_equal(got[1], logvar)


def test_fp32_files_and_a_static_int8_decoder_are_coalesced_and_dynamic_int8_products_run_per_request():
    assert all(Batcher(VAE.load(), 1, 0, 1, Metrics()).coalesce.values())
    vae = VAE.load(precision="int8")
    int8 = Batcher(vae, 1, 0, 1, Metrics())
    # the bundled int8 decoder is static: activation scales fixed in the file, so a row's pixels are its own; the
    # encoder is mixed: its matrix products quantize their activations per call, so per batch
    assert vae.meta["int8"]["method"] == {"encoder": "mixed", "decoder": "static"}
    assert int8.coalesce == {"prior": True, "decoder": True, "encoder": False}
    assert int8.differences["decoder"] == 0 and int8.differences["encoder"] > 1e-3


def test_the_noise_a_seed_draws_decodes_to_what_sample_gives(model):
    seed = int(np.random.default_rng().integers(2**53))
    decoded = model.decode(model.from_noise(*model.noise(9, seed, 0.8)))
    np.testing.assert_array_equal(decoded, model.sample(9, seed, 0.8))


def test_a_request_with_bad_noise_arguments_fails_alone_in_its_batch():
    vae = VAE.load(decoder_only=True)
    good, bad = Job("sample", 2, (2, 5, 1.0)), Job("sample", 1, (1, -1, 1.0))
    results, _ = _coalesced_settled(vae, [good, bad])
    np.testing.assert_array_equal(results[0], vae.sample(2, 5))
    assert isinstance(results[1], RuntimeInputError)


def _coalesced_settled(vae, jobs):
    metrics = Metrics()
    batcher = Batcher(vae, sum(j.rows for j in jobs), 10.0, len(jobs), metrics)

    async def main():
        return await asyncio.gather(*[batcher.submit(j) for j in jobs], return_exceptions=True)

    batcher.start()
    try:
        return asyncio.run(main()), metrics
    finally:
        batcher.stop()


def test_a_full_queue_refuses_the_next_request():
    vae = VAE.load(decoder_only=True)
    batcher = Batcher(vae, 8, 0.0, max_queue=2, metrics=Metrics())  # not started: nothing is answered

    async def main():
        batcher.submit(Job("sample", 1, (1, 0, 1.0)))
        batcher.submit(Job("sample", 1, (1, 1, 1.0)))
        with pytest.raises(QueueFull):
            batcher.submit(Job("sample", 1, (1, 2, 1.0)))

    asyncio.run(main())


def test_an_abandoned_request_is_not_run():
    vae = VAE.load(decoder_only=True)
    metrics = Metrics()
    batcher = Batcher(vae, 8, 0.0, 4, metrics)
    kept, abandoned = Job("sample", 1, (1, 0, 1.0)), Job("sample", 3, (3, 1, 1.0))
    abandoned.abandoned = True

    async def main():
        futures = [batcher.submit(abandoned), batcher.submit(kept)]
        batcher.start()
        return await futures[1]

    try:
        asyncio.run(main())
    finally:
        batcher.stop()
    assert metrics.batch_rows.sum == 1


def test_the_accept_header_picks_the_format():
    offers = ("application/json", NPY, "image/png")
    assert negotiate(None, offers) == "application/json"
    assert negotiate("image/png", offers) == "image/png"
    assert negotiate("image/*;q=0.5, application/x-npy", offers) == NPY
    assert negotiate("*/*", offers) == "application/json"
    with pytest.raises(HTTPError) as e:
        negotiate("text/html", offers)
    assert e.value.status == 406


def test_an_npy_body_whose_header_claims_more_than_it_holds_is_refused_before_any_allocation():
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 32)})
    with pytest.raises(HTTPError) as e:
        read_npy(header.getvalue() + b"\0" * 128, "the latents")
    assert e.value.status == 400 and "bytes follow" in e.value.message


def test_a_provider_listed_but_unused_by_the_session_is_an_error():
    with pytest.raises(RuntimeInputError, match="could not use it"):
        check_provider("CUDAExecutionProvider", ["CPUExecutionProvider"])
    check_provider("CPUExecutionProvider", ["CPUExecutionProvider"])


# -- a server on loopback ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """vae-serve in a subprocess on a free loopback port; its log in a file."""

    def __init__(self, tmp_path: Path, *args: str, bin_dir: Path = BIN, env: dict | None = None):
        self.port = free_port()
        self.log = tmp_path / f"serve-{self.port}.log"
        self.proc = subprocess.Popen([str(bin_dir / "vae-serve"), "--port", str(self.port), *args],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), env=env)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()  # a server that never got ready is not left running
            raise

    def wait_ready(self, seconds: float = 60) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                if self.request("GET", "/v1/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready in {seconds} s: {self.log.read_text()[-2000:]}")

    def request(self, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict, bytes]:
        if isinstance(body, dict):
            body, headers = json.dumps(body).encode(), {**JSON_HEADERS, **(headers or {})}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def metric(self, line_start: str) -> float:
        text = self.request("GET", "/v1/metrics")[2].decode()
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"), "--max-body", "200000", "--max-pixels", "10000", "--threads", "1")
    yield s
    s.stop()


@pytest.fixture
def make_server(tmp_path):
    started = []

    def make(*args):
        started.append(Server(tmp_path, *args))
        return started[-1]

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def bundled():
    return VAE.load()


def _npy(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


def test_sample_answers_what_the_api_gives_for_the_same_seed(server, bundled):
    seed = int(np.random.default_rng().integers(2**53))
    status, headers, body = server.request("POST", "/v1/sample", {"n": 5, "seed": seed, "temperature": 0.9},
                                           {"Accept": NPY})
    assert status == 200 and headers["content-type"] == NPY and headers["x-seed"] == str(seed)
    np.testing.assert_array_equal(_npy(body), bundled.sample(5, seed, 0.9))


def test_sample_without_a_seed_says_the_seed_it_drew(server, bundled):
    status, headers, body = server.request("POST", "/v1/sample", {"n": 2})
    answer = json.loads(body)
    assert status == 200 and answer["seed"] == int(headers["x-seed"]) and answer["shape"] == [2, 1, 28, 28]
    np.testing.assert_array_equal(np.array(answer["images"], np.float32), bundled.sample(2, answer["seed"]))


def test_sample_as_png_is_one_grid_of_nrow_images_a_row(server):
    from PIL import Image

    status, headers, body = server.request("POST", "/v1/sample?nrow=4", {"n": 8, "seed": 1}, {"Accept": "image/png"})
    assert status == 200 and headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(body)).size == (4 * 30 + 2, 2 * 30 + 2)  # 28-pixel images, 2 pixels apart


def test_decode_takes_json_and_npy_latents(server, bundled):
    z = np.random.default_rng().standard_normal((3, bundled.latent_dim)).astype(np.float32)
    _, _, as_json = server.request("POST", "/v1/decode", {"latents": z.tolist()}, {"Accept": NPY})
    buf = io.BytesIO()
    np.save(buf, z)
    _, _, as_npy = server.request("POST", "/v1/decode", buf.getvalue(), {"Content-Type": NPY, "Accept": NPY})
    np.testing.assert_array_equal(_npy(as_json), bundled.decode(z))
    np.testing.assert_array_equal(_npy(as_npy), bundled.decode(z))


def test_encode_takes_json_npy_and_png_images(server, bundled):
    x = (np.random.default_rng().random((2, 1, 28, 28)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    np.save(buf, x)
    status, _, body = server.request("POST", "/v1/encode", buf.getvalue(), {"Content-Type": NPY, "Accept": NPY})
    mu, logvar = bundled.encode(x)
    assert status == 200
    np.testing.assert_array_equal(_npy(body), np.stack([mu, logvar]))
    _, _, body = server.request("POST", "/v1/encode", {"images": (x / np.float32(255)).tolist()})
    np.testing.assert_array_equal(np.array(json.loads(body)["mu"], np.float32), mu)
    png = io.BytesIO()
    from PIL import Image

    Image.fromarray(x[0, 0]).save(png, format="PNG")
    _, _, body = server.request("POST", "/v1/encode", png.getvalue(), {"Content-Type": "image/png"})
    np.testing.assert_array_equal(np.array(json.loads(body)["mu"], np.float32), mu[:1])


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_score_answers_what_vae_score_gives_for_json_and_npy_bodies_bit_for_bit(server, bundled):
    rng = np.random.default_rng()
    x, seed = rng.random((3, 1, 28, 28), dtype=np.float32), int(rng.integers(2**53))
    status, headers, body = server.request("POST", "/v1/score", {"images": x.tolist(), "k": 4, "seed": seed})
    answer = json.loads(body)
    expected = bundled.score(x, k=4, seed=seed)
    assert status == 200 and headers["x-seed"] == str(seed)
    assert {k: answer[k] for k in ("k", "seed", "units", "pixel_rule")} == \
        {"k": 4, "seed": seed, "units": "nats per image", "pixel_rule": bundled.pixel_rule}
    np.testing.assert_array_equal(np.array(answer["scores"]), expected)
    status, headers, body = server.request("POST", f"/v1/score?k=4&seed={seed}", _npy_bytes(x),
                                           {"Content-Type": NPY, "Accept": NPY})
    assert status == 200 and _npy(body).dtype == np.float64
    np.testing.assert_array_equal(_npy(body), expected)


def test_score_in_bits_per_dim_is_vae_scores_with_bits_per_dim(server, bundled):
    x = (np.random.default_rng().random((2, 784)) * 255).astype(np.uint8)
    status, _, body = server.request("POST", "/v1/score?seed=5&bits_per_dim=true", _npy_bytes(x),
                                     {"Content-Type": NPY})
    answer = json.loads(body)
    assert status == 200 and answer["units"] == "bits per dimension" and answer["k"] == 1
    np.testing.assert_array_equal(np.array(answer["scores"]), bundled.score(x, seed=5, bits_per_dim=True))


def test_score_takes_one_png_image_as_encode_does(server, bundled):
    from PIL import Image

    x = np.random.default_rng().integers(0, 256, (28, 28), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(x).save(png, format="PNG")
    status, _, body = server.request("POST", "/v1/score?seed=11&k=2", png.getvalue(), {"Content-Type": "image/png"})
    assert status == 200
    np.testing.assert_array_equal(np.array(json.loads(body)["scores"]), bundled.score(x[None, None], k=2, seed=11))


def test_score_without_a_seed_says_the_seed_it_drew_and_that_seed_gives_the_same_scores(server, bundled):
    x = np.random.default_rng().random((2, 1, 28, 28), dtype=np.float32)
    status, headers, body = server.request("POST", "/v1/score?k=2", _npy_bytes(x), {"Content-Type": NPY})
    answer = json.loads(body)
    assert status == 200 and answer["seed"] == int(headers["x-seed"])
    np.testing.assert_array_equal(np.array(answer["scores"]), bundled.score(x, k=2, seed=answer["seed"]))


def test_score_requests_are_counted_in_the_metrics(server):
    line = 'vae_serve_requests_total{route="/v1/score",status="200"}'
    before = server.metric(line)
    server.request("POST", "/v1/score", {"images": np.random.default_rng().random((1, 784)).tolist()})
    assert server.metric(line) == before + 1 and server.metric('vae_serve_run_rows_count{model_file="score"}') >= 1


def test_the_openapi_document_and_info_list_the_score_route(server, bundled):
    doc = json.loads(server.request("GET", "/v1/openapi.json")[2])
    score = doc["paths"]["/v1/score"]["post"]
    assert {p["name"] for p in score["parameters"]} == {"k", "seed", "bits_per_dim"}
    assert {"application/json", NPY, "image/png"} <= set(score["requestBody"]["content"])
    assert "422" in score["responses"] and "501" in score["responses"]
    info = json.loads(server.request("GET", "/v1/info")[2])
    assert info["score"] == {"route": True, "pixel_rule": bundled.pixel_rule, "threshold": None}
    assert info["settings"]["max_score_samples"] == 8192


def test_a_folder_without_score_onnx_answers_score_with_501_in_one_line_and_serves_the_rest(make_server):
    s = make_server("--model", str(Path(__file__).parent / "fixtures" / "format1-mlp"))
    status, _, body = s.request("POST", "/v1/score", {"images": [[0.5] * 784]})
    assert status == 501 and "has no score.onnx" in json.loads(body)["error"] and body.count(b"\n") <= 1
    assert json.loads(s.request("GET", "/v1/info")[2])["score"]["route"] is False
    assert s.request("POST", "/v1/sample", {"n": 1})[0] == 200


def _calibrated(tmp_path: Path, *args: str) -> Path:
    """A threshold.json from vae-score --calibrate --save on 8 random images of the bundled model (k 2)."""
    images, saved = tmp_path / "normal.npy", tmp_path / "threshold.json"
    np.save(images, np.random.default_rng().random((8, 1, 28, 28), dtype=np.float32))
    r = subprocess.run([str(BIN / "vae-score"), str(images), "--calibrate", "--fpr", "0.25", "--k", "2", "--save",
                        str(saved), "--quiet", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return saved


def test_with_a_threshold_scores_default_to_its_k_and_carry_flags(make_server, tmp_path, bundled):
    saved = _calibrated(tmp_path)
    t = json.loads(saved.read_text())["threshold"]
    s = make_server("--threshold", str(saved))
    x = np.random.default_rng().random((6, 1, 28, 28), dtype=np.float32)
    status, _, body = s.request("POST", "/v1/score?seed=3", _npy_bytes(x), {"Content-Type": NPY})
    answer = json.loads(body)
    expected = bundled.score(x, k=2, seed=3)
    assert status == 200 and answer["k"] == 2 and answer["threshold"] == t
    np.testing.assert_array_equal(np.array(answer["scores"]), expected)
    assert answer["flags"] == (expected > t).tolist()
    status, _, body = s.request("POST", "/v1/score?k=1", _npy_bytes(x), {"Content-Type": NPY})
    assert status == 422 and "threshold made with k 2" in json.loads(body)["error"]


def test_a_threshold_made_for_another_precision_is_refused_at_start_in_one_line(tmp_path):
    saved = _calibrated(tmp_path)
    r = subprocess.run([str(BIN / "vae-serve"), "--port", str(free_port()), "--threshold", str(saved),
                        "--precision", "int8"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "made with precision 'fp32'" in r.stderr, r.stderr


def _png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    f = io.BytesIO()
    Image.fromarray(np.random.default_rng().integers(0, 256, size[::-1], dtype=np.uint8)).save(f, format="PNG")
    return f.getvalue()


def _object_npy() -> bytes:
    f = io.BytesIO()
    np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return f.getvalue()


BAD = {  # request -> the status it must get, one JSON line each
    "malformed JSON": ("/v1/sample", b'{"n": 2', JSON_HEADERS, 400),
    "a JSON array": ("/v1/sample", b"[1, 2]", JSON_HEADERS, 422),
    "an unknown field": ("/v1/sample", b'{"count": 2}', JSON_HEADERS, 422),
    "n over the limit": ("/v1/sample", b'{"n": 1025}', JSON_HEADERS, 422),
    "n not an integer": ("/v1/sample", b'{"n": 2.5}', JSON_HEADERS, 422),
    "a negative seed": ("/v1/sample", b'{"seed": -1}', JSON_HEADERS, 422),
    "an infinite temperature": ("/v1/sample", b'{"temperature": Infinity}', JSON_HEADERS, 422),
    "a form body": ("/v1/sample", b"n=2", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    "NaN latents": ("/v1/decode", b'{"latents": [' + b",".join([b"NaN"] * 32) + b"]}", JSON_HEADERS, 422),
    "ragged latents": ("/v1/decode", b'{"latents": [[1, 2], [3]]}', JSON_HEADERS, 422),
    "latents of the wrong width": ("/v1/decode", b'{"latents": [[1, 2]]}', JSON_HEADERS, 422),
    "strings as latents": ("/v1/decode", b'{"latents": [["a"]]}', JSON_HEADERS, 422),
    "latents as text": ("/v1/decode", b"1 2 3", {"Content-Type": "text/plain"}, 415),
    "a pickled npy": ("/v1/decode", _object_npy(), {"Content-Type": NPY}, 422),
    "a truncated npy": ("/v1/decode", b"\x93NUMPY\x01\x00", {"Content-Type": NPY}, 400),
    "not an image": ("/v1/encode", b"GIF89a not really", {"Content-Type": "image/png"}, 400),
    "a truncated PNG": ("/v1/encode", _png((28, 28))[:400], {"Content-Type": "image/png"}, 400),
    "an image over the pixel limit": ("/v1/encode", _png((200, 200)), {"Content-Type": "image/png"}, 413),
    "images out of range": ("/v1/encode", json.dumps({"images": [[2.0] * 784]}).encode(), JSON_HEADERS, 422),
    "a body over the limit": ("/v1/decode", b"[" + b"0," * 150000 + b"0]", JSON_HEADERS, 413),
    "an unanswerable Accept": ("/v1/encode", b"{}", {**JSON_HEADERS, "Accept": "image/png"}, 406),
    "a bad nrow": ("/v1/sample?nrow=0", b"{}", JSON_HEADERS, 422),
    "an nrow int() cannot read": ("/v1/sample?nrow=%C2%B2", b"{}", JSON_HEADERS, 422),
    "an nrow of 5,000 digits": ("/v1/sample?nrow=" + "9" * 5000, b"{}", JSON_HEADERS, 422),
    "a k of 5,000 digits": ("/v1/score?k=" + "9" * 5000, json.dumps({"images": [[0.5] * 784]}).encode(),
                            JSON_HEADERS, 422),
    "k x images over the score limit": ("/v1/score?k=4097", json.dumps({"images": [[0.5] * 784] * 2}).encode(),
                                        JSON_HEADERS, 422),
    "k zero": ("/v1/score", json.dumps({"images": [[0.5] * 784], "k": 0}).encode(), JSON_HEADERS, 422),
    "k in the query and in the body": ("/v1/score?k=2", json.dumps({"images": [[0.5] * 784], "k": 2}).encode(),
                                       JSON_HEADERS, 422),
    "a bad bits_per_dim": ("/v1/score?bits_per_dim=maybe", json.dumps({"images": [[0.5] * 784]}).encode(),
                           JSON_HEADERS, 422),
    "NaN pixels to score": ("/v1/score", b'{"images": [[' + b",".join([b"NaN"] * 784) + b"]]}", JSON_HEADERS, 422),
    "pixels out of range to score": ("/v1/score", json.dumps({"images": [[1.5] * 784]}).encode(), JSON_HEADERS,
                                     422),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_4xx_of_one_json_line(server, case):
    path, body, headers, expected = BAD[case]
    status, response_headers, answer = server.request("POST", path, body, headers)
    assert status == expected, answer
    assert response_headers["content-type"] == "application/json"
    assert answer.count(b"\n") <= 1 and b"Traceback" not in answer
    assert set(json.loads(answer)) == {"error"}


def test_a_chunked_body_over_the_limit_is_refused(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/v1/decode", body=iter([b"[" + b"0," * 50000] * 5), headers=JSON_HEADERS,
                 encode_chunked=True)
    assert conn.getresponse().status == 413
    conn.close()


def test_unknown_routes_and_methods_are_one_json_line(server):
    assert server.request("GET", "/v1/nothing")[0] == 404
    status, _, body = server.request("GET", "/v1/sample")
    assert status == 405 and set(json.loads(body)) == {"error"}


def test_every_response_carries_a_request_id_and_a_plain_one_given_is_kept(server):
    ids = {server.request("GET", "/v1/health")[1]["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
    assert server.request("GET", "/v1/health", headers={"X-Request-ID": "abc-123"})[1]["x-request-id"] == "abc-123"
    assert server.request("GET", "/v1/health", headers={"X-Request-ID": "a b\x7f"})[1]["x-request-id"] != "a b\x7f"
    assert "x-request-id" in server.request("POST", "/v1/sample", b"{", JSON_HEADERS)[1]
    rid = server.request("POST", "/v1/sample", {"n": 1})[1]["x-request-id"]
    assert _wait_for(lambda: rid in server.log.read_text())  # logged once the answer is sent


def test_a_host_header_that_is_not_loopback_is_refused_on_a_loopback_bind(server):
    assert server.request("GET", "/v1/info", headers={"Host": "attacker.example:8000"})[0] == 421  # as web/serve.mjs
    assert server.request("GET", "/v1/info", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_info_names_the_model_versions_provider_and_threads(server):  # the server runs --threads 1
    info = json.loads(server.request("GET", "/v1/info")[2])
    assert info["model"]["bundled"] == "fashion-mnist" and info["model"]["latent_dim"] == 32
    assert info["onnxruntime"]["providers"] == ["CPUExecutionProvider"]
    assert info["onnxruntime"]["threads"] == 1 and {"numpy", "starlette", "uvicorn"} <= set(info["versions"])
    assert "providers CPUExecutionProvider, threads 1;" in server.log.read_text()  # and at start
    assert "token_file" not in info["settings"]
    assert info["batching"]["coalesced"] == {"prior": True, "decoder": True, "encoder": True}


def test_metrics_count_requests_by_route_and_status(server):
    before = server.metric('vae_serve_requests_total{route="/v1/sample",status="422"}')
    server.request("POST", "/v1/sample", {"n": 0})
    server.request("POST", "/v1/sample", {"n": 1})
    text = server.request("GET", "/v1/metrics")[2].decode()
    assert server.metric('vae_serve_requests_total{route="/v1/sample",status="422"}') == before + 1
    for name in ("vae_serve_request_seconds_bucket", "vae_serve_batch_rows_bucket", "vae_serve_queue_depth",
                 'vae_serve_run_rows_count{model_file="decoder"}'):
        assert name in text


def test_cors_is_off_unless_asked(server, make_server):
    headers = {"Origin": "http://example.org"}
    assert "access-control-allow-origin" not in server.request("GET", "/v1/health", headers=headers)[1]
    cors = make_server("--cors-origins", "http://example.org")
    assert cors.request("GET", "/v1/health", headers=headers)[1]["access-control-allow-origin"] == "http://example.org"


def test_a_token_file_makes_every_route_but_the_probes_need_the_token(make_server, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token-of-enough-length\n")
    s = make_server("--token-file", str(token))
    assert s.request("GET", "/v1/health")[0] == 200 and s.request("GET", "/v1/ready")[0] == 200
    status, headers, _ = s.request("GET", "/v1/info")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert s.request("GET", "/v1/info", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert s.request("GET", "/v1/info", headers={"Authorization": "Bearer s3cret-token-of-enough-length"})[0] == 200


@pytest.mark.parametrize("args, message", [
    (("--host", "0.0.0.0"), "--allow-remote"),
    (("--provider", "NoSuchExecutionProvider"), "not available"),
    (("--max-queue", "0"), "--max-queue must be >= 1"),
    (("--threads", "-1"), "threads must be an int from 0 (onnxruntime decides) to 1024, got -1"),  # VAE.load's
    (("--model", "/nonexistent/folder"), "/nonexistent/folder"),
])
def test_a_bad_start_is_one_error_line_and_exit_code_2(args, message):
    r = subprocess.run([str(BIN / "vae-serve"), "--port", str(free_port()), *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and message in r.stderr
    assert "Traceback" not in r.stderr


# -- faults ------------------------------------------------------------------------------------------------------
def _raw_request(port: int, body: bytes, path: str = "/v1/sample") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return s


def _wait_for(condition, seconds: float = 30) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_client_that_leaves_mid_request_is_dropped_and_the_server_goes_on(make_server):
    s = make_server("--max-wait-ms", "3000", "--max-batch", "64")  # a lone request waits 3 s for company
    sock = _raw_request(s.port, b'{"n": 1}')
    assert _wait_for(lambda: s.metric("vae_serve_queue_depth") == 1)
    sock.close()
    assert _wait_for(lambda: s.metric('vae_serve_requests_total{route="/v1/sample",status="499"}') == 1)
    assert s.metric("vae_serve_queue_depth") == 0
    assert s.request("POST", "/v1/sample", {"n": 1})[0] == 200


def test_a_client_that_leaves_mid_body_is_counted_and_logged_as_gone_not_as_an_error(server):
    before = server.metric('vae_serve_requests_total{route="/v1/decode",status="499"}')
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.sendall(b"POST /v1/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"latents\": [")
    time.sleep(0.2)  # the server is reading the body
    sock.close()
    assert _wait_for(lambda: server.metric('vae_serve_requests_total{route="/v1/decode",status="499"}') == before + 1)
    assert "unexpected error" not in server.log.read_text()


def test_a_slow_client_gets_408_and_starves_no_one(make_server):
    s = make_server("--timeout", "3")
    slow = socket.create_connection(("127.0.0.1", s.port), timeout=60)
    slow.sendall(b"POST /v1/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"latents\": ")  # and the rest never comes
    assert [s.request("POST", "/v1/sample", {"n": 1})[0] for _ in range(5)] == [200] * 5
    assert slow.recv(4096).split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
    slow.close()


def test_a_flood_fills_the_queue_gets_503_with_retry_after_then_the_server_recovers(make_server):
    s = make_server("--max-queue", "4", "--max-wait-ms", "2000", "--max-batch", "1024")

    def one(_):
        status, headers, _ = s.request("POST", "/v1/sample", {"n": 1})
        return status, headers.get("retry-after")

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(one, range(24)))
    statuses = [a[0] for a in answers]
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 1 and statuses.count(200) >= 4
    assert all(retry == "1" for status, retry in answers if status == 503)
    assert s.request("POST", "/v1/sample", {"n": 1})[0] == 200


def test_sigterm_lets_every_accepted_request_finish_then_exits(make_server):
    s = make_server("--max-wait-ms", "3000", "--max-batch", "1024", "--max-queue", "64")
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(s.request, "POST", "/v1/sample", {"n": 4, "seed": i}) for i in range(8)]
        assert _wait_for(lambda: s.metric("vae_serve_queue_depth") == 8)
        s.proc.send_signal(signal.SIGTERM)
        answers = [f.result() for f in futures]
    assert [a[0] for a in answers] == [200] * 8
    assert s.proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn ends by raising the signal again, once drained
    with pytest.raises(OSError):
        s.request("GET", "/v1/health", timeout=5)


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return out


def _worker_pids(s: Server) -> set[int]:
    """The workers that answer: /v1/info's pid, over fresh connections, until two are seen (or 200 tries)."""
    seen: set[int] = set()
    for _ in range(200):
        seen.add(json.loads(s.request("GET", "/v1/info")[2])["pid"])
        if len(seen) == 2:
            break
    return seen


@pytest.mark.slow
def test_two_workers_both_serve_and_a_killed_one_is_restarted(make_server):
    s = make_server("--workers", "2")
    assert _wait_for(lambda: len(_worker_pids(s)) == 2, 90)  # the second may still be loading its model
    workers = _worker_pids(s)
    assert len(workers) == 2 and workers <= _children(s.proc.pid)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    assert _wait_for(lambda: victim not in _children(s.proc.pid) and len(_children(s.proc.pid)) >= 2, 60)
    assert _wait_for(lambda: len(_worker_pids(s) - {victim}) == 2, 90)  # the new worker answers once loaded
    assert all(s.request("POST", "/v1/sample", {"n": 1})[0] == 200 for _ in range(4))


def test_importing_the_runtime_imports_no_server():
    probe = ("import sys, vae_edge.runtime; vae_edge.runtime.VAE; "
             "print(sorted({'starlette', 'uvicorn'} & set(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_serve_extra_in_a_fresh_venv_serves_the_bundled_model(wheel, tmp_path):
    """pip install "vae-edge[serve]" && vae-serve, as the README says: the bundled model over HTTP, and no torch."""
    from conftest import UV_ENV, uv

    env = {k: v for k, v in UV_ENV.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    venv = tmp_path / "venv"
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
    r = subprocess.run([uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), f"{wheel}[serve]"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(venv.glob("lib/python*/site-packages/torch")), "the serve extra pulled in torch"
    s = Server(tmp_path, "--threads", "1", bin_dir=venv / "bin", env=env)
    try:
        status, headers, body = s.request("POST", "/v1/sample", {"n": 3, "seed": 7}, {"Accept": NPY})
    finally:
        s.stop()
    images = _npy(body)
    assert status == 200 and headers["x-seed"] == "7" and images.shape == (3, 1, 28, 28)
    assert images.dtype == np.float32 and 0 <= images.min() and images.max() <= 1


@pytest.mark.slow
def test_without_the_serve_extra_vae_serve_says_what_to_install(base_install, tmp_path):
    bin_dir, env = base_install
    r = subprocess.run([str(bin_dir / "vae-serve")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stderr == "error: vae-serve needs the serve extra: pip install 'vae-edge[serve]'\n"


NGINX_SITE = """
    upstream vae_serve {{
        server 127.0.0.1:{first};
        server 127.0.0.1:{second};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16m;
        location /v1/ {{
            proxy_pass http://vae_serve;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1;
            proxy_set_header X-Request-ID $request_id;
            proxy_next_upstream error timeout http_503;
        }}
    }}
"""  # docs/serving.md shows this block


def _nginx(tmp_path: Path, site: str) -> subprocess.Popen:
    """nginx in the foreground with everything it writes under tmp_path."""
    import shutil

    exe = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if exe is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light; .ci/run does)")
    temp = "\n".join(f"    {kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                               "uwsgi", "scgi"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"daemon off;\n{'user root;' if os.geteuid() == 0 else ''}\nworker_processes 1;\n"
                    f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{ worker_connections 64; }}\n"
                    f"http {{\n    access_log off;\n{temp}\n{site}}}\n")
    return subprocess.Popen([exe, "-c", str(conf), "-p", str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_two_replicas_behind_nginx_both_serve_and_one_stopping_loses_no_request(make_server, tmp_path):
    first, second = make_server(), make_server()
    front = Server.__new__(Server)  # the client side of Server, aimed at nginx
    front.port, front.log = free_port(), tmp_path / "front.log"
    nginx = _nginx(tmp_path, NGINX_SITE.format(first=first.port, second=second.port, port=front.port))
    try:
        assert _wait_for(lambda: _answers(front), 30)
        pids = {json.loads(front.request("GET", "/v1/info")[2])["pid"] for _ in range(6)}
        assert pids == {first.proc.pid, second.proc.pid}
        status, headers, _ = front.request("POST", "/v1/sample", {"n": 1})
        assert status == 200 and _wait_for(lambda: headers["x-request-id"] in first.log.read_text()
                                           + second.log.read_text())  # nginx's id, logged by the replica
        first.stop()
        assert [front.request("POST", "/v1/sample", {"n": 2})[0] for _ in range(6)] == [200] * 6
    finally:
        nginx.terminate()
        nginx.wait(30)


def _answers(server: Server) -> bool:
    try:
        return server.request("GET", "/v1/ready", timeout=5)[0] == 200
    except OSError:
        return False

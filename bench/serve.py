"""vae-serve under load, on loopback only, bounded in requests and time: what HTTP costs and what batching buys.

- One server with batching on (--max-batch 64, the default) and one with it off (--max-batch 1), both up for the
  whole run and measured in alternation, three rounds a cell (sample(64) cells three times as long), so that load
  from elsewhere hits both: 1, 8, 32 and 128 concurrent clients (keep-alive connections, each sending its next
  request when the last is answered) asking for sample(1) and sample(64) as .npy and as PNG. Throughput
(requests/s), p50 and p99 latency, errors (any answer but 200,
  any failed connection).
- The same work in-process through the API (VAE.sample, then the same .npy or PNG bytes), one call at a time.
- Spinning: the server's idle CPU (its /proc/PID/stat over a few idle seconds) and batch-1 latency with
  onnxruntime's spinning capped at 100 us (the runtime's setting) and off.
- A soak: 20,000 sample(1) .npy requests from 32 clients, resident memory after 1,000 and after 20,000.
    python bench/serve.py [--seconds 1.5] [--soak 20000]
Prints markdown (docs/serving.md keeps the figures).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OtherLoad, header, load_before, table  # noqa: E402

from vae_edge.runtime import VAE  # noqa: E402
from vae_edge.runtime.serve import codecs  # noqa: E402

BIN = Path(sys.executable).parent
CLIENTS = (1, 8, 32, 128)
NS = (1, 64)
FORMATS = {"npy": codecs.NPY, "png": codecs.PNG}
MAX_REQUESTS = 4000  # per cell, besides the time bound
SPIN_OFF = ("import sys; from vae_edge.runtime import sessions; "
            "sessions.SESSION_CONFIG['session.intra_op.allow_spinning'] = '0'; "
            "from vae_edge.runtime.serve.cli import main; sys.argv[0] = 'vae-serve'; main()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args: str, spin_off: bool = False):
        self.port = free_port()
        cmd = [sys.executable, "-c", SPIN_OFF] if spin_off else [str(BIN / "vae-serve")]
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port), "--no-access-log", "--max-queue", "1024",
                                      *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asyncio.run(self._wait())

    async def _wait(self) -> None:
        for _ in range(600):
            try:
                status, _ = await one_request(self.port, "GET", "/v1/ready", b"", {})
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("the server did not start")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


# -- a small HTTP/1.1 client on asyncio streams: one keep-alive connection per simulated client -------------------
async def read_response(reader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length")
    return status, await reader.readexactly(length)


def request_bytes(method: str, path: str, body: bytes, headers: dict) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def one_request(port, method, path, body, headers) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(method, path, body, headers))
        return await read_response(reader)
    finally:
        writer.close()


async def load(port: int, clients: int, n: int, accept: str, seconds: float, requests: int,
               path: str = "/v1/sample") -> dict:
    """clients connections, each asking sample(n) in turn until seconds or requests (all together) run out:
    requests/s, p50 and p99 latency (ms), errors, and the raw latencies and wall time (for merging rounds)."""
    body = json.dumps({"n": n, "seed": 1}).encode() if path == "/v1/sample" else b""
    message = request_bytes("POST" if body else "GET", path, body,
                            {"Content-Type": "application/json", "Accept": accept} if body else {})
    latencies: list[float] = []
    errors = 0
    left = requests
    end = time.perf_counter() + seconds

    async def client():
        nonlocal errors, left
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            errors += 1
            return
        try:
            while left > 0 and time.perf_counter() < end:
                left -= 1
                t0 = time.perf_counter()
                writer.write(message)
                status, _ = await read_response(reader)
                latencies.append(time.perf_counter() - t0)
                errors += status != 200
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1e3
    return summary(lat, wall, errors)


def summary(lat: np.ndarray, wall: float, errors: int) -> dict:
    return {"rps": len(lat) / wall, "p50": float(np.median(lat)), "p99": float(np.percentile(lat, 99)),
            "errors": errors, "requests": len(lat), "lat": lat, "wall": wall}


def alternating(servers: dict, clients: int, n: int, accept: str, seconds: float, rounds: int = 3) -> dict:
    """Each server measured in turn, rounds times, and each one's rounds merged: load from elsewhere on the
    machine then hits every server alike."""
    parts: dict[str, list] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, server in servers.items():
            parts[name].append(asyncio.run(load(server.port, clients, n, accept, seconds / rounds,
                                                MAX_REQUESTS // rounds)))
    return {name: summary(np.concatenate([p["lat"] for p in ps]), sum(p["wall"] for p in ps),
                          sum(p["errors"] for p in ps)) for name, ps in parts.items()}


# -- the measurements ------------------------------------------------------------------------------------------
def in_process(vae, n: int, fmt: str, seconds: float) -> dict:
    render = codecs.npy_bytes if fmt == "npy" else lambda x: codecs.png_bytes(x, 8)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and len(times) < MAX_REQUESTS:
        t0 = time.perf_counter()
        render(vae.sample(n, seed=1))
        times.append(time.perf_counter() - t0)
    lat = np.asarray(times) * 1e3
    return {"rps": len(lat) / lat.sum() * 1e3, "p50": float(np.median(lat)), "p99": float(np.percentile(lat, 99))}


def matrix(on: Server, off: Server, vae, seconds: float) -> str:
    rows = []
    for n in NS:
        for fmt, accept in FORMATS.items():
            local = in_process(vae, n, fmt, seconds)
            for clients in CLIENTS:
                cells = alternating({"on": on, "off": off}, clients, n, accept, seconds * (3 if n > 1 else 1))
                a, b = cells["on"], cells["off"]
                rows.append([f"sample({n}) {fmt}", clients, f"{a['rps']:,.0f}", f"{b['rps']:,.0f}",
                             f"{a['rps'] / b['rps']:.2f}x", f"{a['p50']:.2f} / {a['p99']:.2f}",
                             f"{b['p50']:.2f} / {b['p99']:.2f}", f"{a['errors']} / {b['errors']}",
                             f"{local['rps']:,.0f} ({local['p50']:.2f} ms)" if clients == 1 else ""])
                print(" ", *rows[-1], file=sys.stderr, flush=True)
    return table(["request", "clients", "req/s on", "req/s off", "on / off", "p50 / p99 ms on",
                  "p50 / p99 ms off", "errors on / off", "in-process req/s (p50)"], rows)


def spinning(seconds: float) -> str:
    """Both servers up at once: idle CPU over the same 3 s, then batch-1 latency (1 client) and the CPU the server
    burns under 32 clients, in alternating rounds."""
    servers = {"capped at 100 us (the runtime's setting)": Server(), "off": Server(spin_off=True)}
    try:
        for server in servers.values():
            asyncio.run(load(server.port, 1, 1, codecs.NPY, 1.0, 200))  # warm
        before = {name: server.cpu_seconds() for name, server in servers.items()}
        time.sleep(3.0)
        idle = {name: (server.cpu_seconds() - before[name]) / 3.0 for name, server in servers.items()}
        latency = alternating(servers, 1, 1, codecs.NPY, seconds)
        busy = {name: [0.0, 0.0] for name in servers}  # CPU seconds, wall seconds
        for _ in range(3):
            for name, server in servers.items():
                c0, t0 = server.cpu_seconds(), time.perf_counter()
                asyncio.run(load(server.port, 32, 1, codecs.NPY, seconds / 3, MAX_REQUESTS))
                busy[name][0] += server.cpu_seconds() - c0
                busy[name][1] += time.perf_counter() - t0
    finally:
        for server in servers.values():
            server.stop()
    rows = [[name, f"{idle[name]:.1%}", f"{latency[name]['p50']:.2f} / {latency[name]['p99']:.2f}",
             f"{busy[name][0] / busy[name][1]:.2f}"] for name in servers]
    return table(["spinning", "idle CPU (of one core)", "batch-1 p50 / p99 ms, 1 client",
                  "server CPU cores busy, 32 clients"], rows)


def http_floor(server: Server, seconds: float) -> str:
    """GET /v1/health from 32 clients: the same HTTP, middleware and client, no model, no body: the ceiling."""
    r = asyncio.run(load(server.port, 32, 0, "", seconds, MAX_REQUESTS, path="/v1/health"))
    return (f"The HTTP floor: GET /v1/health from 32 clients, {r['rps']:,.0f} requests/s, p50 {r['p50']:.2f} ms "
            f"(the same server, client and middleware, no model and no body), {r['errors']} errors.")


def soak(server: Server, total: int) -> str:
    first = asyncio.run(load(server.port, 32, 1, codecs.NPY, 3600, 1000))
    rss_1k = server.rss_mib()
    rest = asyncio.run(load(server.port, 32, 1, codecs.NPY, 3600, total - 1000))
    rss_end = server.rss_mib()
    errors = first["errors"] + rest["errors"]
    growth = (rss_end - rss_1k) / rss_1k
    return (f"Soak: {first['requests'] + rest['requests']:,} sample(1) .npy requests from 32 clients, {errors} errors; "
            f"resident memory {rss_1k:.1f} MiB after 1,000, {rss_end:.1f} MiB after {total:,} "
            f"({growth:+.1%}; the goal: under 5%).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="per cell and server")
    ap.add_argument("--soak", type=int, default=20000)
    args = ap.parse_args()
    print(header("vae-serve under load (bench/serve.py)", "onnxruntime", "numpy", "starlette", "uvicorn"))
    print(load_before())
    other = OtherLoad()
    vae = VAE.load()
    on, off = Server("--max-batch", "64"), Server("--max-batch", "1")
    try:
        print("\n" + matrix(on, off, vae, args.seconds))
        print("\n" + http_floor(on, args.seconds))
        print("\n" + soak(on, args.soak))
    finally:
        on.stop()
        off.stop()
    print("\n" + spinning(args.seconds))
    print(f"\nOther processes' CPU use during the run: {other.text()}.")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()

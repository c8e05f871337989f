"""Prometheus text (format 0.0.4), written by hand: requests by route and status, a latency histogram per route,
the rows and requests of each batch, rows per model-file run, and the queue's depth. All updates happen on the
event loop, but batch() and run(), which the onnxruntime thread calls: a lock keeps those exact."""
from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    def __init__(self, buckets: tuple):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{braces} {self.sum:.6f}", f"{name}_count{braces} {self.count}"]


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_requests = Histogram(SIZE_BUCKETS)
        self.batch_rows = Histogram(SIZE_BUCKETS)
        self.runs: dict[str, Histogram] = {}
        self.depth = 0
        self.in_flight = 0

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[route, status] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def queue_depth(self, depth: int) -> None:
        self.depth = depth

    def batch(self, requests: int, rows: int) -> None:
        with self._lock:
            self.batch_requests.observe(requests)
            self.batch_rows.observe(rows)

    def run(self, model_file: str, rows: int) -> None:
        with self._lock:
            self.runs.setdefault(model_file, Histogram(SIZE_BUCKETS)).observe(rows)

    def text(self) -> str:
        p = "vae_serve"
        with self._lock:
            lines = [f"# HELP {p}_requests_total HTTP requests answered, by route and status.",
                     f"# TYPE {p}_requests_total counter"]
            lines += [f'{p}_requests_total{{route="{r}",status="{s}"}} {n}'
                      for (r, s), n in sorted(self.requests.items())]
            lines += [f"# HELP {p}_request_seconds Time from the request's arrival to its answer, by route.",
                      f"# TYPE {p}_request_seconds histogram"]
            for r, h in sorted(self.latency.items()):
                lines += h.lines(f"{p}_request_seconds", f'route="{r}"')
            lines += [f"# HELP {p}_batch_requests Requests served by one batch.",
                      f"# TYPE {p}_batch_requests histogram",
                      *self.batch_requests.lines(f"{p}_batch_requests"),
                      f"# HELP {p}_batch_rows Images or latents in one batch.", f"# TYPE {p}_batch_rows histogram",
                      *self.batch_rows.lines(f"{p}_batch_rows"),
                      f"# HELP {p}_run_rows Rows in one onnxruntime run, by model file.",
                      f"# TYPE {p}_run_rows histogram"]
            for m, h in sorted(self.runs.items()):
                lines += h.lines(f"{p}_run_rows", f'model_file="{m}"')
            lines += [f"# HELP {p}_queue_depth Requests accepted and not yet answered by the model.",
                      f"# TYPE {p}_queue_depth gauge", f"{p}_queue_depth {self.depth}",
                      f"# HELP {p}_in_flight HTTP requests being handled.", f"# TYPE {p}_in_flight gauge",
                      f"{p}_in_flight {self.in_flight}"]
        return "\n".join(lines) + "\n"

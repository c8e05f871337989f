"""What every request passes first (a plain ASGI middleware): its request id, the Host check on a loopback bind,
the bearer token, the 503 while draining; then, on the way out, the X-Request-ID header, the metrics and the log
line. An exception that escapes a route is answered as a one-line JSON 500 naming the request id; the traceback
goes to the log, never to the client."""
from __future__ import annotations

import hmac
import itertools
import json
import logging
import os
import re
import time

log = logging.getLogger("vae_serve")

ROUTES = ("/v1/sample", "/v1/decode", "/v1/encode", "/v1/score", "/v1/health", "/v1/ready", "/v1/info",
          "/v1/metrics", "/v1/openapi.json", "/v1/docs")
OPEN = ("/v1/health", "/v1/ready")  # answered without the token: a load balancer's probes (they tell nothing)
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# Fresh ids: this process's random prefix and a counter, unique without a system call per request (os.urandom gives
# up the GIL, and under load the onnxruntime thread holds it: bench/serve.py's profile in docs/serving.md).
PREFIX = os.urandom(4).hex()
COUNTER = itertools.count()


def request_id(headers: dict[bytes, bytes]) -> str:
    """The client's X-Request-ID where it is short and plain (so a proxy's id runs through), else a fresh one."""
    given = headers.get(b"x-request-id", b"").decode("latin1")
    return given if CLIENT_ID.fullmatch(given) else f"{PREFIX}{next(COUNTER):08x}"


def host_allowed(host: str) -> bool:
    """A Host header naming the loopback interface: anything else on a loopback bind is DNS rebinding."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in LOOPBACK_NAMES


class Guard:
    def __init__(self, app, service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = dict(scope["headers"])
        rid = request_id(headers)
        scope.setdefault("state", {})["request_id"] = rid
        path = scope["path"]
        route = path if path in ROUTES else "other"
        status = 0
        metrics = self.service.metrics

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        metrics.in_flight += 1
        try:
            refusal = self.refusal(headers, path, scope["method"])
            if refusal is not None:
                await _send_error(send_with_id, *refusal)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 (whatever escapes a route: logged with its id, one line to the client)
            log.exception("%s %s %s: unexpected error", rid, scope["method"], path)
            if status == 0:
                await _send_error(send_with_id, 500, f"internal error (request id {rid}); the server log has it")
        finally:
            metrics.in_flight -= 1
            status = status or scope["state"].get("status", 499)
            seconds = time.perf_counter() - start
            metrics.request(route, status, seconds)
            if self.service.settings.access_log:
                log.info("%s %s %s %d %.1fms", rid, scope["method"], path, status, seconds * 1e3)

    def refusal(self, headers: dict, path: str, method: str) -> tuple | None:
        """(status, message, headers) for a request refused before any route sees it, else None."""
        settings = self.service.settings
        if settings.loopback and not host_allowed(headers.get(b"host", b"").decode("latin1")):
            return 421, "the Host header must name the loopback interface (127.0.0.1, localhost or [::1])", {}
        token = self.service.token
        preflight = method == "OPTIONS" and bool(settings.cors_origins)  # a browser's CORS check carries no token
        if token is not None and path not in OPEN and not preflight:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + token):
                return 401, "a bearer token is required (Authorization: Bearer ...)", {"WWW-Authenticate": "Bearer"}
        if self.service.draining and path not in OPEN:
            return 503, "the server is shutting down", {"Retry-After": "1", "Connection": "close"}
        return None


async def _send_error(send, status: int, message: str, headers: dict | None = None) -> None:
    body = (json.dumps({"error": message}) + "\n").encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})

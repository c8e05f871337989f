"""vae-serve: load one model, check it and the options, say what it runs on, then serve it with uvicorn.

Bad options and an unusable model or provider end with one line `error: ...` and exit code 2 before anything
listens. With --workers N, uvicorn starts N processes (each loads the model: app.from_environment) and restarts
one that dies.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Optional

from ..args import Option, run
from ..errors import ModelFolderError, RuntimeInputError, fail
from .settings import LOOPBACK, Settings

log = logging.getLogger("vae_serve")


def logging_setup() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s vae-serve %(process)d %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def load(settings: Settings):
    """The VAE the settings name, on the provider asked for, which its session must really use."""
    from ..model import VAE

    # VAE.load refuses a provider onnxruntime lists but could not use (model.check_provider)
    return VAE.load(settings.model, precision=settings.precision, threads=settings.threads,
                    providers=[settings.provider], batch_size=max(settings.max_batch, settings.max_n))


def check(settings: Settings, workers: int) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise RuntimeInputError(message)

    need(settings.loopback or settings.allow_remote,
         f"--host {settings.host} is not a loopback address; serving beyond this machine needs --allow-remote "
         f"(and, unless a proxy authenticates, --token-file: docs/serving.md)")
    need(0 < settings.port < 65536, f"--port must be in 1..65535, got {settings.port}")
    for name in ("max_batch", "max_queue", "max_n", "max_body", "max_pixels", "max_score_samples"):
        need(getattr(settings, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, got {getattr(settings, name)}")
    need(settings.max_wait_ms >= 0, f"--max-wait-ms must be >= 0, got {settings.max_wait_ms}")
    need(settings.timeout_s > 0, f"--timeout must be > 0, got {settings.timeout_s}")
    need(workers >= 1, f"--workers must be >= 1, got {workers}")


def serve(
    model: Optional[str] = Option(None, "--model", "-m", help="Model folder or bundled model name (as vae-sample)."),
    host: str = Option("127.0.0.1", "--host", help="Address to listen on; loopback unless --allow-remote."),
    port: int = Option(8000, "--port", help="Port to listen on."),
    precision: str = Option("fp32", "--precision", help="fp32, or int8 where the export wrote int8 files."),
    threads: Optional[int] = Option(None, "--threads", help="onnxruntime intra-op threads (default: its own)."),
    provider: str = Option("CPUExecutionProvider", "--provider",
                           help="onnxruntime execution provider; one it lists but cannot use is an error."),
    workers: int = Option(1, "--workers", help="Worker processes (uvicorn's; each loads the model)."),
    allow_remote: bool = Option(False, "--allow-remote", help="Allow a non-loopback --host."),
    token_file: Optional[str] = Option(None, "--token-file",
                                       help="File holding a bearer token every request but /v1/health must send."),
    cors_origins: str = Option("", "--cors-origins", help="Comma-separated origins CORS allows (default: none)."),
    max_batch: int = Option(64, "--max-batch", help="Rows a coalesced onnxruntime run holds at most (1: off)."),
    max_wait_ms: float = Option(0.0, "--max-wait-ms",
                                help="How long a batch waits for more requests (0: only those already queued)."),
    max_queue: int = Option(64, "--max-queue", help="Requests accepted and unanswered; more get 503."),
    max_n: int = Option(1024, "--max-n", help="Images or latents in one request."),
    max_body: int = Option(16 * 2**20, "--max-body", help="Request body bytes."),
    max_pixels: int = Option(4096 * 4096, "--max-pixels", help="Pixels of one uploaded image."),
    max_score_samples: int = Option(8192, "--max-score-samples",
                                    help="Images x k in one /v1/score request (each is a decode)."),
    threshold: Optional[str] = Option(None, "--threshold",
                                      help="A threshold.json from vae-score --calibrate --save: scores get flags."),
    timeout: float = Option(30.0, "--timeout", help="Seconds a request may take, body to answer."),
    no_access_log: bool = Option(False, "--no-access-log", help="No log line per request."),
) -> None:
    """Serve a model over HTTP: /v1/sample, /v1/decode, /v1/encode, /v1/score, health, ready, info, metrics."""
    try:
        import uvicorn
    except ImportError:
        fail("vae-serve needs the serve extra: pip install 'vae-edge[serve]'")
    settings = Settings(model=model, precision=precision, threads=threads, provider=provider, host=host, port=port,
                        allow_remote=allow_remote, token_file=token_file,
                        cors_origins=tuple(o.strip() for o in cors_origins.split(",") if o.strip()),
                        max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, max_n=max_n,
                        max_body=max_body, max_pixels=max_pixels, max_score_samples=max_score_samples,
                        threshold=threshold, timeout_s=timeout, access_log=not no_access_log)
    logging_setup()
    try:
        check(settings, workers)
        vae = load(settings)
        from .app import create_app

        app = create_app(vae, settings)  # reads the token and threshold files: a bad one fails here
    except (RuntimeInputError, ModelFolderError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
    log.info("model %s (%s%s), %s, providers %s, threads %s; batching: max %d rows, wait %g ms; queue %d",
             vae.folder, vae.precision, f", bundled {vae.bundled}" if vae.bundled else "", repr(vae),
             ",".join(vae.providers), threads if threads else "onnxruntime's default", max_batch, max_wait_ms,
             max_queue)
    if settings.allow_remote and settings.host not in LOOPBACK and token_file is None:
        log.info("warning: listening beyond loopback with no --token-file: anyone who reaches the port can use it")
    common: dict[str, Any] = dict(host=host, port=port, access_log=False, log_level="info",
                                  timeout_graceful_shutdown=None)
    if workers == 1:
        uvicorn.Server(uvicorn.Config(app, **common)).run()
    else:
        del app, vae  # each worker loads its own
        settings.to_environment()
        uvicorn.run("vae_edge.runtime.serve.app:from_environment", factory=True, workers=workers, **common)


def main() -> None:
    run(serve)

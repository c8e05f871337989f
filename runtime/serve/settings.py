"""The server's options: one frozen dataclass, filled by the command line and handed to uvicorn's workers as JSON
in an environment variable (a worker process builds its app from it: app.from_environment)."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

ENV = "VAE_SERVE_SETTINGS"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Settings:
    model: str | None = None
    precision: str = "fp32"
    threads: int | None = None
    provider: str = "CPUExecutionProvider"
    host: str = "127.0.0.1"
    port: int = 8000
    allow_remote: bool = False
    token_file: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_batch: int = 64  # rows (images or latents) in one onnxruntime run, when requests are coalesced
    max_wait_ms: float = 0.0  # how long a batch waits for more requests once the worker is free; 0: take what is queued
    max_queue: int = 64  # requests accepted and not yet answered; one more is a 503
    max_n: int = 1024  # images or latents in one request
    max_body: int = 16 * 2**20  # request body bytes
    max_pixels: int = 4096 * 4096  # pixels of one uploaded image
    max_score_samples: int = 8192  # images x k in one score request: its work (docs/serving.md)
    threshold: str | None = None  # a vae-score threshold file: score answers carry flags
    timeout_s: float = 30.0  # per request, from the first byte of the body to the answer
    access_log: bool = True

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK or self.host.startswith("127.")

    def to_environment(self) -> None:
        os.environ[ENV] = json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_environment(cls) -> "Settings":
        fields = json.loads(os.environ.get(ENV, "{}"))
        fields["cors_origins"] = tuple(fields.get("cors_origins", ()))
        return cls(**fields)

    def public(self) -> dict:
        """What /v1/info shows: every option but the token file's path."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "token_file"} | \
            {"token": self.token_file is not None}

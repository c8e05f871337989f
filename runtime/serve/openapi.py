"""The API's OpenAPI 3.1 document, kept by hand (no pydantic models to derive it from), served at
/v1/openapi.json, and /v1/docs: the same document as one plain HTML page (no script, nothing fetched)."""
from __future__ import annotations

import html

from .settings import Settings

IMAGES = {"application/json": {"schema": {"type": "object", "properties": {
              "shape": {"type": "array", "items": {"type": "integer"}},
              "images": {"type": "array", "description": "(N, C, H, W) floats in [0, 1]"}}}},
          "application/x-npy": {"schema": {"type": "string", "format": "binary",
                                           "description": "float32 (N, C, H, W)"}},
          "image/png": {"schema": {"type": "string", "format": "binary",
                                   "description": "one grid, nrow images a row (?nrow=8)"}}}
ERROR = {"description": "one line: {\"error\": \"...\"}",
         "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}
IMAGES_FIELD = {"type": "array", "description": "(N, C, H, W) or (N, C*H*W) floats in [0, 1]"}
IMAGES_IN = {"application/json": {"schema": {"type": "object", "properties": {"images": IMAGES_FIELD}}},
             "application/x-npy": {"schema": {"type": "string", "format": "binary",
                                              "description": "float in [0, 1] or uint8"}},
             "image/png": {"schema": {"type": "string", "format": "binary",
                                      "description": "one image, converted and resized as vae-encode does"}},
             "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}
NROW = {"name": "nrow", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1024, "default": 8},
        "description": "images a row of a PNG grid"}


def _errors(*codes: int) -> dict:
    return {str(c): ERROR for c in codes}


def document(settings: Settings) -> dict:
    limits = (f"At most {settings.max_n} images or latents a request, {settings.max_body} body bytes, "
              f"{settings.max_pixels} pixels an uploaded image, {settings.max_score_samples} images x k a score "
              f"request, {settings.timeout_s:g} s a request.")
    post_errors = _errors(400, 401, 406, 408, 413, 415, 422, 503)
    return {
        "openapi": "3.1.0",
        "info": {"title": "vae-serve", "version": "1", "description": "An exported VAE over HTTP. " + limits},
        "paths": {
            "/v1/sample": {"post": {
                "summary": "n images decoded from the noise of a seed (the server picks one when none is given)",
                "parameters": [NROW],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                    "n": {"type": "integer", "minimum": 1, "maximum": settings.max_n, "default": 1},
                    "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**53 - 1},
                    "temperature": {"type": "number", "minimum": 0, "default": 1.0}},
                    "additionalProperties": False}}}},
                "responses": {"200": {"description": "the images; the seed used is in the JSON and in X-Seed",
                                      "content": IMAGES}, **post_errors}}},
            "/v1/decode": {"post": {
                "summary": "latents (N, latent_dim) to images",
                "parameters": [NROW],
                "requestBody": {"content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "latents": {"type": "array", "description": "(N, latent_dim) finite numbers"}}}},
                    "application/x-npy": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"200": {"description": "the images", "content": IMAGES}, **post_errors}}},
            "/v1/encode": {"post": {
                "summary": "images to the posterior's mu and logvar",
                "requestBody": {"content": IMAGES_IN},
                "responses": {"200": {"description": "mu and logvar, (N, latent_dim) each", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "shape": {"type": "array"}, "mu": {"type": "array"}, "logvar": {"type": "array"}}}},
                    "application/x-npy": {"schema": {"type": "string", "format": "binary",
                                                     "description": "float32 (2, N, latent_dim): [mu, logvar]"}}}},
                              **post_errors}}},
            "/v1/score": {"post": {
                "summary": "anomaly scores of images: VAE.score, -log p(x) per image (higher is less like the "
                           "training data); the seed used is in the JSON and in X-Seed",
                "parameters": [
                    {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1},
                     "description": f"importance samples per image; images x k at most {settings.max_score_samples}"},
                    {"name": "seed", "in": "query", "schema": {"type": "integer", "minimum": 0,
                                                               "maximum": 2**53 - 1},
                     "description": "the noise's seed (the server draws one when none is given)"},
                    {"name": "bits_per_dim", "in": "query", "schema": {"type": "boolean", "default": False},
                     "description": "scores in bits per dimension instead of nats per image"}],
                "requestBody": {"content": {**IMAGES_IN, "application/json": {"schema": {
                    "type": "object", "properties": {
                        "images": IMAGES_FIELD,
                        "k": {"type": "integer", "minimum": 1}, "seed": {"type": ["integer", "null"]},
                        "bits_per_dim": {"type": "boolean"}},
                    "description": "k, seed and bits_per_dim here or in the query, not both"}}}},
                "responses": {"200": {"description": "one score per image", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "scores": {"type": "array", "items": {"type": "number"}}, "k": {"type": "integer"},
                        "seed": {"type": "integer"}, "units": {"enum": ["nats per image", "bits per dimension"]},
                        "pixel_rule": {"type": "string"},
                        "threshold": {"type": "number", "description": "with --threshold"},
                        "flags": {"type": "array", "items": {"type": "boolean"},
                                  "description": "with --threshold: score > threshold"}}}},
                    "application/x-npy": {"schema": {"type": "string", "format": "binary",
                                                     "description": "float64 (N,)"}}}},
                              **post_errors, **_errors(501)}}},
            "/v1/health": {"get": {"summary": "the process is up (no token needed)",
                                   "responses": {"200": {"description": "ok"}}}},
            "/v1/ready": {"get": {"summary": "ready for requests; 503 while draining",
                                  "responses": {"200": {"description": "ready"}, **_errors(503)}}},
            "/v1/info": {"get": {"summary": "the model (vae.json's summary), versions, provider, threads, settings",
                                 "responses": {"200": {"description": "a JSON object"}}}},
            "/v1/metrics": {"get": {"summary": "Prometheus text: requests, latency, batch sizes, queue depth",
                                    "responses": {"200": {"description": "text/plain; version=0.0.4"}}}},
        },
    }


def page(doc: dict) -> str:
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(op["responses"])
            rows.append(f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}</td><td>{codes}</td></tr>")
    return ("<!doctype html><html><head><meta charset=utf-8><title>vae-serve</title></head><body>"
            f"<h1>vae-serve</h1><p>{html.escape(doc['info']['description'])}</p>"
            "<table border=1 cellpadding=4><tr><th>method</th><th>path</th><th>what</th><th>statuses</th></tr>"
            + "".join(rows) + "</table><p>The whole document: <a href=/v1/openapi.json>/v1/openapi.json</a>; "
            "the guide: docs/serving.md.</p></body></html>")

"""vae-serve: the runtime as an HTTP service (Starlette on uvicorn, the [serve] extra).

Imported only by the vae-serve command and by uvicorn's workers, never by `import vae_edge.runtime`: the base
install stays numpy + onnxruntime. Read top to bottom: settings.py (the options), batcher.py (one thread runs
onnxruntime; requests that arrive together share its runs), codecs.py (JSON, .npy and PNG in and out),
metrics.py (Prometheus text), guard.py (request ids, Host and token checks, draining), app.py (the routes),
cli.py (the command). docs/serving.md is the user's page.
"""

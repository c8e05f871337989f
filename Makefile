# `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FMNIST_DEBIAN := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo test test-fast bench model dist release clean web-deps web serve-web test-web bench-web

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[train,dev]"
	@touch $(STAMP)

# Fashion-MNIST: local files first, then Debian's package where apt is usable; else vae-train downloads it.
data:
	@if [ -f data/train-images-idx3-ubyte.gz ] || [ -f data/train-images-idx3-ubyte ] || [ -f $(FMNIST_DEBIAN)/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST: found locally"; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
		S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$S apt-get install -y -q dataset-fashion-mnist || { $$S apt-get update -q && $$S apt-get install -y -q dataset-fashion-mnist; } \
		|| echo "Fashion-MNIST: apt failed; vae-train will download it into data/"; \
	else echo "Fashion-MNIST: not found locally; vae-train will download it into data/"; fi

demo: setup data
	$(BIN)/vae-train --name demo --force
	$(BIN)/vae-export runs/demo/model.pt --out vae-onnx --quantize int8 --force
	$(BIN)/vae-sample --model vae-onnx --n 64 --out samples.png
	@echo
	@echo "Trained model:  runs/demo/model.pt  (metrics.jsonl, samples.png, reconstructions.png beside it)"
	@echo "ONNX export:    vae-onnx/  (encoder.onnx, decoder.onnx, int8 variants, vae.json)"
	@echo "Samples:        samples.png  (from onnxruntime, no torch)"

# The model bundled in the package (runtime/models/$(MODEL_NAME)/, shipped in the wheel): trained from scratch with
# this recipe and seed, exported with int8 and checked for parity. vae.json records the recipe and the metrics.
MODEL_NAME := fashion-mnist
MODEL_RECIPE := --dataset fashion-mnist --arch conv --hidden-dim 256 --latent-dim 32 --binarize --epochs 90 --kl-warmup 10 --lr-schedule cosine --seed 1
model: setup data
	$(BIN)/vae-train $(MODEL_RECIPE) --name bundled-$(MODEL_NAME) --force
	$(BIN)/vae-export runs/bundled-$(MODEL_NAME)/model.pt --out runtime/models/$(MODEL_NAME) --quantize int8 --force
	$(BIN)/vae-info --model runtime/models/$(MODEL_NAME)

# A wheel and an sdist in dist/, both carrying the bundled model.
dist: setup
	rm -rf dist
	$(BIN)/uv build --out-dir dist
	@ls -l dist

# The wheel, the sdist and the npm tarball in dist/, each then checked as its user gets it: twine, the kept file
# lists (release/files.txt), a fresh venv without torch, a fresh Node project (release/check.py). No publishing.
release: setup web-deps
	rm -rf dist
	$(BIN)/python -m uv build --sdist --out-dir dist
	$(BIN)/python -m uv build --wheel --out-dir dist
	cd web && npm pack --pack-destination ../dist
	$(BIN)/python release/check.py dist

test: setup web-deps
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

bench: setup
	$(BIN)/python bench/runtime.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/iwae.py

clean:
	rm -rf runs vae-onnx samples.png .pytest_cache dist build site

# JavaScript (web/): npm ci again only when the lock changes; onnxruntime-node's CPU build ships in its package,
# so its install script (which would fetch CUDA files) is skipped.
WEB_STAMP := web/node_modules/.installed-stamp
SITE ?= site
PORT ?= 8000

web-deps: $(WEB_STAMP)

$(WEB_STAMP): web/package-lock.json web/package.json
	@if command -v npm >/dev/null 2>&1; then \
		cd web && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund && touch node_modules/.installed-stamp; \
	else echo "npm not found: tests/test_web.py will skip (CI installs Node.js)"; fi

# the demo site: MODEL=path picks the export (default: runtime/models/fashion-mnist if present, else vae-onnx/)
web: web-deps
	node web/build.mjs $(if $(MODEL),--model $(MODEL)) --out $(SITE)

serve-web:
	node web/serve.mjs --root $(SITE) --port $(PORT)

test-web: setup web-deps
	$(BIN)/pytest -q tests/test_web.py

bench-web: setup web-deps
	$(BIN)/python bench/web.py

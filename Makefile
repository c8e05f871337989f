# `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FMNIST_DEBIAN := /usr/share/datasets/fashion-mnist

.PHONY: help setup data data-emoji demo test lint system-packages test-emulated test-fast fuzz mutants bench model model-score dist release clean web-deps web serve-web test-web bench-web native native-arm64 arm64

# make help: each target's `## ` note, one line a target
help:  ## this list
	@awk -F ':.*## ' '/^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP)  ## the .venv: this package editable, with its train and dev extras
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[train,dev,serve]"
	@touch $(STAMP)

# Fashion-MNIST: local files first, then Debian's package where apt is usable; else vae-train downloads it.
data:  ## Fashion-MNIST: found locally, else Debian's dataset-fashion-mnist where apt is usable
	@if [ -f data/train-images-idx3-ubyte.gz ] || [ -f data/train-images-idx3-ubyte ] || [ -f $(FMNIST_DEBIAN)/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST: found locally"; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
		S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$S apt-get install -y -q dataset-fashion-mnist || { $$S apt-get update -q && $$S apt-get install -y -q dataset-fashion-mnist; } \
		|| echo "Fashion-MNIST: apt failed; vae-train will download it into data/"; \
	else echo "Fashion-MNIST: not found locally; vae-train will download it into data/"; fi

# The emoji set (train/emoji.py): every emoji of Debian's Noto Color Emoji font (SIL Open Font License 1.1) drawn by
# Pillow as 64x64 RGB PNGs on white, with the font's license notice, in data/emoji/ (the same bytes each run).
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
data-emoji: setup  ## data/emoji/: Debian's Noto Color Emoji font drawn as 64x64 RGB PNGs (apt installs the font)
	@if [ ! -f $(EMOJI_FONT) ] && command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
		S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$S apt-get install -y -q fonts-noto-color-emoji || { $$S apt-get update -q && $$S apt-get install -y -q fonts-noto-color-emoji; }; \
	fi
	@mkdir -p data
	$(BIN)/python -m vae_edge.train.emoji --out data/emoji --force

demo: setup data  ## set up, get the data, train 10 epochs, export (fp32 + int8), write samples.png
	$(BIN)/vae-train --name demo --force
	$(BIN)/vae-export runs/demo/model.pt --out vae-onnx --quantize int8 --force
	$(BIN)/vae-sample --model vae-onnx --n 64 --out samples.png
	@echo
	@echo "Trained model:  runs/demo/model.pt  (metrics.jsonl, curves.png, samples.png, reconstructions.png beside it)"
	@echo "ONNX export:    vae-onnx/  (encoder.onnx, decoder.onnx, int8 variants, vae.json)"
	@echo "Samples:        samples.png  (from onnxruntime, no torch)"

# The model bundled in the package (runtime/models/$(MODEL_NAME)/, shipped in the wheel): trained from scratch with
# this recipe and seed, exported with int8 and checked for parity. vae.json records the recipe and the metrics.
# Its NLL (IWAE, k = 5000, the whole test set, from the exported files) is a target of its own, make model-score, so
# that training and scoring need not fit in one session; the times of both are in docs/model-card.md.
MODEL_NAME := fashion-mnist
MODEL_RECIPE := --dataset fashion-mnist --arch conv --hidden-dim 256 --latent-dim 32 --prior vamp --prior-components 100 --binarize --epochs 200 --kl-warmup 10 --lr-schedule cosine --amp --channels-last --train-k 5 --train-k-epochs 80 --seed 1
model: setup data  ## train and export the bundled model (runtime/models/fashion-mnist/); then make model-score
	$(BIN)/vae-train $(MODEL_RECIPE) --name bundled-$(MODEL_NAME) --force
	$(BIN)/vae-export runs/bundled-$(MODEL_NAME)/model.pt --out runtime/models/$(MODEL_NAME) --quantize int8 --force
	$(BIN)/vae-info --model runtime/models/$(MODEL_NAME)

model-score: setup data  ## the bundled model's NLL (IWAE, k = 5000, whole test set), recorded in its vae.json
	$(BIN)/vae-eval runtime/models/$(MODEL_NAME) --iwae-k 5000 --record
	$(BIN)/vae-info --model runtime/models/$(MODEL_NAME)

# A wheel and an sdist in dist/, both carrying the bundled model: uv builds the sdist, then the wheel from it (the
# one way the suite's tests/conftest.py builds them too).
dist: setup  ## the wheel and the sdist in dist/
	rm -rf dist
	$(BIN)/uv build --out-dir dist
	@ls -l dist

# make dist, then the npm tarball beside them, each then checked as its user gets it: twine, the kept file lists
# (release/files.txt), a fresh venv without torch, a fresh Node project (release/check.py). No publishing. make test
# runs the same check (tests/test_release.py).
release: dist web-deps  ## make dist, the npm tarball, then each checked as its user gets it (release/check.py)
	cd web && npm pack --pack-destination ../dist
	$(BIN)/python release/check.py dist

# make test: every test but those run under qemu (another CPU's emulator), which make test-emulated runs. CI: both.
# pytest-xdist runs it on TEST_WORKERS processes (this machine's two cores), each test file whole on one of them,
# so that a file's module fixtures are made once, the longest files first (conftest.py: LONGEST_FIRST); the wheel
# and the fresh venv are made once for all (conftest.py: once_per_run).
TEST_WORKERS ?= 2
test: system-packages setup web-deps lint  ## the suite but the emulated-CPU tests (CI: then make test-emulated)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not emulated"

# The Debian packages the suite needs (Node.js, Chromium, the C and ARM64 tool chains, cJSON, qemu, Fashion-MNIST):
# installed where apt is usable (root, or sudo without a password), else the tests that will skip and the command.
system-packages:  ## the Debian packages the tests need, where apt is usable; else what will skip (make test runs it)
	@tests/system-packages.sh

# ruff on the Python, with pyproject.toml's settings ([tool.ruff]). The JavaScript is not linted: no linter is among
# its dependencies, and one (eslint) would bring a hundred packages for 716 lines.
lint: setup  ## ruff on the Python (pyproject.toml's [tool.ruff]); make test runs it first
	$(BIN)/ruff check .

test-emulated: system-packages setup web-deps  ## the tests run under qemu: ARM64, and an x86 CPU with AVX2 only
	$(BIN)/pytest -q -m emulated

test-fast: setup  ## the suite without the slow tests
	$(BIN)/pytest -q -m "not slow"

# The fuzz test (tests/test_fuzz.py) with FUZZ_CASES cases of each kind instead of make test's 60.
FUZZ_CASES ?= 2000
fuzz: setup web-deps  ## the fuzz test with FUZZ_CASES cases of each kind (default 2000)
	VAE_EDGE_FUZZ_CASES=$(FUZZ_CASES) $(BIN)/pytest -q tests/test_fuzz.py --durations=0

# Bugs that once slipped through, applied one at a time: the tests must catch each (tests/mutants.py).
mutants: setup  ## bugs that once slipped through, applied one at a time: a test must catch each
	$(BIN)/python tests/mutants.py

bench: setup  ## the Python benchmarks (training, runtime, cold start, IWAE)
	$(BIN)/python bench/runtime.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/iwae.py
	$(BIN)/python bench/noise.py
	$(BIN)/python bench/serve.py

clean:  ## remove runs, exports, samples, dist, build output and the demo site
	rm -rf runs vae-onnx samples.png .pytest_cache dist build site

# JavaScript (web/): npm ci again only when the lock changes; onnxruntime-node's CPU build ships in its package,
# so its install script (which would fetch CUDA files) is skipped.
WEB_STAMP := web/node_modules/.installed-stamp
SITE ?= site
PORT ?= 8000

web-deps: $(WEB_STAMP)  ## web/node_modules from the lock (npm ci)
$(WEB_STAMP): web/package-lock.json web/package.json
	@if command -v npm >/dev/null 2>&1; then \
		cd web && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund && touch node_modules/.installed-stamp; \
	else echo "npm not found: tests/test_web.py will skip (make system-packages installs Node.js)"; fi

# the demo site: MODEL=path picks the export (default: runtime/models/fashion-mnist if present, else vae-onnx/)
web: web-deps  ## the demo site in SITE (default site/); MODEL=path picks the export
	node web/build.mjs $(if $(MODEL),--model $(MODEL)) --out $(SITE)

serve-web:  ## serve the demo site on PORT (default 8000)
	node web/serve.mjs --root $(SITE) --port $(PORT)

test-web: setup web-deps  ## the JavaScript tests (tests/test_web.py)
	$(BIN)/pytest -q tests/test_web.py

bench-web: setup web-deps  ## the JavaScript library's speed in Node and Chromium
	$(BIN)/python bench/web.py

# C (native/): libvae_edge.a and vae-sample, by the system compiler. onnxruntime's C API header comes from Debian's
# libonnxruntime-dev: the installed one, else fetched from a newer suite into .cache/native/ (never committed).
# The library itself is loaded at run time (dlopen). native-arm64 cross-compiles with aarch64-linux-gnu-gcc
# against Debian's arm64 libc and cJSON (make arm64).
NATIVE_CACHE := .cache/native
ORT_HEADER_DIR := $(firstword $(wildcard /usr/include/onnxruntime) $(NATIVE_CACHE)/onnxruntime-header/usr/include/onnxruntime)
ORT_HEADER := $(ORT_HEADER_DIR)/onnxruntime_c_api.h
NATIVE_SRC := native/vae_edge.c native/random.c native/sha256.c native/onnx_check.c
CC ?= cc
# -ffp-contract=off: no fused multiply-add, which would round the noise otherwise than Python and JavaScript
NATIVE_CFLAGS ?= -std=c99 -O2 -ffp-contract=off -Wall -Wextra -Werror
NATIVE_LIBS := -lcjson -ldl -lm

# NATIVE_OUT and EXTRA_CFLAGS build variants (tests/test_native.py builds one with AddressSanitizer).
NATIVE_OUT ?= build/native
NATIVE_OBJ := $(patsubst native/%.c,$(NATIVE_OUT)/%.o,$(NATIVE_SRC))

native: $(NATIVE_OUT)/vae-sample  ## the C library and vae-sample in build/native/
$(NATIVE_CACHE)/onnxruntime-header/usr/include/onnxruntime/onnxruntime_c_api.h:
	native/debian-fetch.sh trixie amd64 $(NATIVE_CACHE)/onnxruntime-header libonnxruntime-dev

$(NATIVE_OUT)/%.o: native/%.c native/vae_edge.h native/format_rules.h native/sha256.h native/onnx_check.h $(ORT_HEADER)
	@mkdir -p $(NATIVE_OUT)
	$(CC) $(NATIVE_CFLAGS) $(EXTRA_CFLAGS) -I$(ORT_HEADER_DIR) -c $< -o $@

$(NATIVE_OUT)/libvae_edge.a: $(NATIVE_OBJ)
	ar rcs $@ $^

$(NATIVE_OUT)/vae-sample: native/vae_sample.c $(NATIVE_OUT)/libvae_edge.a
	$(CC) $(NATIVE_CFLAGS) $(EXTRA_CFLAGS) -Inative $^ $(NATIVE_LIBS) -o $@

# ARM64 on x86 (tests/test_native.py, tests/test_arm64.py): Debian's arm64 libc, cJSON and Python 3.11, unpacked
# into a root that qemu runs programs in, and trixie's qemu-user (10.x): bookworm's qemu 7.2 shows ARM64 programs
# the host's x86 /proc/cpuinfo, on which onnxruntime's cpuinfo crashes. Cached in .cache/arm64, as CI keeps .cache.
ARM64_CACHE := .cache/arm64
ARM64_ROOT := $(ARM64_CACHE)/root
ARM64_QEMU := $(ARM64_CACHE)/qemu/usr/bin/qemu-aarch64
ARM64_PACKAGES := libc6 libgcc-s1 libstdc++6 libcjson1 libcjson-dev python3.11-minimal libpython3.11-minimal \
	libpython3.11-stdlib zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libuuid1 libsqlite3-0 \
	libncursesw6 libtinfo6 libreadline8 libcrypt1

arm64:  ## Debian's arm64 root and qemu-user in .cache/arm64/
	native/debian-fetch.sh bookworm arm64 $(ARM64_ROOT) $(ARM64_PACKAGES)
	native/debian-fetch.sh trixie amd64 $(ARM64_CACHE)/qemu qemu-user
	find $(ARM64_CACHE)/qemu/usr -type f ! -name qemu-aarch64 -delete

native-arm64: arm64 build/native-arm64/vae-sample  ## the C vae-sample cross-compiled for ARM64
build/native-arm64/vae-sample: $(NATIVE_SRC) native/vae_sample.c native/vae_edge.h native/format_rules.h native/sha256.h native/onnx_check.h $(ORT_HEADER)
	@mkdir -p build/native-arm64
	aarch64-linux-gnu-gcc $(NATIVE_CFLAGS) -I$(ORT_HEADER_DIR) -I$(ARM64_ROOT)/usr/include -Inative \
		$(NATIVE_SRC) native/vae_sample.c -L$(ARM64_ROOT)/usr/lib/aarch64-linux-gnu $(NATIVE_LIBS) -o $@

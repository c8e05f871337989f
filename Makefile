# `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FMNIST_DEBIAN := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo test test-fast bench clean

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

test: setup
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

bench: setup
	$(BIN)/python bench/runtime.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/iwae.py

clean:
	rm -rf runs vae-onnx samples.png .pytest_cache

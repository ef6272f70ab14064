# siamese-edge: `make help` lists the targets.
PYTHON_SYSTEM ?= python3
VENV          ?= .venv
PY            := $(VENV)/bin/python
RUN           ?= artifacts/run
BUNDLE        ?= artifacts/bundle
DATA_DIR      ?=
WEIGHTS       ?=
TRAIN_ARGS    ?=
EXPORT_ARGS   ?=
PYTEST_ARGS   ?=

STAMP := $(VENV)/.installed

EDGE_VENV     ?= .venv-edge
EDGE_STAMP    := $(EDGE_VENV)/.installed
BENCH_JSON    ?= artifacts/bench/results.json
DEVICE_CHECK_OUT  ?= artifacts/device-check
DEVICE_CHECK_ARGS ?=
BENCH_ARGS    ?=

.PHONY: help setup edge-venv test train export evaluate unseen bench bench-device demo device-check clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'
	@echo "  Variables: DATA_DIR=<class folders> WEIGHTS=<mobilenet .h5> RUN=$(RUN) BUNDLE=$(BUNDLE)"

$(STAMP): requirements-edge.txt requirements-train.txt
	$(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-train.txt
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the workstation + test requirements

$(EDGE_STAMP): requirements-edge.txt
	$(PYTHON_SYSTEM) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/python -m pip install --quiet -r requirements-edge.txt
	@touch $(EDGE_STAMP)

edge-venv: $(EDGE_STAMP) ## Create .venv-edge from requirements-edge.txt alone (what a device installs)

test: $(STAMP) ## Run the test suite (no network, no ../shared needed)
	$(PY) -m pytest $(PYTEST_ARGS)

train: $(STAMP) ## Train and evaluate: make train DATA_DIR=... WEIGHTS=... RUN=...
	$(PY) -m train --run-dir $(RUN) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(TRAIN_ARGS)

evaluate: $(STAMP) ## Re-evaluate a finished run's saved encoder: make evaluate RUN=...
	$(PY) -m train.evaluate --run $(RUN) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

export: $(STAMP) ## Export a run to a device bundle: make export RUN=... BUNDLE=...
	$(PY) -m export --run $(RUN) --bundle $(BUNDLE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(EXPORT_ARGS)

unseen: $(STAMP) ## Unseen-class + open-set report, int8 device path: make unseen BUNDLE=... DATA_DIR=... WEIGHTS=...
	@test -n "$(DATA_DIR)" || { echo "make unseen needs DATA_DIR=<the data folder>"; exit 2; }
	$(PY) -m export.unseen --bundle $(BUNDLE) --data-dir $(DATA_DIR) $(if $(WEIGHTS),--weights $(WEIGHTS)) \
		--far 0.01 0.05 0.1 --out $(BUNDLE)-unseen.json

bench: $(STAMP) $(EDGE_STAMP) ## Benchmarks -> benchmarks/RESULTS.md (needs make train export; not in make test)
	@mkdir -p $(dir $(BENCH_JSON))
	$(PY) -m pytest benchmarks -p no:xdist --benchmark-only --benchmark-json=$(BENCH_JSON) \
		--benchmark-columns=median,iqr,min,rounds -o testpaths=benchmarks $(PYTEST_ARGS)
	$(PY) -m benchmarks.report --json $(BENCH_JSON) --out benchmarks/RESULTS.md

bench-device: $(EDGE_STAMP) ## Device benchmark in the edge venv, no TensorFlow: make bench-device BUNDLE=... BENCH_ARGS="--threads 1 2 4"
	$(EDGE_VENV)/bin/python -m edge.bench --bundle $(BUNDLE) $(BENCH_ARGS)

demo: $(STAMP) ## Search the bundle with 3 test images: make demo DATA_DIR=... (needs make export)
	@test -n "$(DATA_DIR)" || { echo "make demo needs DATA_DIR=<the data folder>"; exit 2; }
	$(PY) -m edge.gallery list --bundle $(BUNDLE)
	$(PY) -m edge.search --bundle $(BUNDLE) --k 5 --image $$(head -n 3 $(BUNDLE)/split/test.txt | cut -f1 | sed 's|^|$(DATA_DIR)/|')

# Needs qemu-user-static and debootstrap, root once (debootstrap) and a network on the first run.
device-check: ## x86 vs an emulated 64-bit Pi (qemu: A72, A76; LiteRT, tflite-runtime): make device-check BUNDLE=... [DATA_DIR=...]
	$(PYTHON_SYSTEM) -m benchmarks.device_check --bundle $(BUNDLE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
		--out $(DEVICE_CHECK_OUT) $(DEVICE_CHECK_ARGS)

clean: ## Remove artifacts/ (the venv stays)
	rm -rf artifacts .pytest_cache

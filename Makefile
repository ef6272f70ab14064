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

.PHONY: help setup test train export evaluate bench demo clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'
	@echo "  Variables: DATA_DIR=<class folders> WEIGHTS=<mobilenet .h5> RUN=$(RUN) BUNDLE=$(BUNDLE)"

$(STAMP): requirements-edge.txt requirements-train.txt
	$(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-train.txt
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the workstation + test requirements

test: $(STAMP) ## Run the test suite (no network, no ../shared needed)
	$(PY) -m pytest $(PYTEST_ARGS)

train: $(STAMP) ## Train and evaluate: make train DATA_DIR=... WEIGHTS=... RUN=...
	$(PY) -m train --run-dir $(RUN) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(TRAIN_ARGS)

evaluate: $(STAMP) ## Re-evaluate a finished run's saved encoder: make evaluate RUN=...
	$(PY) -m train.evaluate --run $(RUN) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

export: $(STAMP) ## Export a run to a device bundle: make export RUN=... BUNDLE=...
	$(PY) -m export --run $(RUN) --bundle $(BUNDLE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(EXPORT_ARGS)

bench: $(STAMP) ## Run the benchmarks (not part of make test)
	$(PY) -m pytest benchmarks -p no:xdist --benchmark-only $(PYTEST_ARGS)

clean: ## Remove artifacts/ (the venv stays)
	rm -rf artifacts .pytest_cache

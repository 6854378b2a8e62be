# MAX-Whisper: the two commands of the README, and their parts.
#   make pipeline   create .venv, install, run notebooks 01 -> 04 on tiny.en (reports/runs/<id>/)
#   make test       create .venv, install, lint, run every test and the notebooks under nbval

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch: on this project's machines torch==2.13.0 resolves to a local CPU wheel.
# Elsewhere pass e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu (or a CUDA index on GPUs).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= bench,models,dev
PIPELINE_ARGS ?=

.PHONY: env pipeline test lint unit notebooks clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

env: $(VENV)/.installed

pipeline: env
	$(BIN)/python -m maxwhisper_lib.pipeline $(PIPELINE_ARGS)

lint: env
	$(BIN)/ruff check maxwhisper_lib tests scripts

unit: env
	$(BIN)/python -m pytest tests

notebooks: env
	$(BIN)/python -m pytest --nbval-lax --sanitize-with notebooks/nbval_sanitize.cfg notebooks

test: lint unit notebooks

clean-venv:
	rm -rf $(VENV)

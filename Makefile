# MAX-Whisper: the two commands of the README, and their parts.
#   make pipeline   create .venv, install, run notebooks 01 -> 04 on tiny.en (reports/run-<time>-<model>-<device>/)
#   make test       create .venv, install, lint, run every test and the notebooks under nbval
#   make offline-bundle   wheels + weights + data + precompiled GPU graphs for an offline GPU host
#                         (scripts/README.md)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch: on this project's machines torch==2.13.0 resolves to a local CPU wheel.
# Elsewhere pass e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu (or a CUDA index on GPUs).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= lab,bench,models,dev,vad,scale,server
PIPELINE_ARGS ?=

.PHONY: env pipeline test test-fast lint unit notebooks offline-bundle precompile-gpu precompile-cpu clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

env: $(VENV)/.installed

pipeline: env
	$(BIN)/python -m maxwhisper_lib.lab.pipeline $(PIPELINE_ARGS)

lint: env
	$(BIN)/ruff check maxwhisper_lib tests scripts

unit: env
	$(BIN)/python -m pytest --durations=25 tests

notebooks: env
	$(BIN)/python -m pytest --nbval-lax --sanitize-with notebooks/nbval_sanitize.cfg notebooks

test: lint unit notebooks

# The fast tier: every test not marked slow, with MAX compiles refused (about a minute on 2
# cores); `make test` stays the complete suite, what CI runs.
test-fast: env
	$(BIN)/ruff check maxwhisper_lib tests scripts
	$(BIN)/python -m pytest --fast tests

# tiny.en's CPU graphs, float32 and int8, compiled for the portable x86-64-v3 target,
# xz-compressed into maxwhisper_lib/engine/precompiled/ (shipped: a fresh machine transcribes without
# compiling). Re-run it after changing a graph or kernel source (about 6 minutes on 2 cores); a
# test says when it is due. On an AVX-512 host MAX 26.7 makes wrong x86-64-v3 code (Intel Xeon
# and AMD EPYC Zen 5 alike: jfk comes out as "Thank you."), so there the compile runs under
# QEMU's user-mode emulation of an AVX2 CPU (Debian's qemu-user; about 11 minutes a dtype
# instead of 1.5), which makes a right build. Either way the build is then run natively on a
# clip and removed if it is wrong.
PRECOMPILE_CPU_WRAP ?= $(shell grep -q avx512f /proc/cpuinfo && echo "qemu-x86_64 -cpu EPYC-Rome")
precompile-cpu: env
	@if [ -n "$(PRECOMPILE_CPU_WRAP)" ] && ! command -v qemu-x86_64 > /dev/null; then \
		echo "this CPU has AVX-512: install qemu-user (apt-get install qemu-user) or build on an AVX2 machine" >&2; exit 2; fi
	rm -f maxwhisper_lib/engine/precompiled/*.mef.xz maxwhisper_lib/engine/precompiled/*.json
	$(PRECOMPILE_CPU_WRAP) $(BIN)/python -m maxwhisper_lib.lab.precompile --model tiny.en --target cpu:x86-64-v3  # dtypes: precompile.SHIPPED_DTYPES

# tiny.en's graphs compiled here for the GPU host's architecture (MAX's virtual-device mode; about
# 19 minutes for both dtypes on 2 cores, 39 MiB), so that the host does not spend its time compiling.
GPU_TARGET ?= cuda:sm_90a
precompile-gpu: env
	$(BIN)/python -m maxwhisper_lib.lab.precompile --model tiny.en --target $(GPU_TARGET) \
		--dtypes float32,float16 --output build/precompiled

# Wheels (CPython 3.12 manylinux), weights, data and the precompiled GPU graphs for an offline GPU
# host, cut into 55 MiB parts under .stage/; see scripts/README.md for carrying and installing them.
offline-bundle: env precompile-gpu
	$(BIN)/python -m maxwhisper_lib.checkpoints extract --model tiny.en
	$(BIN)/python scripts/gpu_host/offline_bundle.py gather
	$(BIN)/python scripts/gpu_host/offline_bundle.py pack --include weights/tiny.en --include data \
		--include build/precompiled --with-source
	$(BIN)/python scripts/gpu_host/offline_bundle.py carry all

clean-venv:
	rm -rf $(VENV)

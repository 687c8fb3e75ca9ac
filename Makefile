# Two commands do all the set-up on a fresh machine:
#   make demo   the whole loop offline on the embedded Gemma 3 270M
#   make test   the test suite
# The first run builds llama-cpp-python (llama.cpp) from source: about 10 minutes on 2 cores for
# the CPU. ACCEL picks the build: auto (default: CUDA when nvidia-smi and nvcc are there, Metal on
# Apple silicon, else the CPU), cuda, metal or cpu. The built wheel is kept per accelerator in
# $(WHEELHOUSE), so later installs, and switching back, take seconds:
#   make demo ACCEL=cuda    (or metal, cpu; `make engine ACCEL=...` switches an existing .venv)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ACCEL  ?= auto
LLAMA_CPP_VERSION := 0.3.36
ACCEL_KIND := $(shell $(PYTHON) src/core/accel.py choose $(ACCEL))
ifeq ($(ACCEL_KIND),invalid)
$(error ACCEL=$(ACCEL): use auto, cuda, metal or cpu)
endif
# extra CMake flags for llama.cpp, e.g. LLAMA_CMAKE_EXTRA=-DCMAKE_CUDA_ARCHITECTURES=90
LLAMA_CMAKE_EXTRA ?=
LLAMA_CMAKE_ARGS := $(strip $(shell $(PYTHON) src/core/accel.py cmake-args $(ACCEL_KIND)) $(LLAMA_CMAKE_EXTRA))
# one folder per kind and set of CMake arguments (a wheel built with other flags is never reused)
WHEEL_TAG := $(shell $(PYTHON) src/core/accel.py wheel-tag $(ACCEL_KIND) $(LLAMA_CMAKE_EXTRA))
WHEELHOUSE ?= $(HOME)/.cache/gguf-shootout/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(WHEEL_TAG)
ENGINE_FILE := $(VENV)/.engine
# pip compiles every installed file to bytecode, one file at a time (about 17,000 with the dev extras);
# --no-compile leaves that out and shootout.precompile imports what the commands and the tests use
# (about 5,000 files) in two processes, which writes their bytecode once (leaving it to first imports
# would make each parallel test worker compile torch and transformers again). benchmarks/install_time.sh
# measures the ways side by side.
PIP_INSTALL = $(PY) -m pip install --quiet --no-compile
COMPILE = $(PY) -m shootout.precompile
# ACCEL given on the command line or in the environment switches an installed engine; auto keeps it
ACCEL_EXPLICIT := $(filter command environment,$(firstword $(origin ACCEL)))
INSTALLED_KIND := $(shell cat $(VENV)/.engine 2>/dev/null)
SWITCH_ENGINE := $(if $(and $(ACCEL_EXPLICIT),$(INSTALLED_KIND)),$(filter-out $(ACCEL_KIND),$(INSTALLED_KIND)))

.PHONY: install engine demo finetune-demo test test-fast clean

# the engine wheel: built once per accelerator with pip, then installed from the kept wheel. A GPU build
# skips pip's cache (it cannot tell a CUDA build from a CPU build of the same sdist); the CPU build may
# take pip's cached wheel (a fresh CI machine then installs in seconds)
define install_engine
	mkdir -p $(WHEELHOUSE)
	ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel --no-deps $(if $(filter-out cpu,$(ACCEL_KIND))$(LLAMA_CMAKE_EXTRA),--no-cache-dir) \
	    --no-binary llama-cpp-python \
	    -w $(WHEELHOUSE) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP_INSTALL) --force-reinstall --no-deps $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP_INSTALL) $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	echo $(ACCEL_KIND) > $(ENGINE_FILE)
endef

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a looser requirement pulls a multi-GB CUDA build on Linux
	$(PIP_INSTALL) torch==2.13.0
	# llama.cpp for $(ACCEL_KIND) ($(if $(LLAMA_CMAKE_ARGS),CMAKE_ARGS=$(LLAMA_CMAKE_ARGS),default CMake flags))
	$(install_engine)
	$(PIP_INSTALL) -e '.[dev]'
	$(COMPILE)
	touch $(STAMP)

install: $(STAMP) $(if $(SWITCH_ENGINE),engine)

# (re)install the engine for ACCEL, e.g. `make engine ACCEL=cuda` after a CPU install
engine: $(STAMP)
	# llama.cpp for $(ACCEL_KIND), replacing the $(or $(INSTALLED_KIND),no) build installed
	$(install_engine)

demo: install
	$(VENV)/bin/shootout demo

# fine-tune the embedded model on the news snapshot (CPU), export it, benchmark base vs fine-tune
finetune-demo: install
	$(VENV)/bin/shootout finetune-demo

# the suite in parallel workers, one per core and one more (a worker waiting on a server or a
# subprocess leaves its core to the others); TEST_WORKERS=0 runs it in one process. A test module stays
# on one worker, so the servers and models it shares are started once
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print((os.cpu_count() or 1) + 1)")
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# the layer contracts of pyproject.toml (import-linter) first: arrows only point down
LINT_IMPORTS := $(VENV)/bin/lint-imports

test: install
	$(LINT_IMPORTS)
	$(PYTEST)

# a quicker loop while editing: without the tests marked slow (the Gemma export round trips)
test-fast: install
	$(LINT_IMPORTS)
	$(PYTEST) -m "not slow"

clean:
	rm -rf $(VENV) demo finetune-demo .cache .pytest_cache

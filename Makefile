# Two commands do all the set-up on a fresh machine:
#   make demo   the whole loop offline on the embedded Gemma 3 270M
#   make test   the test suite
# The first run builds llama-cpp-python from source (about 10 minutes on 2 cores); pip caches the
# wheel, so later installs take seconds.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo finetune-demo test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a looser requirement pulls a multi-GB CUDA build on Linux
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/shootout demo

# fine-tune the embedded model on the news snapshot (CPU), export it, benchmark base vs fine-tune
finetune-demo: $(STAMP)
	$(VENV)/bin/shootout finetune-demo

test: $(STAMP)
	$(PY) -m pytest -q

# the suite without the end-to-end subprocess tests (a quicker loop while editing)
test-fast: $(STAMP)
	$(PY) -m pytest -q --deselect tests/test_demo.py --deselect tests/test_runner.py

clean:
	rm -rf $(VENV) demo finetune-demo .cache .pytest_cache

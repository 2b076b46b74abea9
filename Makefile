# Two set-up commands on a fresh machine (see README):
#   make demo   creates .venv, installs deploykit, exports resnet50 + deit_small, benchmarks them on the CPU
#   make test   creates .venv, installs deploykit with its dev and openvino extras, runs the whole test suite (CI)
# and for developers:
#   make test-fast   the suite without the tests that export or benchmark real models (-m "not slow")
#
# Both run in parallel (pytest-xdist, one worker per core; a test file stays on one worker, so its module and
# session fixtures are built once there), then the few tests that assert on timing with tight bounds (marked
# serial) alone, with nothing beside them. Any subset: .venv/bin/python -m pytest -q [-n auto] PATHS.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pinned to the builds that lie on this machine's disk (others download gigabytes)
TORCH := torch==2.14.1 torchvision==0.29.1

PARALLEL := -n auto --dist loadfile

.PHONY: demo test test-fast install install-dev clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet $(TORCH) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet $(TORCH) -e ".[dev,openvino]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/deploykit bench resnet50 deit_small --target ort

test: install-dev
	$(PY) -m pytest -q $(PARALLEL) -m "not serial"
	$(PY) -m pytest -q -m "serial"

test-fast: install-dev
	$(PY) -m pytest -q $(PARALLEL) -m "not slow and not serial"
	$(PY) -m pytest -q -m "serial and not slow"

clean:
	rm -rf $(VENV) .pytest_cache

# Two set-up commands on a fresh machine (see README):
#   make demo   creates .venv, installs deploykit, exports resnet50 + deit_small, benchmarks them on the CPU
#   make test   creates .venv, installs deploykit with its dev and openvino extras, runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pinned to the builds that lie on this machine's disk (others download gigabytes)
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install install-dev clean

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
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache

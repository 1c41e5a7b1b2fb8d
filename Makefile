# smelt: all set-up happens here, so a fresh machine needs nothing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WHEELS := $(wildcard /opt/wheels)
PIP_FLAGS := $(if $(WHEELS),--find-links $(WHEELS),)

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_FLAGS) "torch==2.13.0"
	$(PY) -m pip install --quiet $(PIP_FLAGS) -e ".[torch,jax,tvm,dev,bench]"
	touch $(STAMP)

demo: setup
	$(PY) -m smelt.demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider tests

bench: setup
	$(PY) benchmarks/cpu_latency.py

lint: setup
	$(PY) -m ruff check ir rewrite passes backends smelt tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info

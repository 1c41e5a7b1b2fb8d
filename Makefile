# smelt: all set-up happens here, so a fresh machine needs nothing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WHEELS := $(wildcard /opt/wheels)
PIP_FLAGS := $(if $(WHEELS),--find-links $(WHEELS),)
# the versions the tests pass with (pip constraints: they pin, they install nothing)
CONSTRAINTS := constraints.txt
# torchvision's CUDA-only wheel imports on the CPU torch through this hook, in every process of
# the venv (transformers imports torchvision): benchmarks/zoo_torchvision.py says how and why
TORCHVISION_PTH = "$$($(1) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/smelt-zoo-torchvision.pth"
# the zoo sweep against the newest releases, apart from the pinned venv
NEWEST := build/venv-newest
ZOO_FLAGS ?=

.PHONY: setup demo test lint bench clean toolchain zoo zoo-newest

# Cross toolchain and emulator for the microcontroller backend (target="c"), and Graphviz's
# `dot` for `smelt draw`, from Debian.
TOOLS := arm-none-eabi-gcc qemu-system-arm dot
TOOL_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm graphviz
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

setup: $(STAMP) toolchain

toolchain:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian: $(TOOL_PACKAGES))"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TOOL_PACKAGES) >/dev/null || \
	  { echo "error: could not install $(TOOL_PACKAGES) with apt-get; install them, then run make again" >&2; exit 1; }; \
	fi

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_FLAGS) -c $(CONSTRAINTS) "torch==2.13.0"
	$(PY) benchmarks/zoo_torchvision.py > $(call TORCHVISION_PTH,$(PY))
	$(PY) -m pip install --quiet $(PIP_FLAGS) -c $(CONSTRAINTS) -e ".[torch,jax,tvm,dev,bench,zoo]"
	touch $(STAMP)

demo: setup
	$(PY) -m smelt.demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider tests

bench: setup
	$(PY) -m benchmarks.cpu_latency

# every torchvision classification model, a timm sample, transformers architectures (hours)
zoo: setup
	$(PY) -m benchmarks.model_zoo $(ZOO_FLAGS)

# the same sweep in a venv of the newest releases of the zoo packages (torch stays smelt's)
zoo-newest:
	$(PYTHON) -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install --quiet --upgrade pip
	$(NEWEST)/bin/python -m pip install --quiet $(PIP_FLAGS) "torch==2.13.0"
	$(NEWEST)/bin/python benchmarks/zoo_torchvision.py > $(call TORCHVISION_PTH,$(NEWEST)/bin/python)
	$(NEWEST)/bin/python -m pip install --quiet $(PIP_FLAGS) -e ".[torch,tvm,zoo]" matplotlib
	$(NEWEST)/bin/python -m pip install --quiet $(PIP_FLAGS) --upgrade "torch==2.13.0" \
	  transformers timm torchvision huggingface-hub safetensors tokenizers
	$(NEWEST)/bin/python -m benchmarks.model_zoo --newest $(ZOO_FLAGS)

lint: setup
	$(PY) -m ruff check ir rewrite passes backends smelt tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info

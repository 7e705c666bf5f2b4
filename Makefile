# dendrix — everything goes through .venv/ in the repo root (created or reused).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# What each target needs on top of the core (torch + numpy): see [project.optional-dependencies].
DEMO_EXTRAS := train,data,plot,fast
TEST_EXTRAS := train,data,plot,fast,onnx,nir,dev
STAMP  := $(VENV)/.dendrix-installed
DEVSTAMP := $(VENV)/.dendrix-dev-installed
DOCSTAMP := $(VENV)/.dendrix-docs-installed
# check-core: a throw-away venv with the bare core (no extras), non-editable, as `pip install dendrix` gives.
CORE_VENV := build/core-venv

.PHONY: demo demo-vision test test-slow bench install dev docs dist check-core clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first and pinned (constraints.txt), then the package in editable mode with the demo's extras.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[$(DEMO_EXTRAS)]'
	touch $(STAMP)

# Test/benchmark extras. SpikingJelly 2.0 only installs without its (torchvision/torchaudio) dependencies.
$(DEVSTAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[$(TEST_EXTRAS)]'
	$(PIP) install -q --no-deps spikingjelly==2.0.0
	touch $(DEVSTAMP)

$(DOCSTAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[docs]'
	touch $(DOCSTAMP)

install: $(STAMP)
dev: $(DEVSTAMP)

demo: $(STAMP)
	$(VENV)/bin/dendrix demo $(DEMO_ARGS)

test: $(DEVSTAMP)
	$(PY) -m pytest -q --timeout=600 $(PYTEST_ARGS)

test-slow: $(DEVSTAMP)
	$(PY) -m pytest -q -m slow --timeout=3600 $(PYTEST_ARGS)

bench: $(DEVSTAMP)
	$(PY) benchmarks/bench_neurons.py

# The documentation site (MkDocs + mkdocstrings), warnings as errors, into build/site.
docs: $(DOCSTAMP)
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

# Wheel and sdist into dist/, checked by twine (metadata, README rendering).
dist: $(DEVSTAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

# The bare core in a fresh venv: torch (the pinned local wheel) then dendrix with no extras; runs every kind
# forward+backward and fails if numba/scipy/scikit-learn/matplotlib/h5py got installed.
check-core:
	rm -rf $(CORE_VENV)
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install -q -c constraints.txt torch==2.13.0
	$(CORE_VENV)/bin/python -m pip install -q -c constraints.txt .
	cd $(CORE_VENV) && bin/python $(CURDIR)/tests/core_check.py
	rm -rf $(CORE_VENV)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache

# LIF, PLIF, DA-LIF and DLIF on the scikit-learn digits as images (spiking CNN): docs/vision.md
demo-vision: $(STAMP)
	$(VENV)/bin/dendrix demo-vision $(DEMO_ARGS)

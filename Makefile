# dendrix — everything goes through .venv/ in the repo root (created or reused).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.dendrix-installed
DEVSTAMP := $(VENV)/.dendrix-dev-installed

.PHONY: demo test test-slow bench install dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first and pinned (constraints.txt), then the package in editable mode.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e .
	touch $(STAMP)

# Test/benchmark extras. SpikingJelly 2.0 only installs without its (torchvision/torchaudio) dependencies.
$(DEVSTAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(PIP) install -q --no-deps spikingjelly==2.0.0
	touch $(DEVSTAMP)

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

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

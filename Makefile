# Two entry points, each sets up .venv on a fresh machine first:
#   make demo   the main job on the embedded default (the real SmolLM2 model, installed and exported on first use)
#   make test   the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENV_GIB := 7

.PHONY: install demo test benchmark clean

install: $(STAMP)

$(STAMP): setup.py Makefile
	@# A full disk otherwise surfaces minutes later as pip's "No space left on device", half-way through torch.
	@$(PYTHON) -c 'import shutil, sys; free = shutil.disk_usage(".").free / 2**30; free >= $(VENV_GIB) or sys.exit(f"make: only {free:.1f} GiB free here; .venv needs about $(VENV_GIB) GiB (torch 2.14.1 from the local wheel store is a CUDA build that brings ~4 GiB of NVIDIA libraries). Free disk space, then run make again.")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch comes from the machine's local wheel store; name the exact release so pip never looks further.
	$(BIN)/pip install --quiet torch==2.14.1
	$(BIN)/pip install --quiet -e ".[dev,genai,diffusers]"
	touch $(STAMP)

demo: install
	$(BIN)/python -m lab.demo

test: install
	$(BIN)/python -m pytest -q tests

benchmark: install
	$(BIN)/optimum-cli dynexec benchmark

clean:
	rm -rf $(VENV) build *.egg-info

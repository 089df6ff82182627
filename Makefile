# Two entry points, each sets up .venv on a fresh machine first:
#   make demo   the main job on the embedded default (fixture models, trained and cached on first use)
#   make test   the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test benchmark clean

install: $(STAMP)

$(STAMP): setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch comes from the machine's local wheel store; name the exact release so pip never looks further.
	$(BIN)/pip install --quiet torch==2.14.1
	$(BIN)/pip install --quiet -e ".[dev,genai,diffusers]"
	touch $(STAMP)

demo: install
	$(BIN)/python -m optimum_dynexec.demo

test: install
	$(BIN)/python -m pytest -q tests

benchmark: install
	$(BIN)/optimum-cli dynexec benchmark

clean:
	rm -rf $(VENV) build *.egg-info

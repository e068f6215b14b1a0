# Two entry points for a fresh machine (see README):
#   make demo   install, then run the offline end-to-end evaluation on the embedded defaults
#   make test   install, then run the test suite
# TORCH_SPEC pins the CPU build CI uses; for CUDA, see README "Real use".

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/vlmguard-eval run

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results/demo/logs

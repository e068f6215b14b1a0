# Two entry points for a fresh machine (see README):
#   make demo     install, then run the offline end-to-end evaluation (writes results/demo/, git-ignored)
#   make test     install, then run the test suite
#   make example  regenerate results/example/, the committed copy of the demo's report
# TORCH_SPEC pins the torch version CI uses (CI's pip finds a CPU wheel of it; on plain PyPI for Linux
# the same pin is the CUDA build): see README "CUDA torch".

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: install demo example test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/vlmguard-eval run

example: install
	rm -rf results/example
	$(BIN)/vlmguard-eval run --out results/example --display none > /dev/null

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results/demo

# The README's two commands: `make book` and `make test`. Both do all set-up first.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: setup book test bench clean

setup:
	@bash scripts/setup.sh

## Execute every chapter at its small CPU defaults and render HTML under _build/html.
book: setup
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going

## Unit tests, every chapter under nbval, and the browser test of the built book.
test: setup
	$(PY) -m pytest -q --durations=15 tests

bench: setup
	$(PY) -m tdml_lib bench

clean:
	rm -rf _build

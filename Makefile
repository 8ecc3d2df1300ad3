# The README's two commands: `make book` and `make test`. Both do all set-up first.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: setup book test bench results clean

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

## Re-run every stored experiment at full scale into results/ (hours on a CPU). Resumable:
## current results are skipped. In the background: `nohup make results &` (then `tail -f nohup.out`).
## Some only: `make results EXPERIMENTS="transfer clustering"`.
EXPERIMENTS ?=
results: setup
	$(PY) -m tdml_lib reproduce $(EXPERIMENTS)

clean:
	rm -rf _build

"""Command line: ``python -m tdml_lib --help``.

Each subcommand lives in the module that does the work; a module contributes a
subcommand through a function ``add_cli(subparsers)`` that registers its parser and sets
``func`` (argparse's ``set_defaults``). Modules are listed here in the order shown.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

# module -> subcommands it provides (its add_cli registers them)
CLI_MODULES = ("data", "runner", "experiments.training", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tdml_lib",
        description="Transferable Deep Metric Learning for Clustering: the book's command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in CLI_MODULES:
        try:
            module = importlib.import_module(f"tdml_lib.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tdml_lib.{name}":
                continue  # that part of the book is not built yet
            raise
        add = getattr(module, "add_cli", None)
        if add is not None:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m tdml_lib --help``.

Each subcommand lives in the module that does the work; a module contributes a
subcommand through a function ``add_cli(subparsers)`` that registers its parser and sets
``func`` (argparse's ``set_defaults``). Modules are listed here in the order shown.

Every subcommand's ``--help`` shows its defaults (:func:`show_defaults`). An error is
one line, ``error: <what was wrong and what to do>``, with exit status 2; ``--debug``
shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# module -> subcommands it provides (its add_cli registers them)
CLI_MODULES = ("data", "runner.cli", "experiments.training", "experiments.clustering",
               "experiments.synthetic", "bench")


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Add ``(default: ...)`` to the help of every option of ``parser`` and its
    subcommands that has a default and does not state it already."""
    for action in parser._actions:  # argparse keeps no public list
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
            continue
        shows = action.option_strings or action.nargs in ("?", "*")
        default = action.default
        if not shows or default in (None, False, argparse.SUPPRESS) or action.help == argparse.SUPPRESS:
            continue
        text = action.help or ""
        if "default" not in text.lower():
            action.help = f"{text} (default: %(default)s)".strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tdml_lib",
        description="Transferable Deep Metric Learning for Clustering: the book's command line.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (default: one line)")
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
    show_defaults(parser)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, (ValueError, FileNotFoundError)) or not text:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from .runner.processes import PARENT_ENV, die_with_parent

    parent = os.environ.pop(PARENT_ENV, None)
    if parent:  # started by `reproduce`: die with it, even on kill -9
        die_with_parent(int(parent))
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before COMMAND
    parser = build_parser()
    args = parser.parse_args([a for a in argv if a != "--debug"])
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"error: {_one_line(exc)} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The record every script under ``scripts/`` stores beside its results: the command that made
them, the wall time, and the provenance of the code that ran (:func:`tdml_lib.io.provenance`).
One writer, so that every stored table says the same things about itself."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from tdml_lib.io import atomic_path, provenance, write_json


def command_line() -> str:
    """The command that ran this script, as a reader types it from the project root."""
    return "python " + shlex.join([f"scripts/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def save_table(table: pd.DataFrame, csv_path: Path, args: argparse.Namespace, started: float, state: Any,
               **record: Any) -> None:
    """Write ``table`` to ``csv_path`` and, beside it as ``.json``, the command, the fields of
    ``record``, the wall time since ``started`` (a ``time.time()``) and the provenance of
    ``state`` (:func:`tdml_lib.io.code_state`, taken when the script started), with the
    script's arguments as its parameters. Each file is written whole or not at all."""
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    write_json(csv_path.with_suffix(".json"), {
        "command": command_line(), **record, "wall_time_s": time.time() - started,
        "provenance": provenance(params=vars(args), device="cpu", state=state)})

"""Experiments as parameterised notebooks: ``run`` one chapter, ``sweep`` a grid of them,
``reproduce`` every stored result (chapter 8 shows the full-scale results made this way).

Every experiment in the book is a chapter executed with new parameters, so a reader can
re-run any figure or table at another scale by parameters alone. One module per job:

* :mod:`~tdml_lib.runner.toc`: the book's chapters (``_toc.yml``, short names);
* :mod:`~tdml_lib.runner.parameters`: read a chapter's ``parameters`` cell and check
  new values against it before anything runs;
* :mod:`~tdml_lib.runner.metrics`: :func:`write_metrics`, the one way a chapter writes
  its numbers (with provenance), and :func:`dataset_sources`;
* :mod:`~tdml_lib.runner.execute`: :func:`run_chapter` (papermill, the output folder
  written as a whole, ``result.json``) and the kernels' matplotlib environment;
* :mod:`~tdml_lib.runner.sweep`: :func:`sweep` over any executor, resumable, one live
  process per configuration;
* :mod:`~tdml_lib.runner.processes`: child processes that die with their parent;
* :mod:`~tdml_lib.runner.registry`: the table of stored experiments
  (:data:`STORED_EXPERIMENTS`) and :func:`freshness` of a stored result;
* :mod:`~tdml_lib.runner.reproduce`: :func:`reproduce`, ``make results``;
* :mod:`~tdml_lib.runner.cli`: the ``run``, ``sweep`` and ``reproduce`` subcommands.

Command line (``python -m tdml_lib --help``)::

    python -m tdml_lib run 03 -p EPOCHS 200 -p DEVICE cuda --out runs/critic-200
    python -m tdml_lib sweep 03 --grid grid.yaml --scheduler local
    python -m tdml_lib reproduce            # every stored experiment, into results/
"""
from __future__ import annotations

from .._lazy import make_lazy

_LAZY = {
    # name -> (module, attribute): a chapter that only writes its metrics loads only .metrics
    "add_cli": (".cli", "add_cli"),
    "INLINE_BACKEND": (".execute", "INLINE_BACKEND"),
    "RESULT_FILE": (".execute", "RESULT_FILE"),
    "RunRecord": (".execute", "RunRecord"),
    "check_output_folder": (".execute", "check_output_folder"),
    "reproduce_command": (".execute", "reproduce_command"),
    "run_chapter": (".execute", "run_chapter"),
    "METRICS_FILE": (".metrics", "METRICS_FILE"),
    "dataset_sources": (".metrics", "dataset_sources"),
    "read_metrics": (".metrics", "read_metrics"),
    "write_metrics": (".metrics", "write_metrics"),
    "RESULTS_PARAM": (".parameters", "RESULTS_PARAM"),
    "chapter_code_hash": (".parameters", "chapter_code_hash"),
    "config_hash": (".parameters", "config_hash"),
    "parameter_values": (".parameters", "parameter_values"),
    "read_parameters": (".parameters", "read_parameters"),
    "validate_overrides": (".parameters", "validate_overrides"),
    "STORED_EXPERIMENTS": (".registry", "STORED_EXPERIMENTS"),
    "StoredExperiment": (".registry", "StoredExperiment"),
    "freshness": (".registry", "freshness"),
    "stored_experiment": (".registry", "stored_experiment"),
    "reproduce": (".reproduce", "reproduce"),
    "expand_grid": (".sweep", "expand_grid"),
    "load_grid": (".sweep", "load_grid"),
    "sweep": (".sweep", "sweep"),
    "BOOK_DIR": (".toc", "BOOK_DIR"),
    "resolve_chapter": (".toc", "resolve_chapter"),
    "toc_files": (".toc", "toc_files"),
}

_SUBMODULES = {"cli", "execute", "metrics", "parameters", "processes", "registry", "reproduce", "sweep", "toc"}

__all__ = ["BOOK_DIR", "INLINE_BACKEND", "METRICS_FILE", "RESULTS_PARAM", "RESULT_FILE",
           "RunRecord", "STORED_EXPERIMENTS", "StoredExperiment", "add_cli",
           "chapter_code_hash", "check_output_folder", "config_hash", "dataset_sources",
           "expand_grid", "freshness", "load_grid", "parameter_values", "read_metrics", "read_parameters",
           "reproduce", "reproduce_command", "resolve_chapter", "run_chapter",
           "stored_experiment", "sweep", "toc_files", "validate_overrides", "write_metrics"]

make_lazy(__name__, _LAZY, _SUBMODULES)

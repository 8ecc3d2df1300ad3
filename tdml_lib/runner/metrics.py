"""The one way a chapter writes its numbers: :func:`write_metrics`, with provenance.

A chapter that exports numbers declares a parameter ``RESULTS_DIR`` and ends with one
call::

    tdml.runner.write_metrics(RESULTS_DIR, {"table": rows},
                              params=dict(SEED=SEED, EPOCHS=EPOCHS),
                              data_sources=tdml.runner.dataset_sources(TEST_DOMAINS),
                              models={"numbers critic": critic}, device=device)

It writes ``RESULTS_DIR/metrics.json`` = ``{"metrics": ..., "provenance": ...}``, the
provenance filled in by :func:`tdml_lib.io.provenance` (every pinned package version,
OS and CPU, the sha256 of the shipped critics and of every model given, the data
sources, the commit and whether the tree was clean, the library's source hash, the
parameters without machine paths). At ``RESULTS_DIR = None`` it writes nothing.

The runner (:func:`tdml_lib.runner.run_chapter`) sets ``RESULTS_DIR`` to the run's
folder and, after the run, reads the file back with :func:`read_metrics`: the numbers
go into ``result.json`` under ``"metrics"``, and the device, data sources and models
the chapter reported go into its provenance. The schema is in ``results/README.md``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..io import provenance, write_json

METRICS_FILE = "metrics.json"
#: Provenance entries that only the chapter's kernel knows; the runner takes them from it.
KERNEL_FIELDS = ("device", "gpu", "data_sources", "models")


def dataset_sources(names: Iterable[str | tuple[str, str]], split: str = "test"
                    ) -> dict[str, str]:
    """Where each dataset came from, as :func:`tdml_lib.data.load` reports it.

    Args:
        names: dataset names (``"numbers"``, ``"letters"``...) or ``(name, split)`` pairs.
        split: the split of the names given without one: ``train``, ``test`` or ``all``.

    Returns:
        ``{"name/split": source}``, e.g. ``{"letters/test": "A-Z rendered from Debian
        handwriting fonts, ..."}`` or the EMNIST source where EMNIST letters are installed.

    Raises:
        ValueError: an unknown name or split. FileNotFoundError: a dataset not prepared.
    """
    from .. import data

    if isinstance(names, (str, bytes)):
        names = [names]
    out: dict[str, str] = {}
    for item in names:
        name, part = (item, split) if isinstance(item, str) else tuple(item)
        out[f"{name}/{part}"] = data.load(name, part).source
    return out


def write_metrics(results_dir: str | os.PathLike | None, metrics: Mapping[str, Any], *,
                  params: Mapping[str, Any] | None = None,
                  data_sources: Mapping[str, str] | None = None, models: Any = None,
                  device: Any = None, seed: int | None = None) -> Path | None:
    """Write a chapter's numbers with their provenance to ``results_dir/metrics.json``.

    Args:
        results_dir: the chapter's ``RESULTS_DIR`` parameter; ``None`` writes nothing.
        metrics: JSON-able numbers, e.g. ``{"table": rows}`` (keys chapter 8 reads:
            ``table``, ``baselines``, ``clustering``; schema in results/README.md).
        params: the chapter's parameters (machine paths are made relative or removed).
            Under the runner, ``result.json`` records every effective parameter anyway.
        data_sources: ``{dataset: source}``, easiest from :func:`dataset_sources`.
        models: models the chapter loaded or trained: ``{label: path or torch module}``
            (hashed; the shipped critics are always hashed).
        device: the device the chapter used (a ``torch.device`` or text).
        seed: the seed; default ``params["SEED"]`` when given.

    Returns:
        The file written, or None when ``results_dir`` is None.

    Raises:
        ValueError: ``metrics`` is not a mapping, or bad ``data_sources``/``models``.
    """
    if results_dir is None:
        return None
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a mapping such as {{'table': rows}}, got "
                         f"{type(metrics).__name__}.")
    params = dict(params or {})
    record = provenance(params=params, seed=params.get("SEED") if seed is None else seed,
                        device=None if device is None else str(device),
                        data_sources=None if data_sources is None else dict(data_sources),
                        models=models)
    return write_json(Path(results_dir) / METRICS_FILE,
                      {"metrics": dict(metrics), "provenance": record})


def read_metrics(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, provenance)`` from ``folder/metrics.json`` (``({}, {})`` without one).

    Accepted shapes: :func:`write_metrics`' ``{"metrics", "provenance"}``; an older
    ``{"metrics", "data_sources", "device"}``; any dict with a ``"provenance"`` entry
    (a :func:`tdml_lib.io.provenance` record), the rest being the metrics; any other
    dict, taken whole as metrics.

    Raises:
        ValueError: the file is not valid JSON.
    """
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return {}, {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        return {"value": data}, {}
    if "metrics" in data and set(data) <= {"metrics", "provenance"}:
        return dict(data["metrics"] or {}), dict(data.get("provenance") or {})
    if "metrics" in data and set(data) <= {"metrics", "data_sources", "device"}:
        return dict(data["metrics"] or {}), {"data_sources": dict(data.get("data_sources") or {}),
                                             "device": data.get("device")}
    if isinstance(data.get("provenance"), dict):
        return {k: v for k, v in data.items() if k != "provenance"}, dict(data["provenance"])
    return data, {}

"""Checkpoint and resume long training loops (critic, GAE, agent–critic loop).

A run killed midway (a preempted GPU, a closed laptop, a sweep worker lost) restarts
from its last checkpoint and ends with the same weights as an uninterrupted run, as
long as everything random is saved with the state (issue 8; the test
``tests/test_checkpoint.py`` kills a run with SIGKILL and checks exactly that).

The pattern::

    ckpt = Checkpointer("runs/critic/ckpt.pt", every=50, config={"lr": lr, "seed": seed})
    state = ckpt.load()
    if state:
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"])
        set_rng_state(state["rng"], numpy_rng=rng)
    start = state["step"] + 1 if state else 0
    for step in range(start, n_steps):
        ...  # one training step
        if ckpt.due(step, n_steps):
            ckpt.save({"step": step, "model": model.state_dict(),
                       "opt": opt.state_dict(), "rng": rng_state(numpy_rng=rng)})

Checkpoints are read with ``torch.load(weights_only=True)`` (no pickled code runs), so
a state holds only tensors and plain containers of numbers and strings; the random
states are stored as tensors by :func:`rng_state`. Files are written atomically
(:func:`tdml_lib.io.save_torch`): a kill during ``save`` leaves the previous checkpoint.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .io import load_torch, save_torch

#: Identifies a file as a tdml_lib checkpoint.
FORMAT = "tdml-checkpoint"
#: Bumped whenever the layout of a checkpoint changes; older files are refused.
VERSION = 1


class Checkpointer:
    """Save and restore a training loop's state every ``every`` steps.

    Args:
        path: the checkpoint file (its folder is created on the first save).
        every: save when ``(step + 1) % every == 0`` (and at the last step).
        config: the run's settings (JSON-able: numbers, strings, lists, dicts). Stored
            in the checkpoint and compared on :meth:`load`, so a checkpoint from a run
            with other settings is never resumed by mistake.

    Raises:
        ValueError: ``every`` is not a positive integer, or ``config`` is not JSON-able.
    """

    def __init__(self, path: str | os.PathLike, every: int = 100,
                 config: Mapping[str, Any] | None = None) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every must be a positive integer (steps between saves), "
                             f"got {every!r}.")
        self.path = Path(path)
        self.every = int(every)
        try:
            self._config = json.dumps(dict(config or {}), sort_keys=True)
        except TypeError as exc:
            raise ValueError(f"config must hold only JSON values (numbers, strings, lists, "
                             f"dicts): {exc}") from exc

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self._config)

    def exists(self) -> bool:
        """Whether a checkpoint file is present."""
        return self.path.is_file()

    def due(self, step: int, n_steps: int | None = None) -> bool:
        """Whether to save after ``step`` (0-based): every ``every`` steps and at the end."""
        return (step + 1) % self.every == 0 or (n_steps is not None and step == n_steps - 1)

    def save(self, state: Mapping[str, Any]) -> Path:
        """Write ``state`` atomically, wrapped with the format, version and config.

        Raises:
            ValueError: ``state`` is not a mapping.
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a dict, got {type(state).__name__}.")
        return save_torch(self.path, {"format": FORMAT, "version": VERSION,
                                      "config": self._config, "state": dict(state)})

    def load(self, map_location: str | torch.device | None = "cpu") -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is no checkpoint yet.

        Args:
            map_location: where tensors are loaded (``load_state_dict`` later copies them
                to the model's device).

        Raises:
            ValueError: the file is not a tdml_lib checkpoint, has another format
                version, was written with another ``config``, or cannot be read safely.
        """
        if not self.exists():
            return None
        data = load_torch(self.path, "checkpoint", "nothing to resume", map_location=map_location,
                          remedy="Delete it to start afresh.")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a tdml_lib checkpoint; delete it or choose "
                             "another path.")
        if data.get("version") != VERSION:
            raise ValueError(f"checkpoint {self.path} has format version {data.get('version')!r}"
                             f" but this tdml_lib reads version {VERSION}; delete it and "
                             "train again.")
        if data.get("config") != self._config:
            raise ValueError(f"checkpoint {self.path} was written by a run with other settings "
                             f"({data.get('config')}) than this one ({self._config}); delete "
                             "it or use another path.")
        return data["state"]

    def remove(self) -> None:
        """Delete the checkpoint (e.g. once the final model is saved)."""
        self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------- random states

def _numpy_state_tensor(gen: np.random.Generator) -> torch.Tensor:
    # PCG64 states are 128-bit integers, too wide for an int64 tensor: store the
    # bit generator's state dict as the bytes of its JSON text.
    text = json.dumps(gen.bit_generator.state, sort_keys=True)
    return torch.tensor(list(text.encode()), dtype=torch.uint8)


def _numpy_state_from_tensor(t: torch.Tensor) -> dict[str, Any]:
    return json.loads(bytes(t.tolist()).decode())


def rng_state(*, numpy_rng: np.random.Generator | None = None,
              python_rng: random.Random | None = None,
              torch_generator: torch.Generator | None = None,
              torch_global: bool = True) -> dict[str, Any]:
    """Capture random states as tensors, for a ``weights_only`` checkpoint.

    Args:
        numpy_rng: a NumPy ``Generator`` the loop draws from.
        python_rng: a ``random.Random`` instance (DEAP uses the ``random`` module: pass
            ``random._inst`` only if the loop relies on the global one).
        torch_generator: an explicit ``torch.Generator``.
        torch_global: also capture torch's global CPU (and CUDA) state, used by weight
            initialisation and dropout.

    Returns:
        A dict of tensors (and ``None``/floats) that :func:`set_rng_state` restores.
    """
    state: dict[str, Any] = {}
    if torch_global:
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
    if torch_generator is not None:
        state["torch_generator"] = torch_generator.get_state()
    if numpy_rng is not None:
        state["numpy"] = _numpy_state_tensor(numpy_rng)
    if python_rng is not None:
        version, internal, gauss_next = python_rng.getstate()
        state["python"] = {"version": int(version),
                           "internal": torch.tensor(internal, dtype=torch.int64),
                           "gauss_next": gauss_next}
    return state


def set_rng_state(state: Mapping[str, Any], *, numpy_rng: np.random.Generator | None = None,
                  python_rng: random.Random | None = None,
                  torch_generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` captured, in place.

    Raises:
        ValueError: a generator is passed whose state was not captured.
    """
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for obj, key, arg in ((numpy_rng, "numpy", "numpy_rng"), (python_rng, "python", "python_rng"),
                          (torch_generator, "torch_generator", "torch_generator")):
        if obj is not None and key not in state:
            raise ValueError(f"no {key} random state in this checkpoint; capture it with "
                             f"rng_state({arg}=...) when saving.")
    if torch_generator is not None:
        torch_generator.set_state(state["torch_generator"])
    if numpy_rng is not None:
        numpy_rng.bit_generator.state = _numpy_state_from_tensor(state["numpy"])
    if python_rng is not None:
        py = state["python"]
        python_rng.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()),
                             py["gauss_next"]))

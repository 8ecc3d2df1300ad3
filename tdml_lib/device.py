"""Device choice, in one place (d2l's ``try_gpu`` habit)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a torch device: ``"auto"``/None picks CUDA, then MPS, then CPU.

    Raises:
        ValueError: a CUDA device is asked for on a machine without one.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but CUDA is not available here; use 'auto' or 'cpu'.")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for reproducible runs."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextmanager
def deterministic_algorithms(device: str | torch.device | None = None) -> Iterator[None]:
    """Run the enclosed training deterministically where that is cheap, then restore.

    On the CPU, ``torch.use_deterministic_algorithms`` (``warn_only``): with two threads,
    two seeded trainings of the critic differed from run to run in the 7th digit (some
    default kernels accumulate in an order that depends on thread timing) and, through
    near-ties in the agent's selection, in the clusterings found. On CUDA, cuDNN's
    deterministic mode without autotuning (as the SPC code sets it); full determinism on
    a GPU would need cuBLAS settings made before start-up, so GPU runs may differ in the
    last digits. Every setting is restored on exit.
    """
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device is not None and torch.device(device).type == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2:]

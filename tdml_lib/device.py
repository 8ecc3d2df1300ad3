"""Device choice, in one place (d2l's ``try_gpu`` habit)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def available_devices() -> list[str]:
    """The device strings :func:`resolve_device` accepts on this machine."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if _mps_available():
        out.append("mps")
    return out


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a torch device: ``"auto"``/None picks CUDA, then MPS, then CPU.

    Only the devices the library is tested on are accepted (CPU, CUDA, MPS), and only
    when present: ``"tpu"``, ``"cuda:7"`` on a one-GPU machine or ``"mps"`` off a Mac
    are refused here rather than failing later inside torch.

    Raises:
        ValueError: an unknown or absent device, with the list of available ones.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    here = f"available here: {', '.join(available_devices())}"
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {device!r}; {here}.")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a device name; {here}.") from exc
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} asked for, but CUDA is not available here; {here}.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} asked for, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s); {here}.")
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device={device!r} asked for, but MPS (Apple GPU) is not available here; {here}.")
        return dev
    raise ValueError(f"device={device!r}: the library runs on CPU, CUDA or MPS only; {here}.")


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

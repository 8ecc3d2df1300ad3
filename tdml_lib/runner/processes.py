"""Child processes that die with their parent, even when the parent is killed with ``kill -9``.

A process-pool worker blocks on its task queue and never notices that the process
that started it is gone: after ``kill -9`` on a sweep it would keep running its
configuration (and hold about 400 MB) beside the resumed sweep. Two guards, both set
up by :func:`die_with_parent` in the child:

1. Linux's parent-death signal, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ctypes:
   the kernel kills the child the moment its parent dies;
2. a daemon watchdog thread that exits the process once ``os.getppid()`` changes
   (every other POSIX system, and a second line on Linux).

The Jupyter kernel a worker starts needs nothing more: jupyter_client passes it
``JPY_PARENT_PID`` and ipykernel's parent poller exits within a second of its parent.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
#: Environment variable through which a parent asks a ``python -m tdml_lib`` child to
#: die with it (read by ``tdml_lib.__main__``).
PARENT_ENV = "TDML_DIE_WITH_PARENT"


def _set_pdeathsig() -> bool:
    if sys.platform != "linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int | None = None, poll_s: float = 0.5) -> None:
    """Make this process exit when its parent process dies (see the module docstring).

    Args:
        parent_pid: the parent's pid as the parent saw it (``os.getpid()`` there);
            default: the current ``os.getppid()``. If the parent is already gone the
            process exits at once.
        poll_s: how often the watchdog looks at ``os.getppid()``.
    """
    expected = os.getppid() if parent_pid is None else int(parent_pid)
    _set_pdeathsig()
    if os.getppid() != expected:  # the parent died before the guard was set
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != expected:
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a ``python -m tdml_lib`` child that must die with this process."""
    out = dict(os.environ if env is None else env)
    out[PARENT_ENV] = str(os.getpid())
    return out


def dask_plugin() -> object:
    """A Dask ``WorkerPlugin`` that makes each worker process die with its parent."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class DieWithParent(WorkerPlugin):
        name = "tdml-die-with-parent"

        def setup(self, worker: object) -> None:  # runs in the worker process
            die_with_parent()

    return DieWithParent()

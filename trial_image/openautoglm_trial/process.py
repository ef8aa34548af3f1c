"""How a worker's process starts and ends: the same for the built-in training and the supervisor.

SIGTERM is blocked before any thread exists, so that every thread (torch, Horovod, the servers,
the program's pipes) inherits the mask and only the runner's watcher thread receives it, with
``signal.sigwait``: a Python signal handler would run only when the main thread gets back to
bytecode, which never happens while it is blocked in a Horovod collective or a wait. Every error
ends in a termination message and exit code 1; SIGTERM ends the process with ``os._exit``, after
flushing the standard streams, without waiting for a main thread that may be stuck.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from . import contract
from .errors import TrialError

log = logging.getLogger("openautoglm_trial")


def begin(rank: int) -> None:
    """Block SIGTERM in this (still the only) thread and log to stderr with the rank."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s rank={rank} %(levelname)s %(name)s: %(message)s"
    )


def run_to_the_end(run: Callable[[], int], fail: Callable[[str], None]) -> int:
    """``run()``'s exit code; an error is written by ``fail(reason)`` and gives EXIT_FAILED.

    A :class:`TrialError`'s message is the reason (the user's to fix); anything else is a bug
    and its traceback goes to the log as well.
    """
    try:
        return run()
    except TrialError as exc:
        log.error("trial failed: %s", exc)
        fail(str(exc))
        return contract.EXIT_FAILED
    except BaseException as exc:  # noqa: BLE001 (everything must end in a termination message)
        traceback.print_exc()
        fail(f"{type(exc).__name__}: {exc}")
        return contract.EXIT_FAILED


def wait_for_sigterm() -> None:
    """Block the calling thread until SIGTERM arrives (it is blocked everywhere: see :func:`begin`)."""
    signal.sigwait({signal.SIGTERM})


def exit_now(code: int) -> NoReturn:
    """Flush stdout and stderr and end the process at once, whatever the other threads do."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)

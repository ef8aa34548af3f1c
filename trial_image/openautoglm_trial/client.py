"""The two calls a program makes to talk to the trial supervisor (``collector: push``).

::

    import openautoglm_trial as trial

    lr = trial.params()["lr"]
    for epoch in range(1, 11):
        ...
        trial.report(epoch, accuracy=acc, loss=loss)

With ``trial.checkpoint`` in the job, :func:`checkpoint_dir` is the directory every run (retry,
requeue) and every rank of this trial shares: resume from what is there, save there each epoch.

They import nothing beyond the standard library. Under the supervisor, :func:`report` appends
one JSON line to ``OPENAUTOGLM_PUSH_FILE``; without it (standalone, or under the stdout
collector) it prints ``epoch=1 accuracy=0.5 loss=1.2``, which the stdout collector reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

from . import contract
from .environment import read_checkpoint_dir

#: One ``write`` per report on a file opened for appending: lines of concurrent writers don't
#: interleave and the supervisor never sees half a record (it waits for the newline).
_OPEN_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def params() -> dict[str, Any]:
    """The trial's hyperparameters (``OPENAUTOGLM_TRIAL_PARAMS``); empty when run standalone."""
    raw = os.environ.get(contract.PARAMS)
    return json.loads(raw) if raw else {}


def checkpoint_dir() -> Path | None:
    """The trial's checkpoint directory (``OPENAUTOGLM_CHECKPOINT_DIR``), or None without one.

    The same directory for every rank and every run (retry, requeue) of the trial. It may not
    exist yet: create it before the first save. Save atomically (write a temporary file in it,
    then ``os.replace``) so a run killed mid-save leaves the previous checkpoint whole, and
    resume from what is there rather than from which run this is.
    """
    return read_checkpoint_dir(os.environ)


def report(step: int, **metrics: float) -> None:
    """Report the metrics of one step (an epoch, usually).

    Args:
        step: the step these values belong to; a new value opens a new step.
        **metrics: metric name -> value; NaN and inf are reported as such (the supervisor
            stops a trial whose loss diverges). Names that are no Python identifiers go
            through a dict: ``report(3, **{"Validation-accuracy": 0.9})``.

    Raises:
        TypeError: a value is not a real number.
    """
    values = {str(name): _real(name, value) for name, value in metrics.items()}
    path = os.environ.get(contract.PUSH_FILE)
    if not path:
        print(
            " ".join([f"{_step_name()}={int(step)}", *(f"{name}={value!r}" for name, value in values.items())]),
            flush=True,
        )
        return
    line = json.dumps({"step": int(step), "metrics": values}) + "\n"
    fd = os.open(path, _OPEN_FLAGS, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not hasattr(value, "__float__"):
        raise TypeError(f"metric {name!r} must be a real number, got {value!r}")
    return float(value)  # numpy and torch scalars too


def _step_name() -> str:
    """The step metric the stdout collector expects (``epoch`` unless configured)."""
    try:
        collector = json.loads(os.environ.get(contract.COLLECTOR) or "{}")
        return str(collector.get("stepMetric") or contract.DEFAULT_STEP_METRIC)
    except (ValueError, AttributeError):
        return contract.DEFAULT_STEP_METRIC


__all__ = ["checkpoint_dir", "params", "report"]

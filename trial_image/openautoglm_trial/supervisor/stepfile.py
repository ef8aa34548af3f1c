"""The supervisor's steps, kept in the trial's checkpoint directory for the trial's next run.

A program resumed from its own checkpoint (``trial.checkpoint``) prints ``epoch=4`` first; the
supervisor of that run knows nothing of epochs 1-3, and without them it would number epoch 4
step 1 (a step the engine already has, so the epoch never reaches the study), and its result
would hold the retry's curve only. So rank 0's recorder writes what it has recorded to
``<checkpoint dir>/.openautoglm-steps.json`` after every completed step, and every rank's
recorder reads it at start (see :mod:`.recorder`): numbering continues, and the curve, the
strategies and patience cover the whole trial. Every rank reads it, so that ranks that print
number their steps as rank 0 does; only rank 0 writes it (one writer, no race between ranks).

* Atomic: written as ``.openautoglm-steps.json.tmp``, fsynced, renamed over the file (and the
  directory fsynced): a run killed mid-write leaves the previous file whole.
* Identity: the trial's parameters (canonical JSON) and seed. The directory belongs to one trial
  of one job, but a job recreated under the same name reuses it; a file of another identity is
  ignored (logged) and overwritten by the first step of this run.
* Hostile input: the file sits on a shared claim. It is read within bounds
  (:mod:`openautoglm_trial.boundedjson`), checked value by value, and anything unreadable or
  malformed is ignored with a log line; reading never raises.
* Bounded: at most :data:`MAX_STEPS` steps of the metrics the result summarises (objectives and
  additional metrics); past that the file is no longer updated (logged once).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .. import boundedjson
from ..result import json_number

log = logging.getLogger("openautoglm_trial")

FILE: Final = ".openautoglm-steps.json"
#: bumped when the layout changes: an older file is then foreign, not misread
FORMAT: Final = 1
#: steps kept; a trial reporting more (a push client reporting every batch as a step) keeps the
#: first ones only, so that rewriting the file after every step stays cheap (~1 MB at most)
MAX_STEPS: Final = 10_000
#: metric names per step and characters per name, as the termination message reads them
MAX_NAMES: Final = 256
MAX_NAME_CHARS: Final = 256
#: the file is refused unread past this size
MAX_CHARS: Final = 16 * 1024 * 1024

#: one step as kept: (its step-metric value or None, metric name -> value)
Step = tuple[float | None, dict[str, float]]


def identity(params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """What makes two runs the same trial: steps recorded for anything else are not resumed."""
    # sort_keys: the same parameters in another order are the same trial; default=str: never raises.
    return {"params": json.dumps(dict(params), sort_keys=True, default=str), "seed": seed}


class StepFile:
    """The steps file of one trial's checkpoint directory."""

    def __init__(self, directory: Path, ident: Mapping[str, Any], writer: bool) -> None:
        """Create the handle.

        Args:
            directory: the trial's checkpoint directory.
            ident: this run's :func:`identity`.
            writer: whether this rank writes the file (rank 0 only).
        """
        self.path = Path(directory) / FILE
        self.identity = dict(ident)
        self.writer = writer
        self._failed = False  # a failed write is logged once, not after every step

    def load(self) -> list[Step]:
        """The steps an earlier run of this trial recorded; [] if none, or if the file is another
        trial's, unreadable or malformed (logged)."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_CHARS + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("ignoring the recorded steps in %s: %s", self.path, exc)
            return []
        try:
            doc = boundedjson.loads(text, max_chars=MAX_CHARS)
            steps = self._steps_of(doc)
        except ValueError as exc:
            log.warning("ignoring the recorded steps in %s: %s", self.path, exc)
            return []
        if steps:
            log.info("continuing after the %d steps recorded by an earlier run of this trial", len(steps))
        return steps

    def _steps_of(self, doc: Any) -> list[Step]:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not a steps file of format {FORMAT}")
        if doc.get("identity") != self.identity:
            raise ValueError("they are another trial configuration's (parameters or seed differ)")
        raw = doc.get("steps")
        if not isinstance(raw, list) or len(raw) > MAX_STEPS:
            raise ValueError(f"steps is not a list of at most {MAX_STEPS} steps")
        return [_step(item, i) for i, item in enumerate(raw)]

    def save(self, steps: Sequence[Step]) -> None:
        """Replace the file with these steps (rank 0; a no-op elsewhere). A failed write is
        logged, never raised: the trial goes on, only a later resume would number afresh."""
        if not self.writer or self._failed:
            return
        if len(steps) > MAX_STEPS:
            self._fail(f"the trial has more than {MAX_STEPS} steps")
            return
        doc = {
            "format": FORMAT,
            "identity": self.identity,
            "steps": [{"key": key, "values": values} for key, values in steps],
        }
        tmp = self.path.with_name(FILE + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                # NaN stays NaN (a diverged value is part of the curve); Python reads it back.
                json.dump(doc, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            self._fail(str(exc))

    def _fail(self, why: str) -> None:
        self._failed = True
        log.warning("no longer recording steps in %s for a resumed run (%s)", self.path, why)


def _step(item: Any, index: int) -> Step:
    """One step of the file, checked; ValueError names what is wrong."""
    where = f"step {index + 1}"
    if not isinstance(item, dict):
        raise ValueError(f"{where} is not an object")
    key = item.get("key")
    if key is not None:
        key = json_number(key)
        if key is None or not math.isfinite(key):
            raise ValueError(f"{where}: key is not a finite number or null")
    values = item.get("values")
    if not isinstance(values, dict) or len(values) > MAX_NAMES:
        raise ValueError(f"{where}: values is not an object of at most {MAX_NAMES} metrics")
    out: dict[str, float] = {}
    for name, raw in values.items():
        value = json_number(raw)
        if not name or len(name) > MAX_NAME_CHARS or value is None:
            raise ValueError(f"{where}: a metric is not a name and a number")
        out[name] = value
    return key, out


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; some filesystems refuse to open a directory: no matter."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

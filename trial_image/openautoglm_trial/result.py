"""The termination message: the trial's final result as JSON of at most 4096 bytes.

Kubernetes copies ``/dev/termination-log`` into the pod's ``containerStatuses`` once the
container has exited, so the result survives the pod. The file is first written with a
provisional "failed" result that says what the worker was doing, and overwritten with each
epoch's progress and finally the real result: a worker killed from inside (Horovod aborts the
process from C++ when a peer disappears) still leaves a useful reason behind.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import contract

log = logging.getLogger(__name__)

#: strings in "info" and "reason" are cut to this many characters before history is trimmed
_MAX_TEXT = 512


@dataclass
class TrialResult:
    """What one worker reports at the end (or so far)."""

    status: str
    reason: str | None = None
    #: value of each metric at the last completed epoch
    metrics: dict[str, float] = field(default_factory=dict)
    #: best value of each objective metric over the epochs, by its direction
    best: dict[str, float] = field(default_factory=dict)
    #: per-epoch values of each metric, oldest first
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int = 0
    rank: int = 0
    seconds: float = 0.0
    #: task-specific facts that are not metrics (echoed tag, samples seen ...)
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> TrialResult | None:
        """Read a termination message back into types (the engine's side of the contract): a
        malformed field reads as absent (empty, 0), never as a crash of the engine; None when
        there is no JSON object at all."""
        if not text:
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        history, info = doc.get("history"), doc.get("info")
        return cls(
            status=doc["status"] if isinstance(doc.get("status"), str) else "",
            reason=str(doc["reason"]) if doc.get("reason") else None,
            metrics=_numbers(doc.get("metrics")),
            best=_numbers(doc.get("best")),
            history={str(k): list(v) for k, v in history.items() if isinstance(v, list)}
            if isinstance(history, dict)
            else {},
            epochs=int(doc["epochs"]) if _is_number(doc.get("epochs")) else 0,
            rank=int(doc["rank"]) if _is_number(doc.get("rank")) else 0,
            seconds=float(doc["seconds"]) if _is_number(doc.get("seconds")) else 0.0,
            info=info if isinstance(info, dict) else {},
        )

    def to_dict(self) -> dict[str, Any]:
        """The message as plain JSON-ready data, with NaN/inf replaced by None."""
        return _finite(
            {
                "status": self.status,
                "reason": self.reason,
                "metrics": self.metrics,
                "best": self.best,
                # 6 significant digits: plenty for a pruner, and more epochs fit in 4096 bytes.
                "history": {name: [_round(v) for v in values] for name, values in self.history.items()},
                "epochs": self.epochs,
                "rank": self.rank,
                "seconds": round(self.seconds, 3),
                "info": self.info,
            }
        )


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(doc: Any) -> dict[str, float]:
    if not isinstance(doc, dict):
        return {}
    return {str(k): float(v) for k, v in doc.items() if _is_number(v)}


def encode(result: TrialResult, limit: int = contract.TERMINATION_MESSAGE_LIMIT) -> str:
    """Serialise a result into at most ``limit`` bytes of JSON.

    Long strings in info and reason are cut first, then the oldest epochs of the history
    go, then info and history are dropped altogether, then metrics and best.

    Args:
        result: the result to encode.
        limit: maximum size in bytes (UTF-8).

    Returns:
        Compact JSON text; never contains NaN.
    """
    doc = result.to_dict()
    text = _dumps(doc)
    if len(text.encode()) <= limit:
        return text
    doc["info"] = {k: _cut(v) for k, v in doc["info"].items()}
    doc["reason"] = _cut(doc["reason"])
    history = doc["history"]
    if history:
        # Keep the newest k epochs of every series (they matter most to a pruner, and the
        # series stay aligned); binary search for the largest k that fits.
        full = {name: list(values) for name, values in history.items()}
        low, high = 0, max(len(values) for values in full.values())
        while low < high:
            k = (low + high + 1) // 2
            doc["history"] = {name: values[-k:] for name, values in full.items()}
            if len(_dumps(doc).encode()) <= limit:
                low = k
            else:
                high = k - 1
        doc["history"] = {name: values[-low:] if low else [] for name, values in full.items()}
    text = _dumps(doc)
    if len(text.encode()) > limit:
        doc["info"], doc["history"] = {"truncated": True}, {}
        text = _dumps(doc)
    if len(text.encode()) > limit:
        doc["metrics"], doc["best"] = {}, {}
        text = _dumps(doc)
    return text


class TerminationLog:
    """Writes the termination message; the final write wins and is never overwritten.

    Writes are serialised so the SIGTERM thread and the training loop cannot interleave.
    """

    def __init__(self, path: Path, rank: int = 0) -> None:
        """Create the writer.

        Args:
            path: the file Kubernetes reads (``terminationMessagePath``).
            rank: this worker's rank, recorded in every message.
        """
        self.path = Path(path)
        self.rank = rank
        self._lock = threading.Lock()
        self._final: TrialResult | None = None
        self._latest = TrialResult(status=contract.STATUS_FAILED)

    @property
    def final(self) -> TrialResult | None:
        """The final result once written, else None."""
        return self._final

    def provisional(self, result: TrialResult) -> None:
        """Record progress as a "failed" result that stands if the process dies abruptly."""
        self._latest = result
        self._write(result, final=False)

    def write_terminated(self, seconds: float) -> bool:
        """Final "failed"/"terminated" result (SIGTERM), keeping the progress recorded so far.

        Returns:
            True if this call wrote it (no final result existed yet).
        """
        latest = self._latest
        return self.write_final(
            TrialResult(
                status=contract.STATUS_FAILED,
                reason=contract.REASON_TERMINATED,
                metrics=latest.metrics,
                best=latest.best,
                history=latest.history,
                epochs=latest.epochs,
                seconds=seconds,
                info=latest.info,
            )
        )

    def write_final(self, result: TrialResult) -> bool:
        """Write the final result unless one was already written.

        Returns:
            True if this call wrote it.
        """
        return self._write(result, final=True)

    def _write(self, result: TrialResult, final: bool) -> bool:
        result.rank = self.rank
        text = encode(result)
        with self._lock:
            if self._final is not None:
                return False
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Overwrite in place: in a pod the file is a bind mount and can't be renamed over.
                with open(self.path, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
            except OSError as exc:
                log.error("cannot write termination message to %s: %s", self.path, exc)
            if final:
                self._final = result
                log.info("result: %s", text)
            return True


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False, default=str)


def _round(value: float) -> float:
    return float(f"{value:.6g}") if isinstance(value, float) and math.isfinite(value) else value


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return value[:_MAX_TEXT] + "..."
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    # numpy/torch scalars and anything else: a float if it is one, else its text.
    try:
        return _finite(float(value))
    except (TypeError, ValueError):
        return str(value)

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
from typing import Any, Final

from . import boundedjson, contract

log = logging.getLogger(__name__)

#: strings in "info" and "reason" are cut to this many characters before history is trimmed
_MAX_TEXT = 512
#: The longest message read back. Kubernetes keeps at most 4096 bytes; a local worker's file
#: may hold anything, and is read this far (a longer message is unreadable, not cut).
READ_LIMIT: Final = 64 * 1024
#: A status or a metric name longer than this is no status or name of ours: cut.
_MAX_NAME: Final = 256
#: Seconds of run time beyond this (about 30 years) are a malformed number.
_MAX_SECONDS: Final = 1e9
#: How many of a message's malformed fields its problem names.
_PROBLEMS_SHOWN: Final = 3


@dataclass
class TrialResult:
    """What one worker reports at the end (or so far)."""

    status: str
    reason: str | None = None
    #: value of each metric at the last completed epoch
    metrics: dict[str, float] = field(default_factory=dict)
    #: best value of each objective metric over the epochs, by its direction
    best: dict[str, float] = field(default_factory=dict)
    #: per-epoch values of each metric, oldest first (None: no finite value at that epoch)
    history: dict[str, list[float | None]] = field(default_factory=dict)
    epochs: int = 0
    rank: int = 0
    seconds: float = 0.0
    #: task-specific facts that are not metrics (echoed tag, samples seen ...)
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> TrialResult | None:
        """The result of a termination message, or None; see :meth:`read`, which also says why."""
        return cls.read(text)[0]

    @classmethod
    def read(cls, text: str | None) -> tuple[TrialResult | None, str | None]:
        """Read a termination message back into types (the engine's side of the contract).

        Never raises, whatever the trial wrote: a malformed field reads as absent (empty, 0) and
        a number out of range is clamped, and either is named in the problem.

        Args:
            text: the message as the worker left it (None or empty: none).

        Returns:
            (result, None) for a good message; (result, problem) when some fields were
            malformed (``"epochs 1e+300 is outside 0..2147483647"``); (None, problem) when the
            message is no JSON object at all (``"nested deeper than 64 levels"``); (None, None)
            when there is no message.
        """
        if not text:
            return None, None
        if len(text) > READ_LIMIT or len(text.encode("utf-8", "replace")) > READ_LIMIT:
            return None, f"longer than {READ_LIMIT // 1024} KiB"
        try:
            doc = boundedjson.loads(text, max_chars=READ_LIMIT)
        except ValueError as err:
            return None, str(err)
        if not isinstance(doc, dict):
            return None, f"not a JSON object but {_kind(doc)}"
        problems: list[str] = []  # in the order a reader cares: the counts first
        epochs = int(_bounded(doc, "epochs", contract.MAX_STEP, problems))
        rank = int(_bounded(doc, "rank", contract.MAX_STEP, problems))
        seconds = _bounded(doc, "seconds", _MAX_SECONDS, problems)
        status, reason, info = doc.get("status"), doc.get("reason"), doc.get("info")
        result = cls(
            status=status[:_MAX_NAME] if isinstance(status, str) else "",
            reason=_cut(str(reason)) if reason else None,
            metrics=_numbers(doc.get("metrics"), "metrics", problems),
            best=_numbers(doc.get("best"), "best", problems),
            history=_history(doc.get("history"), problems),
            epochs=epochs,
            rank=rank,
            seconds=seconds,
            info=info if isinstance(info, dict) else {},
        )
        return result, "; ".join(problems[:_PROBLEMS_SHOWN]) or None

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


def json_number(v: Any) -> float | None:
    """A JSON number as a float (an integer too large for one is infinite); None if no number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:  # a 400-digit integer: math.isfinite() would raise on it too
        return math.inf if v > 0 else -math.inf


def _numbers(doc: Any, field_name: str, problems: list[str]) -> dict[str, float]:
    """The finite numbers of a name -> number object; null (a NaN written by us) is absent."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        problems.append(f"{field_name} is {_kind(doc)}, not an object")
        return {}
    out = {}
    for name, raw in doc.items():
        value = json_number(raw)
        if value is not None and math.isfinite(value):
            out[str(name)[:_MAX_NAME]] = value
        elif raw is not None:
            problems.append(f"{field_name}.{str(name)[:40]} is {_show(raw, value)}, not a finite number")
    return out


def _history(doc: Any, problems: list[str]) -> dict[str, list[float | None]]:
    """Per-epoch curves; an entry that is no finite number reads as None (its position is its epoch)."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        problems.append(f"history is {_kind(doc)}, not an object")
        return {}
    out: dict[str, list[float | None]] = {}
    for name, curve in doc.items():
        if not isinstance(curve, list):
            problems.append(f"history.{str(name)[:40]} is {_kind(curve)}, not a list")
            continue
        values = [json_number(v) for v in curve]
        kept: list[float | None] = [v if v is not None and math.isfinite(v) else None for v in values]
        if any(raw is not None and v is None for raw, v in zip(curve, kept)):
            problems.append(f"history.{str(name)[:40]} holds values that are not finite numbers")
        out[str(name)[:_MAX_NAME]] = kept
    return out


def _bounded(doc: dict[str, Any], key: str, high: float, problems: list[str]) -> float:
    """A count or a duration: a finite number in 0..high (clamped), 0 when absent or malformed."""
    raw = doc.get(key)
    if raw is None:
        return 0.0
    value = json_number(raw)
    if value is None or math.isnan(value):
        problems.append(f"{key} is {_show(raw, value)}, not a number")
        return 0.0
    if not 0 <= value <= high:
        problems.append(f"{key} {value:.6g} is outside 0..{high:.10g}")
        return min(max(value, 0.0), high)
    return value


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


def _show(raw: Any, value: float | None) -> str:
    """A malformed value for a reason: never the whole of a long string or a huge integer (whose
    str() raises past 4,300 digits)."""
    return f"{value:.6g}" if value is not None else _kind(raw)


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


def _round(value: float | None) -> float | None:
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

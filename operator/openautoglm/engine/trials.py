"""What the reconcile step needs from a place that runs trials, and what it reads back."""
from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from openautoglm.spec import TuningJob

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


def _numbers(doc: Any) -> dict[str, float]:
    if not isinstance(doc, dict):
        return {}
    return {str(k): float(v) for k, v in doc.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclasses.dataclass(frozen=True)
class TrialResult:
    """A trial's result as its rank 0 wrote it (the termination message, trial_image contract.py),
    read once into types: a malformed field reads as absent, never as a crash of the engine."""

    status: str | None = None                 # completed | stopped | failed
    reason: str | None = None
    #: Final value of each recorded metric (per its strategy).
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Value of each metric at the best epoch by the objective's direction.
    best: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Each metric's curve, oldest first (may be trimmed at the front).
    history: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    epochs: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> TrialResult | None:
        if not text:
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        history = doc.get("history")
        epochs, seconds = doc.get("epochs"), doc.get("seconds")
        return cls(
            status=doc["status"] if isinstance(doc.get("status"), str) else None,
            reason=str(doc["reason"]) if doc.get("reason") else None,
            metrics=_numbers(doc.get("metrics")),
            best=_numbers(doc.get("best")),
            history={str(k): list(v) for k, v in history.items() if isinstance(v, list)}
            if isinstance(history, dict) else {},
            epochs=int(epochs) if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) else None,
            seconds=float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None,
        )


@dataclasses.dataclass
class WorkerObservation:
    rank: int
    phase: str
    #: Where the worker's /metrics answers (host:port), once known.
    endpoint: str | None = None
    exit_code: int | None = None
    #: Raw termination message (JSON written by the trial runtime), if any.
    termination_message: str | None = None
    reason: str | None = None

    def result(self) -> TrialResult | None:
        return TrialResult.parse(self.termination_message)


@dataclasses.dataclass
class TrialObservation:
    """A trial as the backend sees it: the state of each of its workers."""

    number: int
    workers: list[WorkerObservation]
    #: Number of workers the trial should have (a missing one counts as pending).
    size: int

    @property
    def phase(self) -> str:
        by_rank = {w.rank: w for w in self.workers}
        if any(w.phase == FAILED for w in self.workers):
            return FAILED
        # Rank 0 holds the result; the others end with it (and are stopped on release).
        if 0 in by_rank and by_rank[0].phase == SUCCEEDED:
            return SUCCEEDED
        if len(by_rank) < self.size or any(w.phase == PENDING for w in self.workers):
            return PENDING
        return RUNNING

    @property
    def leader(self) -> WorkerObservation | None:
        return next((w for w in self.workers if w.rank == 0), None)

    def failure_reason(self) -> str:
        for w in sorted(self.workers, key=lambda w: w.rank):
            if w.phase != FAILED:
                continue
            res = w.result()
            why = (res.reason if res else None) or w.reason or (f"exit code {w.exit_code}" if w.exit_code is not None else "failed")
            return f"worker {w.rank}: {why}"
        return "failed"


class Backend(Protocol):
    """Runs the workers of trials. Every method is idempotent."""

    def observe(self) -> dict[int, TrialObservation]:
        """The trials that have workers (running or finished and not yet released)."""

    def launch(self, number: int, params: dict[str, Any]) -> None:
        """Start the workers of trial ``number``; a worker that exists already is kept."""

    def stop(self, number: int, reason: str) -> None:
        """Stop every worker of the trial together (pruning, timeouts, job end)."""

    def release(self, number: int) -> None:
        """Free what a finished trial holds (pods, processes); its logs may stay."""

    def update(self, job: TuningJob) -> None:
        """Launch later trials from this edit of the job (running trials keep their workers)."""

    def close(self) -> None:
        """Called once when the engine stops driving this job."""

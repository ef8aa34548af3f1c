"""What the reconcile step needs from a place that runs trials, and what it reads back.

A finished trial's result is the trial runtime's own :class:`TrialResult` (one class for the
writer and the reader of the termination message), read with ``TrialResult.parse``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

from openautoglm_trial.result import TrialResult

if TYPE_CHECKING:
    from openautoglm.spec import TuningJob

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


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
    #: The run of the trial this worker belongs to (see trial.retries); 0 for the first.
    attempt: int = 0
    #: Why a pending worker is not running: "<Reason>: <message>" from its pod's scheduling
    #: condition or container state (Unschedulable, SchedulingGated, ImagePullBackOff, ...).
    waiting: str | None = None

    def result(self) -> TrialResult | None:
        return self.read_result()[0]

    def read_result(self) -> tuple[TrialResult | None, str | None]:
        """The result and what was malformed in the message, if anything (``TrialResult.read``)."""
        return TrialResult.read(self.termination_message)


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

    def of_attempt(self, attempt: int) -> TrialObservation | None:
        """The workers of one run of the trial (those of an earlier, failed run may still be
        shutting down); None if it has none yet."""
        workers = [w for w in self.workers if w.attempt == attempt]
        return dataclasses.replace(self, workers=workers) if workers else None

    @property
    def waiting(self) -> str | None:
        """Why the run is not running as a whole: the first pending rank's reason, or that a
        rank has no worker yet."""
        for w in sorted(self.workers, key=lambda w: w.rank):
            if w.phase == PENDING:
                return f"worker {w.rank}: {w.waiting or 'Pending'}"
        missing = sorted(set(range(self.size)) - {w.rank for w in self.workers})
        return f"worker {missing[0]}: not created yet" if missing else None

    @property
    def leader(self) -> WorkerObservation | None:
        return next((w for w in self.workers if w.rank == 0), None)

    def failure_reason(self) -> str:
        for w in sorted(self.workers, key=lambda w: w.rank):
            if w.phase != FAILED:
                continue
            res, problem = w.read_result()
            why = (
                (res.reason if res else None)
                or w.reason
                or (f"exit code {w.exit_code}" if w.exit_code is not None else "failed")
            )
            if res is None and problem is not None:
                why = f"{why}; termination message unreadable: {problem}"
            return f"worker {w.rank}: {why}"
        return "failed"


class LaunchRefused(Exception):
    """A backend would not start a run of a trial: e.g. in a cluster, an object under the run's
    name exists that the job does not own (adopting it would let whoever made it forge the
    trial's result). The reconciler fails that run with this reason (trial.retries may run it
    again under other names); the message says what was refused and why."""


class Backend(Protocol):
    """Runs the workers of trials. Every method is idempotent."""

    def observe(self) -> dict[int, TrialObservation]:
        """The trials that have workers (running or finished and not yet released)."""

    def launch(self, number: int, params: dict[str, Any], attempt: int = 0) -> None:
        """Start the workers of run ``attempt`` of trial ``number``; a worker that exists already
        is kept. Raises :class:`LaunchRefused` when the run cannot be started as it is."""

    def retire(self, number: int, attempt: int, reason: str) -> None:
        """Stop and remove every worker of one failed run of a trial, which is run again."""

    def stop(self, number: int, reason: str) -> None:
        """Stop every worker of the trial together (pruning, timeouts, job end)."""

    def release(self, number: int) -> None:
        """Free what a finished trial holds (pods, processes); its logs may stay."""

    def update(self, job: TuningJob) -> None:
        """Launch later trials from this edit of the job (running trials keep their workers)."""

    def close(self) -> None:
        """Called once when the engine stops driving this job."""

    def tidy_checkpoints(self, keep: set[int], below: int) -> bool:
        """Remove the checkpoint of every trial numbered below ``below`` that is not in ``keep``
        (trial.checkpoint.keep); True once that is done (a cluster needs a pod to do it)."""

    def checkpoint_location(self, number: int) -> dict[str, str] | None:
        """Where trial ``number``'s checkpoint lives ({claim, path} or {path}); None without
        trial.checkpoint."""

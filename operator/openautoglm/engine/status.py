"""The status of a TuningJob, computed from its study: a pure builder.

Its size does not grow with the number of trials: counters, the best trial (or the
Pareto front, capped), and the last RECENT_TRIALS trials.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Final

from optuna.trial import FrozenTrial, TrialState

from openautoglm.engine.attrs import TRIAL_METRICS_PROBLEM, TRIAL_REQUEUED_BECAUSE, TRIAL_RETRIED_BECAUSE, TRIAL_WAITING
from openautoglm.engine.checkpoints import best_kept
from openautoglm.engine.ledger import TrialLedger
from openautoglm.spec import TuningJob

RECENT_TRIALS: Final = 10
PARETO_LIMIT: Final = 10


@dataclasses.dataclass
class JobStatus:
    phase: str  # Running | Succeeded | Failed
    reason: str | None
    message: str | None
    counts: dict[str, int]  # running, completed, pruned, failed, finished, max
    best: dict[str, Any] | None  # {number, value(s), params}; single objective
    pareto: list[dict[str, Any]]  # several objectives: the non-dominated trials
    recent: list[dict[str, Any]]
    elapsed_seconds: float
    remaining_seconds: float | None
    #: The spec generation the driver ran this with (observedGeneration); set by the driver.
    generation: int | None = None
    #: Checkpoints trial.checkpoint.keep lets go are still being removed (a cluster's janitor pod):
    #: a finished job's loop goes on until they are gone.
    checkpoints_pending: bool = False

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def trial_summary(t: FrozenTrial, metrics: list[str] | None = None) -> dict[str, Any]:
    """One trial as the status and the CLI show it.

    Args:
        metrics: names of the recorded metrics (objectives + additionalMetrics) to include
            with their final values; None: none (keeps the recent-trials list small).
    """
    state = {
        TrialState.COMPLETE: "Completed",
        TrialState.PRUNED: "Pruned",
        TrialState.FAIL: "Failed",
        TrialState.RUNNING: "Running",
        TrialState.WAITING: "Waiting",
    }[t.state]
    out: dict[str, Any] = {"number": t.number, "state": state, "params": t.user_attrs.get("params") or dict(t.params)}
    if t.values is not None:
        out["value"] = _clean(t.values[0]) if len(t.values) == 1 else [_clean(v) for v in t.values]
    elif t.intermediate_values:
        last = max(t.intermediate_values)
        out["lastIntermediate"] = {"epoch": last, "value": _clean(t.intermediate_values[last])}
    final = t.user_attrs.get("metrics") or {}
    recorded = {m: _clean(final[m]) for m in metrics or [] if isinstance(final.get(m), (int, float))}
    if recorded:
        out["metrics"] = recorded
    reason = t.user_attrs.get("stop_reason") or t.user_attrs.get("fail_reason")
    if reason:
        out["reason"] = reason
    retried = t.user_attrs.get(TRIAL_RETRIED_BECAUSE)
    if retried:
        out["retries"] = len(retried)
        out["retriedBecause"] = retried[-1]  # the latest; the study keeps every run's reason
    requeued = t.user_attrs.get(TRIAL_REQUEUED_BECAUSE)
    if requeued:
        out["requeues"] = len(requeued)  # given back unscheduled (trial.pendingTimeoutSeconds)
        out["requeuedBecause"] = requeued[-1]
    waiting = t.user_attrs.get(TRIAL_WAITING)
    if waiting and t.state == TrialState.RUNNING:
        out["waiting"] = waiting  # why a rank is not running: Unschedulable, ImagePullBackOff, ...
    problem = t.user_attrs.get(TRIAL_METRICS_PROBLEM)
    if problem:
        out["metricsProblem"] = problem  # its /metrics or termination message could not be read
    if t.datetime_start and t.datetime_complete:
        out["seconds"] = round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
    return out


def build_status(
    job: TuningJob,
    ledger: TrialLedger,
    *,
    elapsed: float,
    phase: str | None = None,
    reason: str | None = None,
    message: str | None = None,
    checkpoint_of: Callable[[int], dict[str, str] | None] | None = None,
) -> JobStatus:
    """The status from the ledger's tallies: the same work at 10 or 10,000 trials.

    Args:
        checkpoint_of: where a trial's checkpoint lives (the backend knows): the best trial's
            (and the Pareto front's) is named when trial.checkpoint keeps it.
    """

    def summary(t: FrozenTrial, metrics: list[str] | None) -> dict[str, Any]:
        out = trial_summary(t, metrics)
        where = checkpoint_of(t.number) if checkpoint_of and best_kept(job, t.number) else None
        if where:
            out["checkpoint"] = where
        return out

    objectives = job.spec.objective.objectives
    recorded = list(job.spec.objective.strategies())
    finished = ledger.finished
    counts = {
        "running": ledger.n_running,
        "completed": finished[TrialState.COMPLETE],
        "pruned": finished[TrialState.PRUNED],
        "failed": finished[TrialState.FAIL],
        "max": job.spec.budget.max_trials,
        # Failed runs run again (trial.retries): not trials, so not in "finished".
        "retried": ledger.n_retries,
    }
    counts["finished"] = counts["completed"] + counts["pruned"] + counts["failed"]
    pareto: list[dict[str, Any]] = []
    if len(objectives) > 1:
        front = sorted(ledger.front, key=lambda t: t.number)
        pareto = [summary(t, recorded) for t in front[:PARETO_LIMIT]]
    best = ledger.best if len(objectives) == 1 else None
    timeout = job.spec.budget.timeout_seconds
    return JobStatus(
        phase=phase or "Running",
        reason=reason,
        message=message,
        counts=counts,
        best=summary(best, recorded) if best is not None else None,
        pareto=pareto,
        recent=[trial_summary(t) for t in ledger.recent(RECENT_TRIALS)],
        elapsed_seconds=round(elapsed, 1),
        remaining_seconds=None if timeout is None else max(0.0, round(timeout - elapsed, 1)),
    )

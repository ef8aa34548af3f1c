"""The status of a TuningJob, computed from its study: a pure builder.

Its size does not grow with the number of trials: counters, the best trial (or the
Pareto front, capped), and the last RECENT_TRIALS trials.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final

from optuna.trial import FrozenTrial, TrialState

from openautoglm.spec import TuningJob

RECENT_TRIALS: Final = 10
PARETO_LIMIT: Final = 10


def is_better(a: float, b: float | None, direction: str) -> bool:
    if b is None:
        return True
    return a > b if direction == "maximize" else a < b


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
    if t.datetime_start and t.datetime_complete:
        out["seconds"] = round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
    return out


def _dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    better_or_equal = all((x >= y) if d == "maximize" else (x <= y) for x, y, d in zip(a, b, directions))
    strictly = any((x > y) if d == "maximize" else (x < y) for x, y, d in zip(a, b, directions))
    return better_or_equal and strictly


def pareto_front(trials: list[FrozenTrial], directions: list[str]) -> list[FrozenTrial]:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    return [t for t in done if not any(_dominates(o.values, t.values, directions) for o in done if o is not t)]


def build_status(
    job: TuningJob,
    trials: list[FrozenTrial],
    *,
    elapsed: float,
    phase: str | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> JobStatus:
    objectives = job.spec.objective.objectives
    directions = [o.direction for o in objectives]
    recorded = list(job.spec.objective.strategies())
    states = [t.state for t in trials]
    counts = {
        "running": states.count(TrialState.RUNNING),
        "completed": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
        "max": job.spec.budget.max_trials,
    }
    counts["finished"] = counts["completed"] + counts["pruned"] + counts["failed"]
    best = None
    pareto: list[dict[str, Any]] = []
    if len(objectives) == 1:
        for t in trials:
            if (
                t.state == TrialState.COMPLETE
                and t.value is not None
                and (best is None or is_better(t.value, best.value, directions[0]))
            ):
                best = t
    else:
        front = sorted(pareto_front(trials, directions), key=lambda t: t.number)
        pareto = [trial_summary(t, recorded) for t in front[:PARETO_LIMIT]]
    timeout = job.spec.budget.timeout_seconds
    recent = sorted(trials, key=lambda t: t.number)[-RECENT_TRIALS:]
    return JobStatus(
        phase=phase or "Running",
        reason=reason,
        message=message,
        counts=counts,
        best=trial_summary(best, recorded) if best is not None else None,
        pareto=pareto,
        recent=[trial_summary(t) for t in recent],
        elapsed_seconds=round(elapsed, 1),
        remaining_seconds=None if timeout is None else max(0.0, round(timeout - elapsed, 1)),
    )

"""The operator's own Prometheus metrics (served on OPENAUTOGLM_OPERATOR_METRICS_PORT)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from openautoglm.engine.reconcile import Outcome

_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

RECONCILE_SECONDS = Histogram(
    "openautoglm_reconcile_seconds",
    "Duration of one reconcile pass of a TuningJob",
    ["namespace", "job"],
    buckets=_BUCKETS,
)
OPTUNA_SECONDS = Histogram(
    "openautoglm_optuna_seconds", "Duration of Optuna calls (ask, tell, report, prune)", ["operation"], buckets=_BUCKETS
)
TRIALS = Gauge("openautoglm_trials", "Trials of a TuningJob by state", ["namespace", "job", "state"])
BEST_VALUE = Gauge("openautoglm_best_value", "Best objective value of a TuningJob", ["namespace", "job"])
EVENTS = Counter("openautoglm_events_total", "Events of TuningJobs by reason", ["namespace", "job", "reason"])


def record(namespace: str, job: str, outcome: Outcome, seconds: float) -> None:
    RECONCILE_SECONDS.labels(namespace, job).observe(seconds)
    for op, values in outcome.latencies.items():
        for v in values:
            OPTUNA_SECONDS.labels(op).observe(v)
    for state in ("running", "completed", "pruned", "failed"):
        TRIALS.labels(namespace, job, state).set(outcome.status.counts[state])
    if outcome.status.best and isinstance(outcome.status.best.get("value"), (int, float)):
        BEST_VALUE.labels(namespace, job).set(outcome.status.best["value"])
    for e in outcome.events:
        EVENTS.labels(namespace, job, e.reason).inc()

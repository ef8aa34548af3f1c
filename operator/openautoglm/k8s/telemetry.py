"""The operator's own Prometheus metrics (served on OPENAUTOGLM_OPERATOR_METRICS_PORT).

Per job: trials by state, the best value, reconcile latency, events; and, so that Grafana can
draw how the parameters evolve while a job runs, each **recent** trial's numeric parameters and
objective value (categorical ones as labels of an info series). Cardinality is bounded: only the
status's ``recentTrials`` window (``RECENT_TRIALS``, 10 per job) is exported, and a trial's series
are removed when it leaves the window or its job is deleted. Prometheus keeps the samples it
scraped, so a panel over a time range still shows every trial that passed through the window.
Trial durations and pruned-at-epoch are histograms (fixed buckets, one series set per job),
observed from the engine's events: each finished trial once, whatever the window holds.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Final

from prometheus_client import Counter, Gauge, Histogram

from openautoglm.engine.reconcile import Outcome
from openautoglm.engine.status import RECENT_TRIALS

_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Trials per job whose parameters and values are exported (the status's recentTrials).
WINDOW: Final = RECENT_TRIALS
_TRIAL_SECONDS_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600)
_EPOCH_BUCKETS: Final = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128)

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
TRIAL_PARAM = Gauge(
    "openautoglm_trial_param",
    f"Numeric hyperparameter of one of a TuningJob's {WINDOW} most recent trials",
    ["namespace", "job", "trial", "param"],
)
TRIAL_PARAM_INFO = Gauge(
    "openautoglm_trial_param_info",
    f"Categorical hyperparameter (the value is a label; always 1) of one of a TuningJob's {WINDOW} most recent trials",
    ["namespace", "job", "trial", "param", "value"],
)
TRIAL_VALUE = Gauge(
    "openautoglm_trial_value",
    f"Objective value of one of a TuningJob's {WINDOW} most recent trials, once it completed",
    ["namespace", "job", "trial", "objective"],
)
TRIAL_SECONDS = Histogram(
    "openautoglm_trial_duration_seconds",
    "Wall time of a TuningJob's finished trials, by how they ended",
    ["namespace", "job", "state"],
    buckets=_TRIAL_SECONDS_BUCKETS,
)
PRUNED_EPOCH = Histogram(
    "openautoglm_trial_pruned_epoch",
    "Last epoch a pruned (or stopped) trial reported",
    ["namespace", "job"],
    buckets=_EPOCH_BUCKETS,
)
API_ERRORS = Counter(
    "openautoglm_api_errors_total",
    "Kubernetes API calls of the operator that failed, retries spent, by call and HTTP status (0: no response)",
    ["operation", "code"],
)
API_RETRIES = Counter(
    "openautoglm_api_retries_total",
    "Kubernetes API calls of the operator that failed and were tried again, by call and HTTP status (0: no response)",
    ["operation", "code"],
)
JOBS_WAITING = Gauge(
    "openautoglm_jobs_waiting", "TuningJob passes waiting for a study thread (OPENAUTOGLM_OPERATOR_WORKERS)"
)
LEADER = Gauge(
    "openautoglm_leader",
    "1 while this operator replica drives TuningJobs (it holds the leader Lease, or runs without leader "
    "election); 0 while it stands by",
)

#: How each finishing event ends a trial (the trial-duration histogram's `state`).
_FINISHED: Final = {
    "TrialCompleted": "completed",
    "TrialPruned": "pruned",
    "TrialStopped": "pruned",
    "TrialFailed": "failed",
}
#: uids of deleted TuningJobs, so that a pass still running when its job was deleted does not
#: bring the job's series back (bounded: the newest ones are what can still race).
_FORGOTTEN: collections.OrderedDict[str, None] = collections.OrderedDict()
_FORGOTTEN_LIMIT: Final = 1024


@dataclasses.dataclass
class _Exported:
    """The trial series one job has exported, so that they can be removed again."""

    params: set[tuple[str, ...]] = dataclasses.field(default_factory=set)
    infos: set[tuple[str, ...]] = dataclasses.field(default_factory=set)
    values: set[tuple[str, ...]] = dataclasses.field(default_factory=set)
    states: set[str] = dataclasses.field(default_factory=set)
    reasons: set[str] = dataclasses.field(default_factory=set)


_EXPORTED: dict[tuple[str, str], _Exported] = {}
_LOCK = threading.Lock()


def record(
    namespace: str,
    job: str,
    outcome: Outcome,
    seconds: float,
    objectives: Sequence[str] = (),
    uid: str | None = None,
) -> None:
    """After each reconcile pass: the job's counts, best value, recent trials and finished trials."""
    # One lock around it all: forget() must not run halfway through a pass's record.
    with _LOCK:
        if uid is not None and uid in _FORGOTTEN:
            return  # the job was deleted while this pass ran
        RECONCILE_SECONDS.labels(namespace, job).observe(seconds)
        for op, values in outcome.latencies.items():
            for v in values:
                OPTUNA_SECONDS.labels(op).observe(v)
        for state in ("running", "completed", "pruned", "failed"):
            TRIALS.labels(namespace, job, state).set(outcome.status.counts[state])
        if outcome.status.best and isinstance(outcome.status.best.get("value"), (int, float)):
            BEST_VALUE.labels(namespace, job).set(outcome.status.best["value"])
        exported = _EXPORTED.setdefault((namespace, job), _Exported())
        for e in outcome.events:
            EVENTS.labels(namespace, job, e.reason).inc()
            exported.reasons.add(e.reason)
            finished = _FINISHED.get(e.reason)
            if finished is not None and e.seconds is not None:
                TRIAL_SECONDS.labels(namespace, job, finished).observe(e.seconds)
                exported.states.add(finished)
            if finished == "pruned" and e.epochs is not None:
                PRUNED_EPOCH.labels(namespace, job).observe(e.epochs)
        _record_trials(namespace, job, outcome.status.recent[-WINDOW:], objectives, exported)


def _record_trials(
    namespace: str, job: str, recent: list[dict[str, Any]], objectives: Sequence[str], exported: _Exported
) -> None:
    params: set[tuple[str, ...]] = set()
    infos: set[tuple[str, ...]] = set()
    values: set[tuple[str, ...]] = set()
    labels: tuple[str, ...]
    for t in recent:
        trial = str(t["number"])
        for name, v in (t.get("params") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                params.add(labels := (namespace, job, trial, name))
                TRIAL_PARAM.labels(*labels).set(v)
            elif v is not None:
                infos.add(labels := (namespace, job, trial, name, str(v)))
                TRIAL_PARAM_INFO.labels(*labels).set(1)
        if t["state"] == "Completed":
            for objective, v in _objective_values(t.get("value"), objectives):
                values.add(labels := (namespace, job, trial, objective))
                TRIAL_VALUE.labels(*labels).set(v)
    # A trial that left the window (or changed a value) loses its old series.
    for metric, before, now in (
        (TRIAL_PARAM, exported.params, params),
        (TRIAL_PARAM_INFO, exported.infos, infos),
        (TRIAL_VALUE, exported.values, values),
    ):
        for labels in before - now:
            _remove(metric, labels)
    exported.params, exported.infos, exported.values = params, infos, values


def _objective_values(value: Any, objectives: Sequence[str]) -> Iterator[tuple[str, float]]:
    items = value if isinstance(value, list) else [value]
    for i, v in enumerate(items):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            yield (objectives[i] if i < len(objectives) else str(i)), v


def forget(namespace: str, job: str, uid: str | None = None) -> None:
    """The TuningJob was deleted: remove every series it had."""
    with _LOCK:
        if uid is not None:
            _FORGOTTEN[uid] = None
            while len(_FORGOTTEN) > _FORGOTTEN_LIMIT:
                _FORGOTTEN.popitem(last=False)
        exported = _EXPORTED.pop((namespace, job), None) or _Exported()
        for metric, labels in (
            *((TRIAL_PARAM, labels) for labels in exported.params),
            *((TRIAL_PARAM_INFO, labels) for labels in exported.infos),
            *((TRIAL_VALUE, labels) for labels in exported.values),
            *((TRIALS, (namespace, job, s)) for s in ("running", "completed", "pruned", "failed")),
            *((TRIAL_SECONDS, (namespace, job, s)) for s in exported.states),
            *((EVENTS, (namespace, job, r)) for r in exported.reasons),
            (BEST_VALUE, (namespace, job)),
            (RECONCILE_SECONDS, (namespace, job)),
            (PRUNED_EPOCH, (namespace, job)),
        ):
            _remove(metric, labels)


def _remove(metric: Any, labels: tuple[str, ...]) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass  # never set (e.g. no best value yet)


def api_error(operation: str, code: int | None) -> None:
    API_ERRORS.labels(operation, str(code or 0)).inc()


def api_retry(operation: str, code: int | None) -> None:
    API_RETRIES.labels(operation, str(code or 0)).inc()

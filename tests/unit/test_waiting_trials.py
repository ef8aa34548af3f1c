"""Trials on a busy cluster, through the real reconcile pass (issue 24): a trial says why it waits
within one pass, a run not wholly running after trial.pendingTimeoutSeconds gives its pods back
and goes back to the queue (not failed, not a retry, with a back-off), an image that cannot be
pulled fails its trial with that reason, a trial queued behind Kueue's gate is never given back,
and trial.timeoutSeconds counts from the moment every rank runs.

The backend here is scripted (what the pods say); tests/k8s/test_gangs.py runs the same through
the operator against the kubelet simulator's scheduler.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from openautoglm.engine import queueing
from openautoglm.engine.attrs import TRIAL_REQUEUED_BECAUSE, TRIAL_RETRIED_BECAUSE
from openautoglm.engine.reconcile import Reconciler, attempt_of
from openautoglm.engine.trials import PENDING, RUNNING, TrialObservation, WorkerObservation
from openautoglm.validation import validate_document

UNSCHEDULABLE = "Unschedulable: 0/1 nodes are available: 1 Too many pods."
GATED = "SchedulingGated: Scheduling is blocked due to non-empty scheduling gates"
PULL = 'ImagePullBackOff: Back-off pulling image "nope/trial:1"'


def job(pending_timeout: int = 1, **trial: Any):
    return validate_document(
        {
            "apiVersion": "openautoglm.io/v1alpha1",
            "kind": "TuningJob",
            "metadata": {"name": "busy"},
            "spec": {
                "objective": {"metric": "score", "direction": "maximize"},
                "budget": {"maxTrials": 1, "parallelism": 1},
                "algorithm": {"sampler": "random", "seed": 1},
                "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
                "trial": {
                    "command": ["train"],
                    "epochs": 5,
                    "workers": 2,
                    "pendingTimeoutSeconds": pending_timeout,
                    **trial,
                },
                "metrics": {"collector": {"kind": "native"}},
            },
        }
    )


class Cluster:
    """What the pods of each run say: rank 0 runs, rank 1 waits with ``waiting`` (None: runs)."""

    def __init__(self, waiting: str | None) -> None:
        self.waiting = waiting
        self.runs: dict[int, int] = {}  # trial -> its run that has pods
        self.launches: list[tuple[int, int]] = []
        self.retired: list[tuple[int, int, str]] = []
        self.stopped: list[int] = []

    def observe(self) -> dict[int, TrialObservation]:
        out = {}
        for n, run in self.runs.items():
            rank1 = WorkerObservation(1, PENDING if self.waiting else RUNNING, None, attempt=run, waiting=self.waiting)
            out[n] = TrialObservation(n, [WorkerObservation(0, RUNNING, "10.0.0.1:9090", attempt=run), rank1], 2)
        return out

    def launch(self, number: int, params: dict[str, Any], attempt: int = 0) -> None:
        self.runs[number] = attempt
        self.launches.append((number, attempt))

    def retire(self, number: int, attempt: int, reason: str) -> None:
        self.retired.append((number, attempt, reason))
        if self.runs.get(number) == attempt:
            del self.runs[number]

    def stop(self, number: int, reason: str) -> None:
        self.stopped.append(number)

    def release(self, number: int) -> None:
        self.runs.pop(number, None)

    def update(self, job) -> None:
        pass

    def close(self) -> None:
        pass

    def tidy_checkpoints(self, keep: set[int], below: int) -> bool:
        return True

    def checkpoint_location(self, number: int) -> dict[str, str] | None:
        return None


class NoMetrics:
    deadline_seconds = 0.1

    def read(self, trial: TrialObservation):
        return None


def drive(j, cluster: Cluster) -> tuple[Reconciler, optuna.Study]:
    study = optuna.create_study(storage=InMemoryStorage(), direction="maximize")
    return Reconciler(j, study, cluster, NoMetrics()), study


def only_trial(study: optuna.Study):
    (t,) = study.get_trials(deepcopy=False)
    return t


def test_a_waiting_trial_says_why_within_one_pass_and_warns_once():
    cluster = Cluster(UNSCHEDULABLE)
    rec, study = drive(job(pending_timeout=600), cluster)
    rec.reconcile(0.0)  # asks and launches
    outcome = rec.reconcile(1.0)  # sees rank 1 pending
    (recent,) = outcome.status.recent
    assert recent["waiting"] == f"worker 1: {UNSCHEDULABLE}"
    warnings = [e for e in outcome.events if e.reason == "TrialWaiting"]
    assert len(warnings) == 1 and "Too many pods" in warnings[0].message and warnings[0].warning
    again = rec.reconcile(2.0)
    assert not [e for e in again.events if e.reason == "TrialWaiting"], "the same reason is said once"
    cluster.waiting = None  # the scheduler found room
    running = rec.reconcile(3.0)
    assert "waiting" not in running.status.recent[0]


def test_a_partly_scheduled_run_is_given_back_and_requeued_not_failed():
    cluster = Cluster(UNSCHEDULABLE)
    rec, study = drive(job(pending_timeout=1, retries=1), cluster)
    rec.reconcile(0.0)
    rec.reconcile(0.1)  # the pending clock starts
    time.sleep(1.1)
    outcome = rec.reconcile(1.2)
    t = only_trial(study)
    assert t.state == TrialState.RUNNING, "a requeue is not a failure"
    assert cluster.retired and cluster.retired[0][:2] == (0, 0), "every pod of run 0 given back"
    assert "pendingTimeoutSeconds=1" in t.user_attrs[TRIAL_REQUEUED_BECAUSE][0]
    assert not t.user_attrs.get(TRIAL_RETRIED_BECAUSE), "nor a retry"
    assert [e.reason for e in outcome.events if e.warning] == ["TrialRequeued"]
    assert outcome.status.recent[0]["requeues"] == 1
    assert outcome.status.recent[0]["waiting"].startswith("requeued 1x")
    # The back-off: not launched again at once ...
    rec.reconcile(1.3)
    assert cluster.launches == [(0, 0)]
    # ... but after it, as a new run (new pod names), the retry budget untouched.
    time.sleep(queueing.requeue_delay(1, 1, 0) + 0.1)
    cluster.waiting = None
    rec.reconcile(3.0)
    assert cluster.launches == [(0, 0), (0, 1)]
    t = only_trial(study)
    assert attempt_of(t) == 1 and t.state == TrialState.RUNNING


def test_an_image_that_cannot_be_pulled_fails_the_trial_with_that_reason():
    cluster = Cluster(PULL)
    rec, study = drive(job(pending_timeout=1, retries=2), cluster)
    rec.reconcile(0.0)
    outcome = rec.reconcile(0.1)
    assert outcome.status.recent[0]["waiting"] == f"worker 1: {PULL}", "said within one pass"
    time.sleep(1.1)
    rec.reconcile(1.2)
    t = only_trial(study)
    assert t.state == TrialState.FAIL
    assert "ImagePullBackOff" in t.user_attrs["fail_reason"] and "nope/trial:1" in t.user_attrs["fail_reason"]
    assert not t.user_attrs.get(TRIAL_RETRIED_BECAUSE), "retrying cannot pull an image either"
    assert 0 in cluster.stopped


def test_a_trial_queued_behind_kueue_gates_is_never_given_back():
    cluster = Cluster(GATED)
    rec, study = drive(job(pending_timeout=1, scheduling={"kueue": {"queueName": "team-a"}}), cluster)
    rec.reconcile(0.0)
    for now in (0.1, 0.7, 1.3, 1.9):
        rec.reconcile(now)
        time.sleep(0.6)
    t = only_trial(study)
    assert t.state == TrialState.RUNNING and not cluster.retired
    assert t.user_attrs["waiting"].startswith("worker 1: SchedulingGated")


def test_trial_timeout_counts_from_when_every_rank_runs():
    cluster = Cluster(GATED)
    rec, study = drive(job(pending_timeout=600, timeoutSeconds=1), cluster)
    rec.reconcile(0.0)
    rec.reconcile(0.1)
    time.sleep(1.2)  # longer than timeoutSeconds, all of it queued
    cluster.waiting = None
    rec.reconcile(1.3)
    assert only_trial(study).state == TrialState.RUNNING, "time queued is not time trained"
    time.sleep(1.2)
    rec.reconcile(2.6)
    t = only_trial(study)
    assert t.state == TrialState.FAIL and "timeoutSeconds" in t.user_attrs["fail_reason"]


def test_requeue_back_off_doubles_and_is_capped():
    delays = [queueing.requeue_delay(k, 600, 0) for k in range(1, 8)]
    assert delays[:3] == [30.0, 60.0, 120.0]
    assert max(delays) == queueing.MAX_REQUEUE_DELAY_SECONDS
    # Trials given back together come back apart.
    assert len({queueing.requeue_delay(1, 600, n) for n in range(5)}) == 5

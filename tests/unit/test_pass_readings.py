"""A pass waits for its trials' readings no longer than one deadline, and a reading that cannot
be read is the trial's recorded problem, never the pass's exception (issue 21, cases 2 and 10).

On main the pass waited on every reader future without a deadline: hung readers held the pass
(and the reader pool that all jobs share) as long as they hung.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import optuna
import pytest
from optuna.storages import InMemoryStorage

from openautoglm.engine.attrs import TRIAL_METRICS_PROBLEM
from openautoglm.engine.metrics import Reading
from openautoglm.engine.reconcile import READ_MARGIN_SECONDS, READERS, Reconciler
from openautoglm.engine.trials import RUNNING, SUCCEEDED, TrialObservation, TrialResult, WorkerObservation
from openautoglm.validation import validate_document
from openautoglm_trial.contract import MAX_STEP

#: More trials than the shared pool has readers: some readings never even start.
TRIALS = READERS + 8
DEADLINE = 0.3


def job(parallelism: int = TRIALS):
    return validate_document(
        {
            "apiVersion": "openautoglm.io/v1alpha1",
            "kind": "TuningJob",
            "metadata": {"name": "readings"},
            "spec": {
                "objective": {"metric": "score", "direction": "maximize"},
                "budget": {"maxTrials": parallelism, "parallelism": parallelism},
                "algorithm": {"sampler": "random", "seed": 1},
                "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
                "trial": {"command": ["train"], "epochs": 5},
                "metrics": {"collector": {"kind": "native"}},
            },
        }
    )


class Workers:
    """Every launched trial runs (one worker) until ``finish`` gives it a termination message."""

    def __init__(self) -> None:
        self.messages: dict[int, str | None] = {}

    def observe(self) -> dict[int, TrialObservation]:
        return {
            n: TrialObservation(
                n, [WorkerObservation(0, RUNNING if m is None else SUCCEEDED, f"10.0.0.1:{9000 + n}", None, m)], 1
            )
            for n, m in self.messages.items()
        }

    def launch(self, number: int, params: dict[str, Any], attempt: int = 0) -> None:
        self.messages.setdefault(number, None)

    def tidy_checkpoints(self, keep: set[int], below: int) -> bool:
        return True  # no trial.checkpoint here

    def checkpoint_location(self, number: int) -> dict[str, str] | None:
        return None

    def retire(self, number: int, attempt: int, reason: str) -> None:
        self.messages.pop(number, None)

    def stop(self, number: int, reason: str) -> None:
        pass

    def release(self, number: int) -> None:
        self.messages.pop(number, None)

    def update(self, job) -> None:
        pass

    def close(self) -> None:
        pass


class HungMetrics:
    """A /metrics that never answers, as a trickling or mute exporter would without a deadline."""

    deadline_seconds = DEADLINE

    def __init__(self) -> None:
        self.release = threading.Event()

    def read(self, trial: TrialObservation) -> Reading | None:
        self.release.wait(60)
        return None


@pytest.fixture
def hung():
    metrics = HungMetrics()
    yield metrics
    metrics.release.set()  # frees the shared pool's threads for the tests after this one


def reconciler(metrics, parallelism: int = TRIALS) -> tuple[Reconciler, Workers]:
    backend = Workers()
    study = optuna.create_study(storage=InMemoryStorage(), direction="maximize")
    return Reconciler(job(parallelism), study, backend, metrics), backend


def timed_pass(rec: Reconciler, limit: float):
    """Run one pass on a thread: (its outcome, or None if it had not ended after ``limit`` s; seconds)."""
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    thread = threading.Thread(target=lambda: out.update(outcome=rec.reconcile(elapsed=0.0)), daemon=True)
    thread.start()
    thread.join(limit)
    return out.get("outcome"), time.monotonic() - t0


def test_hung_readers_hold_no_pass_beyond_its_deadline(hung) -> None:
    rec, backend = reconciler(hung)
    rec.reconcile(elapsed=0.0)  # asks and launches every trial
    assert len(backend.messages) == TRIALS
    for _ in range(2):  # the second pass finds the pool's threads still taken by the first
        outcome, seconds = timed_pass(rec, limit=10)
        assert outcome is not None, "the pass waited on hung readers"
        assert seconds < DEADLINE + READ_MARGIN_SECONDS + 1.0, seconds
        assert outcome.status.counts["running"] == TRIALS
    assert all(not t.intermediate_values for t in rec.study.get_trials())


class SlowMetrics:
    """Each read of trial 0 answers a problem only after longer than a pass waits (a trickle that
    ends at its own deadline, read on a busy pool); the other trials answer at once."""

    deadline_seconds = DEADLINE

    def __init__(self) -> None:
        self.reads: dict[int, int] = {}
        self.lock = threading.Lock()

    def read(self, trial: TrialObservation) -> Reading | None:
        with self.lock:
            self.reads[trial.number] = self.reads.get(trial.number, 0) + 1
        if trial.number == 0:
            time.sleep(DEADLINE + READ_MARGIN_SECONDS + 0.4)
            return Reading.unreadable("/metrics: no complete answer within 0.3 s")
        return Reading(1, {"score": 0.5})


def test_a_read_that_outlives_its_pass_is_the_next_passes_reading() -> None:
    metrics = SlowMetrics()
    rec, backend = reconciler(metrics, parallelism=2)
    rec.reconcile(elapsed=0.0)  # launches trials 0 and 1
    first = rec.reconcile(elapsed=0.0)  # trial 0's read is still under way when the pass ends
    assert not [e for e in first.events if e.reason == "TrialMetricsUnreadable"]
    time.sleep(0.6)
    second = rec.reconcile(elapsed=0.0)  # takes the read the first pass left running
    assert [e.trial for e in second.events if e.reason == "TrialMetricsUnreadable"] == [0]
    assert metrics.reads[0] == 1, "a second read of a slow endpoint was started while one ran"
    assert rec.study.get_trials()[0].user_attrs[TRIAL_METRICS_PROBLEM].startswith("/metrics: no complete answer")


class ProblemMetrics:
    """Trial 0 answers with something unreadable, the others with a curve (an epoch far too large
    for the study's step column)."""

    deadline_seconds = DEADLINE

    def read(self, trial: TrialObservation) -> Reading | None:
        if trial.number == 0:
            return Reading.unreadable("/metrics: answer larger than 1 MiB: not read")
        if trial.number == 1:
            raise RuntimeError("a bug in a metric source")
        return Reading(10**300, {"score": 0.5})


def test_an_unreadable_answer_is_recorded_once_on_its_trial_and_shown_in_the_status() -> None:
    rec, backend = reconciler(ProblemMetrics(), parallelism=3)
    rec.reconcile(elapsed=0.0)
    events = []
    for _ in range(3):
        outcome = rec.reconcile(elapsed=0.0)
        events += [e for e in outcome.events if e.reason == "TrialMetricsUnreadable"]
    # One Warning per trial when its problem first appears, not one per pass.
    assert sorted(e.trial for e in events) == [0, 1] and all(e.warning for e in events)
    trials = rec.study.get_trials()
    assert trials[0].user_attrs[TRIAL_METRICS_PROBLEM] == "/metrics: answer larger than 1 MiB: not read"
    assert trials[1].user_attrs[TRIAL_METRICS_PROBLEM] == "reading its metrics failed (RuntimeError)"
    assert TRIAL_METRICS_PROBLEM not in trials[2].user_attrs
    assert trials[2].intermediate_values == {MAX_STEP: 0.5}  # clamped to what the storage holds
    recent = {s["number"]: s for s in outcome.status.recent}
    assert recent[0]["metricsProblem"] == "/metrics: answer larger than 1 MiB: not read"
    assert "metricsProblem" not in recent[2]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            '{"status":"completed","metrics":{"score":0.5},"info":' + "[" * 2000 + "]" * 2000 + "}",
            "worker 0: termination message unreadable: nested deeper than 64 levels",
        ),
        ("{bad", "worker 0: termination message unreadable: not JSON (Expecting property name"),
        (
            '{"status":"completed","metrics":{"score":Infinity},"epochs":1e300}',
            "finished without a finite value of ['score'] in its result (termination message: "
            "epochs 1e+300 is outside 0..2147483647; metrics.score is inf, not a finite number)",
        ),
    ],
    ids=["nested", "not-json", "overflow"],
)
def test_a_malformed_termination_message_fails_its_trial_with_what_was_wrong(message: str, reason: str) -> None:
    rec, backend = reconciler(ProblemMetrics(), parallelism=1)
    rec.reconcile(elapsed=0.0)
    backend.messages[0] = message
    outcome = rec.reconcile(elapsed=0.0)
    trial = rec.study.get_trials()[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith(reason), trial.user_attrs["fail_reason"]
    assert any(e.reason == "TrialFailed" for e in outcome.events)


def test_a_good_message_with_an_overflowing_count_completes_with_its_curve_clamped() -> None:
    rec, backend = reconciler(ProblemMetrics(), parallelism=1)
    rec.reconcile(elapsed=0.0)
    backend.messages[0] = '{"status":"completed","metrics":{"score":0.5},"history":{"score":[0.1,0.5]},"epochs":1e300}'
    rec.reconcile(elapsed=0.0)
    trial = rec.study.get_trials()[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.5
    assert trial.intermediate_values == {MAX_STEP - 1: 0.1, MAX_STEP: 0.5}
    assert trial.user_attrs[TRIAL_METRICS_PROBLEM] == "termination message: epochs 1e+300 is outside 0..2147483647"


@pytest.mark.parametrize("message", ["{bad", "{" + "[" * 2000, '{"status": ' + "[" * 2000 + "]" * 2000 + "}"])
def test_an_adopted_workers_malformed_message_is_its_failure_not_a_crash(tmp_path, message: str) -> None:
    from openautoglm.local.backend import LocalBackend

    backend = LocalBackend(job(1), tmp_path, base_dir=tmp_path)
    wdir = tmp_path / "trials" / "t0" / "w0"
    wdir.mkdir(parents=True)
    (wdir.parent / "launch.json").write_text('{"number": 0, "params": {}, "attempt": 0}')
    (wdir / "pid").write_text("999999999")  # gone, and not our child: judged by its message alone
    (wdir / "termination-log").write_text(message)
    trial = backend.observe()[0]
    assert trial.phase == "Failed" and "termination message unreadable" in trial.failure_reason()


def test_a_local_termination_log_is_read_no_further_than_the_limit(tmp_path) -> None:
    from openautoglm.local.backend import _read
    from openautoglm_trial.result import READ_LIMIT

    path = tmp_path / "termination-log"
    path.write_bytes(b'{"status": "completed", "info": "' + b"x" * (8 * 1024 * 1024))
    text = _read(path)
    assert text is not None and len(text) == READ_LIMIT + 1
    assert TrialResult.read(text) == (None, "longer than 64 KiB")

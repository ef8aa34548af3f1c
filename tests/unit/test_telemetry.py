"""The operator's metrics for parameter evolution: bounded to the recent window, removed when a
trial leaves it or its job is deleted; histograms count each finished trial once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from openautoglm.engine.reconcile import Event, Outcome
from openautoglm.engine.status import JobStatus
from openautoglm.k8s import api as api_mod
from openautoglm.k8s import handlers, telemetry

NS, JOB = "telemetry-ns", "telemetry-job"


def _trial(number: int, state: str = "Completed", **extra: Any) -> dict[str, Any]:
    params = {"lr": 0.001 * (number + 1), "layers": number % 3 + 1, "optimizer": "adam" if number % 2 else "sgd"}
    out: dict[str, Any] = {"number": number, "state": state, "params": params, "seconds": 2.0 + number}
    if state == "Completed":
        out["value"] = 0.5 + number / 100
    return {**out, **extra}


def _outcome(recent: list[dict[str, Any]], events: list[Event] | None = None) -> Outcome:
    counts = {"running": 0, "completed": len(recent), "pruned": 0, "failed": 0, "finished": len(recent), "max": 99}
    status = JobStatus("Running", None, None, counts, None, [], recent, 1.0, None)
    return Outcome(status, events or [])


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": NS, "job": JOB, **labels})


@pytest.fixture(autouse=True)
def _clean() -> None:
    telemetry.forget(NS, JOB)


def test_recent_trials_export_their_parameters_and_values() -> None:
    telemetry.record(NS, JOB, _outcome([_trial(0), _trial(1), _trial(2, "Running")]), 0.01, ["accuracy"])
    assert _value("openautoglm_trial_param", trial="1", param="lr") == pytest.approx(0.002)
    assert _value("openautoglm_trial_param", trial="2", param="layers") == 3
    assert _value("openautoglm_trial_param_info", trial="1", param="optimizer", value="adam") == 1
    assert _value("openautoglm_trial_param_info", trial="0", param="optimizer", value="sgd") == 1
    assert _value("openautoglm_trial_value", trial="0", objective="accuracy") == pytest.approx(0.5)
    assert _value("openautoglm_trial_value", trial="2", objective="accuracy") is None  # still running


def test_a_trial_leaving_the_window_loses_its_series() -> None:
    window = telemetry.WINDOW
    telemetry.record(NS, JOB, _outcome([_trial(n) for n in range(window)]), 0.01, ["accuracy"])
    assert _value("openautoglm_trial_param", trial="0", param="lr") is not None
    telemetry.record(NS, JOB, _outcome([_trial(n) for n in range(3, window + 3)]), 0.01, ["accuracy"])
    for gone in ("0", "1", "2"):
        assert _value("openautoglm_trial_param", trial=gone, param="lr") is None
        assert _value("openautoglm_trial_value", trial=gone, objective="accuracy") is None
        assert _value("openautoglm_trial_param_info", trial=gone, param="optimizer", value="sgd") is None
        assert _value("openautoglm_trial_param_info", trial=gone, param="optimizer", value="adam") is None
    assert _value("openautoglm_trial_param", trial=str(window + 2), param="lr") is not None
    exported = {
        s.labels["trial"]
        for family in telemetry.TRIAL_PARAM.collect()
        for s in family.samples
        if s.labels["job"] == JOB
    }
    assert len(exported) == window


def test_finished_trials_are_counted_once_from_the_engines_events() -> None:
    events = [
        Event("TrialCompleted", "trial 0 completed", 0, seconds=2.0, epochs=8),
        Event("TrialPruned", "trial 1: pruned by median at epoch 3", 1, seconds=1.5, epochs=3),
        # finished long after newer trials pushed it out of the recent window: still counted
        Event("TrialFailed", "trial 2: exit code 1", 2, warning=True, seconds=9.0, epochs=None),
        Event("NewBest", "trial 0 is the new best", 0),
    ]
    telemetry.record(NS, JOB, _outcome([_trial(n) for n in range(3, 13)], events), 0.01, ["accuracy"])
    for _ in range(3):  # later passes: the same trials, no new events
        telemetry.record(NS, JOB, _outcome([_trial(n) for n in range(3, 13)]), 0.01, ["accuracy"])
    assert _value("openautoglm_trial_duration_seconds_count", state="completed") == 1
    assert _value("openautoglm_trial_duration_seconds_sum", state="completed") == 2.0
    assert _value("openautoglm_trial_duration_seconds_count", state="pruned") == 1
    assert _value("openautoglm_trial_duration_seconds_count", state="failed") == 1
    assert _value("openautoglm_trial_pruned_epoch_count") == 1
    assert _value("openautoglm_trial_pruned_epoch_bucket", le="3.0") == 1
    assert _value("openautoglm_trial_pruned_epoch_bucket", le="2.0") == 0
    assert _value("openautoglm_events_total", reason="TrialPruned") == 1


def test_a_pass_finishing_after_its_job_was_deleted_brings_nothing_back() -> None:
    telemetry.record(NS, JOB, _outcome([_trial(0)]), 0.01, ["accuracy"], uid="uid-1")
    telemetry.forget(NS, JOB, "uid-1")
    telemetry.record(NS, JOB, _outcome([_trial(0), _trial(1)]), 0.01, ["accuracy"], uid="uid-1")  # late pass
    assert _value("openautoglm_trials", state="completed") is None
    assert _value("openautoglm_trial_param", trial="1", param="lr") is None
    # A new TuningJob with the same name (another uid) is recorded as usual.
    telemetry.record(NS, JOB, _outcome([_trial(0)]), 0.01, ["accuracy"], uid="uid-2")
    assert _value("openautoglm_trials", state="completed") == 1


def test_several_objectives_are_labelled_by_metric() -> None:
    trial = {**_trial(0), "value": [0.9, 12.0]}
    telemetry.record(NS, JOB, _outcome([trial]), 0.01, ["accuracy", "size"])
    assert _value("openautoglm_trial_value", trial="0", objective="accuracy") == 0.9
    assert _value("openautoglm_trial_value", trial="0", objective="size") == 12.0


def test_a_deleted_job_loses_every_series() -> None:
    telemetry.record(NS, JOB, _outcome([_trial(0), _trial(1, "Pruned")]), 0.01, ["accuracy"])
    assert _value("openautoglm_trials", state="completed") == 2
    telemetry.forget(NS, JOB)
    for family in REGISTRY.collect():
        for sample in family.samples:
            assert sample.labels.get("job") != JOB, sample


def test_jobs_waiting_counts_passes_queued_for_a_study_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAUTOGLM_OPERATOR_WORKERS", "1")
    monkeypatch.setattr(handlers, "_POOL", {})
    release = threading.Event()
    seen: list[float] = []

    def block() -> None:
        release.wait(10)

    def peek() -> None:
        seen.append(REGISTRY.get_sample_value("openautoglm_jobs_waiting"))

    async def main() -> None:
        base = REGISTRY.get_sample_value("openautoglm_jobs_waiting")
        first = asyncio.ensure_future(handlers.in_pool(block))
        queued = [asyncio.ensure_future(handlers.in_pool(peek)) for _ in range(2)]
        deadline = time.monotonic() + 5
        while REGISTRY.get_sample_value("openautoglm_jobs_waiting") != base + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert REGISTRY.get_sample_value("openautoglm_jobs_waiting") == base + 2  # one runs, two wait
        release.set()
        await asyncio.gather(first, *queued)
        assert REGISTRY.get_sample_value("openautoglm_jobs_waiting") == base
        assert seen == [base + 1, base]  # each saw the ones still behind it

    try:
        asyncio.run(main())
    finally:
        handlers._POOL.pop("pool").shutdown(wait=True)


def test_failed_api_calls_are_counted_by_call_and_status() -> None:
    config = client.Configuration(host="http://127.0.0.1:9")  # nothing listens: no response
    config.retries = 0
    # Retried (no answer is transient), quickly: the call fails once, whatever its attempts.
    api = api_mod.Api(client.ApiClient(config), retry=api_mod.RetryPolicy(attempts=2, base_seconds=0.01))
    before = REGISTRY.get_sample_value("openautoglm_api_errors_total", {"operation": "list_pods", "code": "0"}) or 0
    with pytest.raises(Exception):  # noqa: B017 (urllib3's MaxRetryError or a connection error)
        api.list_pods("default", {"a": "b"})
    after = REGISTRY.get_sample_value("openautoglm_api_errors_total", {"operation": "list_pods", "code": "0"})
    assert after == before + 1

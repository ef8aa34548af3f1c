"""The engine reads a trial's result (its termination message) once, into types."""

import json

from openautoglm.engine.trials import FAILED, TrialObservation, TrialResult, WorkerObservation


def test_a_complete_result_reads_into_types():
    r = TrialResult.parse(
        '{"status": "completed", "reason": null, "metrics": {"accuracy": 0.9, "loss": 0.3},'
        ' "best": {"accuracy": 0.92}, "history": {"accuracy": [0.5, 0.92, 0.9]},'
        ' "epochs": 3, "seconds": 4.5}'
    )
    assert r == TrialResult(
        status="completed",
        metrics={"accuracy": 0.9, "loss": 0.3},
        best={"accuracy": 0.92},
        history={"accuracy": [0.5, 0.92, 0.9]},
        epochs=3,
        seconds=4.5,
    )
    assert TrialResult.parse(json.dumps(r.to_dict())) == r  # the writer's format reads back


def test_malformed_fields_read_as_absent_not_as_a_crash():
    r = TrialResult.parse(
        '{"status": 3, "metrics": {"accuracy": "high", "loss": true, "ok": 1},'
        ' "best": [1], "history": {"accuracy": "x"}, "epochs": "3", "seconds": null}'
    )
    assert r == TrialResult(status="", metrics={"ok": 1.0})
    for text in (None, "", "not json", "[1, 2]", "null"):
        assert TrialResult.parse(text) is None


def test_a_failed_rank_names_its_reason_or_exit_code():
    obs = TrialObservation(
        0,
        [
            WorkerObservation(0, FAILED, termination_message='{"reason": "out of memory"}'),
            WorkerObservation(1, FAILED, exit_code=137),
        ],
        size=2,
    )
    assert obs.phase == FAILED and obs.failure_reason() == "worker 0: out of memory"
    obs.workers[0] = WorkerObservation(0, "Running")
    assert obs.failure_reason() == "worker 1: exit code 137"

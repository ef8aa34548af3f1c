"""The reconcile loop with real processes that follow the trial contract (no training)."""

import json
import os
import signal
import threading
import time

import pytest
from optuna.trial import TrialState

from openautoglm.config import Settings
from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document

FAST = Settings(workdir=None, storage=None, local_tick_seconds=0.1, elapsed_save_seconds=1, log_level="WARNING")


def run(doc, tmp_path, **kw):
    job = validate_document(doc)
    events = []
    result = run_local(
        job, workdir=tmp_path / job.name, settings=FAST, on_outcome=lambda o: events.extend(o.events), **kw
    )
    return result, events


def test_runs_max_trials_and_reports_best(tmp_path, toy):
    result, events = run(toy(max_trials=5, parallelism=2), tmp_path)
    trials = result.study.get_trials()
    assert result.status.phase == "Succeeded" and result.status.reason == "MaxTrialsReached"
    assert [t.number for t in trials] == list(range(5))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    best = max(trials, key=lambda t: t.value)
    assert result.status.best["number"] == best.number
    assert result.best_params == {"x": best.params["x"], "mode": "ok"}
    # strategy "best": the value is the best epoch of the curve the trial reported
    assert best.value == max(best.intermediate_values.values())
    assert {e.reason for e in events} >= {"TrialStarted", "TrialCompleted", "NewBest", "JobSucceeded"}


def test_bad_curves_are_pruned_and_workers_stopped(tmp_path, toy):
    good = [{"x": 0.3}, {"x": 0.35}, {"x": 0.25}]
    bad = [{"x": 1.0}, {"x": 0.98}]
    doc = toy(
        max_trials=5,
        parallelism=1,
        epochs=8,
        pruner="median",
        pruner_settings={"n_startup_trials": 2, "n_warmup_steps": 1},
        warm_start=good + bad,
    )
    result, events = run(doc, tmp_path)
    states = {t.number: t.state for t in result.study.get_trials()}
    assert states[3] == TrialState.PRUNED and states[4] == TrialState.PRUNED
    pruned = result.study.get_trials()[3]
    assert len(pruned.intermediate_values) < 8  # stopped before its last epoch
    assert "pruned by median" in pruned.user_attrs["stop_reason"]
    # all ranks stopped: the worker's termination message says it was terminated
    msg = json.loads((result.workdir / "trials" / "t3" / "w0" / "termination-log").read_text())
    assert msg["reason"] == "terminated"


def test_max_failed_trials_fails_the_job(tmp_path, toy):
    params = [
        {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
        {"name": "mode", "type": "fixed", "value": "fail"},
    ]
    result, events = run(toy(max_trials=6, parallelism=1, max_failed=2, parameters=params), tmp_path)
    assert result.status.phase == "Failed" and result.status.reason == "MaxFailedTrialsReached"
    failed = [t for t in result.study.get_trials() if t.state == TrialState.FAIL]
    assert len(failed) == 3 and len(result.study.get_trials()) == 3
    assert "toy failure on purpose" in failed[0].user_attrs["fail_reason"]


def test_crash_without_result_is_a_failure_with_exit_code(tmp_path, toy):
    params = [{"name": "mode", "type": "categorical", "choices": ["crash"]}]
    result, _ = run(toy(max_trials=1, parallelism=1, max_failed=0, parameters=params), tmp_path)
    t = result.study.get_trials()[0]
    assert t.state == TrialState.FAIL and "exit code 3" in t.user_attrs["fail_reason"]
    assert result.status.phase == "Failed"


def test_finished_job_is_only_reported_on_rerun(tmp_path, toy):
    doc = toy(max_trials=2, parallelism=2)
    first, _ = run(doc, tmp_path)
    again, events = run(doc, tmp_path)
    assert again.resumed and again.status.phase == "Succeeded"
    assert len(again.study.get_trials()) == 2 and events == []


def test_raising_the_budget_continues_the_study(tmp_path, toy):
    run(toy(max_trials=2, parallelism=1), tmp_path)
    more, _ = run(toy(max_trials=4, parallelism=1), tmp_path)
    trials = more.study.get_trials()
    assert more.status.phase == "Succeeded" and [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_target_ends_the_job_early(tmp_path, toy):
    doc = toy(max_trials=10, parallelism=1, warm_start=[{"x": 0.3}])
    doc["spec"]["objective"]["target"] = 0.5
    result, _ = run(doc, tmp_path)
    assert result.status.reason == "TargetReached"
    assert len(result.study.get_trials()) == 1


def test_two_workers_per_trial_each_get_rank_env(tmp_path, toy):
    result, _ = run(toy(max_trials=1, parallelism=1, workers=3), tmp_path)
    for rank in range(3):
        msg = json.loads((result.workdir / "trials" / "t0" / f"w{rank}" / "termination-log").read_text())
        assert msg["rank"] == rank


def test_several_objectives_report_a_pareto_front(tmp_path, toy):
    doc = toy(max_trials=8, parallelism=2, sampler="nsga2")
    doc["spec"]["objective"] = {
        "metrics": [{"metric": "score", "direction": "maximize"}, {"metric": "cost", "direction": "minimize"}]
    }
    result, _ = run(doc, tmp_path)
    assert result.status.phase == "Succeeded" and result.status.best is None
    front = result.status.pareto
    assert front and all(len(p["value"]) == 2 for p in front)
    done = [t for t in result.study.get_trials() if t.state == TrialState.COMPLETE]
    # nothing in the front is dominated by any completed trial
    for p in front:
        s, cost = p["value"]
        assert not any(t.values[0] >= s and t.values[1] <= cost and tuple(t.values) != (s, cost) for t in done)
    assert {p["number"] for p in front} == {t.number for t in result.study.best_trials}


def _kill_rank_1_of_trial_0(workdir, after: float = 0.6) -> threading.Thread:
    """SIGKILL rank 1 of trial 0 (its first run) once it has run ``after`` seconds."""

    def kill() -> None:
        pid_file = workdir / "trials" / "t0" / "w1" / "pid"
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(after)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("retries", [1, 0])
def test_a_killed_rank_stops_its_peer_and_retries_or_fails_the_trial(tmp_path, toy, retries):
    """Local run of trial.retries: rank 1 of trial 0 SIGKILLed mid-run. Rank 0 is stopped with it;
    with a retry left, trial 0 runs again with its number and parameters and completes, else it
    fails with the lost rank's reason; either way the job runs its other trial."""
    doc = toy(max_trials=2, parallelism=1, workers=2, epochs=6, max_failed=1)
    doc["spec"]["parameters"][1] = {"name": "epoch_seconds", "type": "fixed", "value": 0.3}
    doc["spec"]["trial"]["retries"] = retries
    killer = _kill_rank_1_of_trial_0(tmp_path / "toy")
    result, events = run(doc, tmp_path)
    killer.join(5)
    t0, t1 = result.study.get_trials()
    assert t1.state == TrialState.COMPLETE and result.status.phase == "Succeeded"
    assert result.status.counts["retried"] == retries
    retried = [e for e in events if e.reason == "TrialRetried"]
    if retries:
        assert t0.state == TrialState.COMPLETE and len(retried) == 1 and retried[0].trial == 0
        assert t0.user_attrs["retried_because"] == ["worker 1: exit code -9"]
        launch = json.loads((result.workdir / "trials" / "t0" / "launch.json").read_text())
        assert launch["attempt"] == 1 and launch["params"] == t0.user_attrs["params"]
    else:
        assert t0.state == TrialState.FAIL and not retried
        assert t0.user_attrs["fail_reason"] == "worker 1: exit code -9"
        # Rank 0 was stopped (SIGTERM, which the toy records), not left running to its end.
        rank0 = json.loads((result.workdir / "trials" / "t0" / "w0" / "termination-log").read_text())
        assert rank0["reason"] == "terminated", rank0

"""Lost workers, in the real operator against the emulated cluster (issue 13, cases 2 and 3):
one rank of a real 2-rank Horovod trial SIGKILLed, and every pod of a job deleted at once as a
node's eviction would. With ``trial.retries`` the trial runs again under its number and
parameters; without, it fails with the reason and the job goes on. Either way the other ranks
are stopped, every trial is counted once and nothing is left behind."""

from __future__ import annotations

import os
import signal
import sys
import time

from test_faults import _toy_job
from test_operator import NS, TOY, Operator, apply, digits_job, job_status, study_trials, trial_pods


def _ran(operator, name: str) -> list:
    """The trials that ran (a job starting from the task's defaults may leave a warm start queued)."""
    return [t for t in study_trials(operator, name) if t.state.name != "WAITING"]


def _params_env(cluster, pod: str) -> str:
    obj = cluster.get("v1/pods", NS, pod) or {}
    env = obj.get("spec", {}).get("containers", [{}])[0].get("env", [])
    return next((e["value"] for e in env if e["name"] == "OPENAUTOGLM_TRIAL_PARAMS"), "")


def _pods_started(cluster, name: str) -> list[str]:
    return [p["pod"] for p in cluster.process_log if p["pod"].startswith(f"{name}-t")]


def _ended(cluster, *names: str) -> bool:
    return all(job_status(cluster, n).get("phase") in ("Succeeded", "Failed") for n in names)


def _nothing_left(cluster, name: str) -> None:
    cluster.wait_for(lambda: not trial_pods(cluster, name), 60, f"no pod of {name} left")
    assert not [s for s in cluster.services(NS) if s["metadata"]["name"].startswith(f"{name}-t")]


def _horovod_job(name: str, *, max_trials: int, retries: int) -> dict:
    """Real digits trials on 2 Horovod ranks, long enough (12 epochs of 32-sample batches) to be
    caught mid-run; no pruning, so every run ends by itself."""
    doc = digits_job(name, max_trials=max_trials)
    spec = doc["spec"]
    spec["budget"] = {"maxTrials": max_trials, "parallelism": 1, "maxFailedTrials": 1}
    spec["earlyStopping"] = {"pruner": "none"}
    spec["trial"]["workers"] = 2
    spec["trial"]["epochs"] = 12
    spec["trial"]["retries"] = retries
    spec["warmStart"] = [
        {"params": {"lr": 0.01, "batch_size": 32, "dropout": 0.1, "hidden": 64, "optimizer": "adam"}},
        {"params": {"lr": 0.02, "batch_size": 32, "dropout": 0.1, "hidden": 64, "optimizer": "adam"}},
    ][:max_trials]
    return doc


def _kill_rank_1_of_trial_0(cluster, operator, name: str) -> float:
    """SIGKILL rank 1 of trial 0 once the trial has reported an epoch (training, not starting)."""
    cluster.wait_for(
        lambda: any(t.number == 0 and t.intermediate_values for t in study_trials(operator, name)),
        180,
        f"trial 0 of {name} training",
    )
    entry = next(p for p in cluster.process_log if p["pod"] == f"{name}-t0-w1")
    os.kill(entry["pid"], signal.SIGKILL)
    return time.monotonic()


def _rank_0_ended(cluster, name: str) -> float:
    """When trial 0's first rank 0 process ended (it is stopped, not left blocked in an allreduce)."""
    entry = cluster.wait_for(
        lambda: next((p for p in cluster.process_log if p["pod"] == f"{name}-t0-w0" and p["finished"]), None),
        60,
        "rank 0 of the broken run stopped",
    )
    return entry["finished"]


def test_a_killed_rank_stops_its_peer_and_the_trial_is_retried_or_failed(cluster, tmp_path):
    """Two jobs of real 2-rank Horovod trials; rank 1 of trial 0 is SIGKILLed mid-training in each.

    * `retried` (trial.retries: 1): rank 0 is stopped, the trial runs again as trial 0 with the
      same parameters on new pods (`-a1-`), completes, and the status counts the retry.
    * `failed` (retries: 0): rank 0 is stopped, trial 0 fails with worker 1's reason, and
      the job goes on to its second trial (maxFailedTrials: 1).
    (The lost rank's reason is what its supervisor saw: "worker exited unexpectedly after epoch N".)
    """
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        apply(cluster, _horovod_job("retried", max_trials=1, retries=1), tmp_path)
        apply(cluster, _horovod_job("failed", max_trials=2, retries=0), tmp_path)
        first_params = {
            n: cluster.wait_for(lambda n=n: _params_env(cluster, f"{n}-t0-w0"), 60, "t0") for n in ("retried",)
        }
        killed = {n: (_kill_rank_1_of_trial_0(cluster, operator, n), time.time()) for n in ("retried", "failed")}
        retry_params = cluster.wait_for(lambda: _params_env(cluster, "retried-t0-a1-w0"), 60, "the retry's pods")
        stopped_after = {n: _rank_0_ended(cluster, n) - wall for n, (_, wall) in killed.items()}
        cluster.wait_for(lambda: _ended(cluster, "retried", "failed"), 300, "both jobs to end")
        done_after = {n: time.monotonic() - mono for n, (mono, _) in killed.items()}
    finally:
        operator.stop()

    # Retried: one trial, numbered 0, completed by its second run, with the first run's parameters.
    status = job_status(cluster, "retried")
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["completed"] == 1 and status["trials"]["retried"] == 1, status["trials"]
    (t,) = _ran(operator, "retried")
    assert t.number == 0 and t.state.name == "COMPLETE"
    assert retry_params == first_params["retried"] != "", "the retry got other parameters"
    assert len(t.user_attrs["retried_because"]) == 1 and t.user_attrs["retried_because"][0].startswith("worker 1:")
    assert status["recentTrials"][0]["retries"] == 1
    assert sorted(_pods_started(cluster, "retried")) == [
        "retried-t0-a1-w0",
        "retried-t0-a1-w1",
        "retried-t0-w0",
        "retried-t0-w1",
    ], "each run's pods started exactly once"

    # Failed: trial 0 failed with the lost rank's reason, trial 1 ran, nothing was retried.
    status = job_status(cluster, "failed")
    trials = _ran(operator, "failed")
    assert [x.state.name for x in trials] == ["FAIL", "COMPLETE"], status
    assert trials[0].user_attrs["fail_reason"].startswith("worker 1:"), trials[0].user_attrs
    assert status["phase"] == "Succeeded" and status["trials"]["failed"] == 1 and status["trials"]["retried"] == 0
    assert sorted(_pods_started(cluster, "failed")) == ["failed-t0-w0", "failed-t0-w1", "failed-t1-w0", "failed-t1-w1"]

    for name in ("retried", "failed"):
        # Rank 0 was stopped by the operator, not left waiting for its dead peer: well before
        # its own 12 epochs (and Horovod's gloo timeouts) would have ended it.
        assert stopped_after[name] < 20, stopped_after
        _nothing_left(cluster, name)
    print(f"\nrank 0 stopped {stopped_after} s after rank 1 was killed; jobs done {done_after} s after the kill")


def test_every_pod_of_a_job_evicted_at_once_reruns_or_fails_its_running_trials(cluster, tmp_path):
    """A node's worth of pods lost: every pod of each job deleted at once while three trials
    (2 ranks each) run. With retries: 1 those three run again and all 6 trials complete; with
    retries: 0 they fail ("its workers disappeared") and the job finishes its other trials."""
    operator = Operator(cluster, tmp_path)
    operator.start()
    jobs = {}
    for name, retries in (("evict-retry", 1), ("evict-fail", 0)):
        doc = _toy_job(name, ["ok"] * 6, parallelism=3)
        doc["spec"]["warmStart"] = []
        doc["spec"]["budget"]["maxFailedTrials"] = 3
        doc["spec"]["trial"] = {"command": [sys.executable, TOY], "epochs": 6, "workers": 2, "retries": retries}
        doc["spec"]["parameters"][2]["value"] = 0.5  # epoch_seconds: a trial lasts ~3 s
        jobs[name] = doc
    try:
        for doc in jobs.values():
            apply(cluster, doc, tmp_path)

        def three_training(name: str) -> bool:
            running = [t for t in study_trials(operator, name) if t.state.name == "RUNNING" and t.intermediate_values]
            return len(running) == 3

        cluster.wait_for(lambda: all(three_training(n) for n in jobs), 120, "three trials of each job training")
        evicted = {}
        for name in jobs:
            pods = trial_pods(cluster, name)
            evicted[name] = sorted({p["metadata"]["labels"]["openautoglm.io/trial"] for p in pods})
            for pod in pods:  # at once, as the node controller evicts a lost node's pods
                cluster.delete("v1/pods", NS, pod["metadata"]["name"])
        lost_at = time.monotonic()
        cluster.wait_for(lambda: _ended(cluster, *jobs), 180, "both jobs to end")
        recovered = time.monotonic() - lost_at
    finally:
        operator.stop()

    assert all(len(v) == 3 for v in evicted.values()), evicted
    retry = study_trials(operator, "evict-retry")
    assert [t.number for t in retry] == list(range(6)) and all(t.state.name == "COMPLETE" for t in retry)
    rerun = sorted(t.number for t in retry if t.user_attrs.get("retried_because"))
    assert [str(n) for n in rerun] == evicted["evict-retry"], "exactly the evicted trials ran again"
    assert job_status(cluster, "evict-retry")["trials"] | {"max": 6} == {
        "running": 0,
        "completed": 6,
        "pruned": 0,
        "failed": 0,
        "finished": 6,
        "max": 6,
        "retried": 3,
    }
    started = _pods_started(cluster, "evict-retry")
    assert len(started) == len(set(started)) == 2 * (6 + 3), "each run's pods started once"

    fail = study_trials(operator, "evict-fail")
    assert [t.number for t in fail] == list(range(6))
    failed = sorted(str(t.number) for t in fail if t.state.name == "FAIL")
    assert failed == evicted["evict-fail"], "exactly the evicted trials failed"
    reasons = [t.user_attrs["fail_reason"] for t in fail if t.state.name == "FAIL"]
    assert all("pod deleted" in r or "disappeared" in r for r in reasons), reasons
    status = job_status(cluster, "evict-fail")
    assert status["phase"] == "Succeeded" and status["trials"]["completed"] == 3 and status["trials"]["failed"] == 3
    started = _pods_started(cluster, "evict-fail")
    assert len(started) == len(set(started)) == 2 * 6

    for name in jobs:
        _nothing_left(cluster, name)
    print(f"\nevicted trials {evicted}; both jobs done {recovered:.1f} s after the eviction")

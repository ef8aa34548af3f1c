"""Faults, in the real operator against the emulated cluster: the operator SIGKILLed at ten
seeded random moments of a job, and a trial whose metrics endpoint hangs beside a healthy job.
Each ends with the exact trial count, no trial number or pod twice, nothing orphaned."""

from __future__ import annotations

import base64
import glob
import json
import random
import sys
import time
import urllib.request

import optuna
from test_operator import NS, TOY, Operator, apply, digits_job, job_status, study_trials, trial_pods

from openautoglm.engine.storage import open_storage


def _toy_job(name: str, modes: list[str], *, parallelism: int) -> dict:
    doc = digits_job(name, max_trials=len(modes))
    spec = doc["spec"]
    spec["budget"] = {"maxTrials": len(modes), "parallelism": parallelism, "maxFailedTrials": 0}
    spec["trial"] = {"command": [sys.executable, TOY], "epochs": 4, "workers": 1}
    spec["metrics"] = {"intervalSeconds": 0.5, "collector": {"kind": "native"}}
    spec["objective"] = {"metric": "score", "direction": "maximize"}
    spec["earlyStopping"] = {"pruner": "none"}
    spec["parameters"] = [
        {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
        {"name": "mode", "type": "categorical", "choices": sorted(set(modes))},
        {"name": "epoch_seconds", "type": "fixed", "value": 1.0},
    ]
    spec["warmStart"] = [{"params": {"x": 0.1 + 0.1 * i, "mode": m}} for i, m in enumerate(modes)]
    return doc


def _assert_every_trial_once(cluster, name: str, n: int, trials: list) -> dict:
    """The job succeeded with its n trials, each exactly once: numbers 0..n-1 in the study (all
    complete), one pod per trial started once. Returns the status."""
    status = job_status(cluster, name)
    assert status["phase"] == "Succeeded" and status["trials"]["completed"] == n, json.dumps(status)[:4000]
    assert sorted(t.number for t in trials) == list(range(n)) and all(t.state.name == "COMPLETE" for t in trials)
    pods = [p["pod"] for p in cluster.process_log if p["pod"].startswith(f"{name}-t")]
    assert len(pods) == len(set(pods)) == n, "a trial's pod was started twice (or not at all)"
    return status


def _stalled(cluster, name: str, reason: str):
    """A predicate for ``cluster.wait_for``: the job's Stalled condition once it is True with
    ``reason`` (returned), else None."""

    def check() -> dict | None:
        conds = {c["type"]: c for c in job_status(cluster, name).get("conditions", [])}
        stall = conds.get("Stalled") or {}
        return stall if stall.get("status") == "True" and stall.get("reason") == reason else None

    return check


def _pass_buckets(metrics: str, job: str) -> dict[str, float]:
    """The job's reconcile-pass histogram: upper bound -> passes at most that long."""
    out = {}
    for line in metrics.splitlines():
        if line.startswith("openautoglm_reconcile_seconds_bucket{") and f'job="{job}"' in line:
            le = line.split('le="')[1].split('"')[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out


def test_a_hung_metrics_endpoint_blocks_neither_its_job_nor_another(cluster, tmp_path):
    """Trials 1-3 of `mute-metrics` answer no scrape (they accept and hold every connection), all
    three running at once beside trial 0. Their scrapes time out (2 s) side by side, so a pass
    costs one timeout, not three; they are judged by their termination messages; the job's other
    trials and a second job go on."""
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        apply(cluster, _toy_job("mute-metrics", ["ok", "mute", "mute", "mute", "ok"], parallelism=4), tmp_path)
        apply(cluster, _toy_job("neighbour", ["ok", "ok", "ok"], parallelism=1), tmp_path)
        cluster.wait_for(
            lambda: all(
                job_status(cluster, n).get("phase") in ("Succeeded", "Failed") for n in ("mute-metrics", "neighbour")
            ),
            300,
            "both jobs to finish",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        operator.stop()
    for name, n in (("mute-metrics", 5), ("neighbour", 3)):
        _assert_every_trial_once(cluster, name, n, study_trials(operator, name))
    muted = [t for t in study_trials(operator, "mute-metrics") if t.params["mode"] == "mute"]
    assert len(muted) == 3
    for t in muted:  # judged by its termination message: the value and the whole curve came from it
        assert t.state.name == "COMPLETE" and t.value is not None
        assert sorted(t.intermediate_values) == [1, 2, 3, 4]
    # Bounded: no pass of the muted job took much longer than one scrape timeout (read one after
    # the other, three hung trials made 6 s passes), and none of the neighbour's waited on it.
    muted_passes, neighbour_passes = _pass_buckets(metrics, "mute-metrics"), _pass_buckets(metrics, "neighbour")
    assert muted_passes["2.5"] == muted_passes["+Inf"] > 0, muted_passes
    assert muted_passes["1.0"] < muted_passes["+Inf"], "no pass met a hung endpoint: the test proves nothing"
    assert neighbour_passes["1.0"] == neighbour_passes["+Inf"] > 0, neighbour_passes
    print(f"\nmuted job passes by bucket: {muted_passes}\nneighbour passes by bucket: {neighbour_passes}")


def test_operator_killed_at_ten_random_moments_loses_and_duplicates_nothing(cluster, tmp_path):
    """A 12-trial job (parallelism 3); the operator is SIGKILLed 10 times, each after a seeded
    random 0.3-2.5 s of running (counted from when it serves /metrics: on a loaded machine its
    start-up alone can take longer than that), and started again at once. Seed 13: the same
    moments each run."""
    rng = random.Random(13)
    delays = [round(rng.uniform(0.3, 2.5), 2) for _ in range(10)]
    name = "killed-ten"
    doc = _toy_job(name, ["ok"] * 12, parallelism=3)  # mode: only "ok" to sample
    doc["spec"]["parameters"][2]["value"] = 0.4  # epoch_seconds: 4 epochs in ~1.6 s
    doc["spec"]["warmStart"] = []
    operator = Operator(cluster, tmp_path)
    operator.start()
    apply(cluster, doc, tmp_path)
    # The moments count from the job's first pod: on a loaded machine the first kills would
    # otherwise all land while the operator is still starting, before any trial runs.
    cluster.wait_for(lambda: trial_pods(cluster, name), 60, "the first trial pod")
    started = time.monotonic()
    kills = []
    try:
        for delay in delays:
            operator.wait_up()
            time.sleep(delay)
            finished_before = sum(t.state.is_finished() for t in study_trials(operator, name))
            operator.kill()
            kills.append({"after_s": round(time.monotonic() - started, 1), "finished_trials": finished_before})
            operator.start()
        cluster.wait_for(lambda: job_status(cluster, name).get("phase") in ("Succeeded", "Failed"), 300, "the job")
        recovered = time.monotonic() - started
    finally:
        operator.stop()
    _assert_every_trial_once(cluster, name, 12, study_trials(operator, name))
    cluster.wait_for(lambda: not trial_pods(cluster, name), 60, "no orphaned pods")
    assert not [s for s in cluster.services(NS) if s["metadata"]["name"].startswith(f"{name}-t")]
    assert operator.starts == 11
    # The kills really landed while trials ran (not all before the first or after the last).
    assert 0 < sum(0 < k["finished_trials"] < 12 for k in kills), kills
    print(f"\nkills: {json.dumps(kills)}; job done {recovered:.1f} s after it was applied")


def test_postgres_stopped_for_30_s_stalls_the_job_and_it_resumes(cluster, tmp_path, postgres_server):
    """Case 6 in the operator: the job's PostgreSQL stops for 30 s mid-job. While it is down the
    status says Stalled / StorageUnavailable; the trials' pods run on; when it is back the job
    goes on and ends with every trial exactly once."""
    name = "pg-outage-op"
    doc = _toy_job(name, ["ok"] * 6, parallelism=2)
    doc["spec"]["warmStart"] = []
    doc["spec"]["storage"] = {"postgres": {"url": postgres_server["url"]}}
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        apply(cluster, doc, tmp_path)
        cluster.wait_for(lambda: len(trial_pods(cluster, name)) >= 2, 120, "two trials running")
        postgres_server["stop"]()
        stopped_at = time.monotonic()

        stall = cluster.wait_for(_stalled(cluster, name, "StorageUnavailable"), 30, "the Stalled condition")
        noticed = time.monotonic() - stopped_at
        assert "unreachable" in stall["message"] and "resumes" in stall["message"], stall
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped_at)))
        postgres_server["start"]()
        back_at = time.monotonic()
        cluster.wait_for(lambda: job_status(cluster, name).get("phase") in ("Succeeded", "Failed"), 180, "the job")
        resumed = time.monotonic() - back_at
    finally:
        operator.stop()
    study = optuna.load_study(study_name=f"{NS}/{name}", storage=open_storage(postgres_server["url"]))
    status = _assert_every_trial_once(cluster, name, 6, study.trials)
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Stalled"]["status"] == "False"
    print(f"\nStalled {noticed:.1f} s after PostgreSQL stopped; job done {resumed:.1f} s after it was back")


def test_a_job_whose_storage_is_not_there_yet_says_so_and_starts_when_it_is(cluster, tmp_path, postgres_server):
    """A job names a storage Secret that does not exist yet, and its PostgreSQL is down when the
    Secret appears: Stalled / StorageSecretMissing naming the Secret, then Stalled /
    StorageUnavailable, and the job runs to the end once the database is up. No crash of the
    daemon, no traceback, nothing started before the study could be read."""
    name = "storage-later"
    doc = _toy_job(name, ["ok"] * 3, parallelism=2)
    doc["spec"]["warmStart"] = []
    doc["spec"]["storage"] = {"postgres": {"secretRef": {"name": "pg-later", "key": "url"}}}
    postgres_server["stop"]()
    operator = Operator(cluster, tmp_path)
    operator.start()

    try:
        apply(cluster, doc, tmp_path)
        missing = cluster.wait_for(_stalled(cluster, name, "StorageSecretMissing"), 30, "StorageSecretMissing")
        assert "default/pg-later" in missing["message"] and "does not exist" in missing["message"], missing
        secret_data = {"url": base64.b64encode(postgres_server["url"].encode()).decode()}
        cluster.create("v1/secrets", {"metadata": {"name": "pg-later", "namespace": NS}, "data": secret_data})
        down = cluster.wait_for(_stalled(cluster, name, "StorageUnavailable"), 30, "StorageUnavailable")
        assert "unreachable" in down["message"], down
        assert not trial_pods(cluster, name), "trials started before the study could be read"
        postgres_server["start"]()
        back = time.monotonic()
        cluster.wait_for(lambda: job_status(cluster, name).get("phase") in ("Succeeded", "Failed"), 120, "the job")
        started_after = time.monotonic() - back
    finally:
        operator.stop()
    study = optuna.load_study(study_name=f"{NS}/{name}", storage=open_storage(postgres_server["url"]))
    status = _assert_every_trial_once(cluster, name, 3, study.trials)
    assert {c["type"]: c for c in status["conditions"]}["Stalled"]["status"] == "False"
    assert operator.proc is not None and "Traceback" not in operator.log.read_text()
    print(f"\njob done {started_after:.1f} s after PostgreSQL came up")


def test_a_pass_that_raises_says_so_in_the_status_and_the_job_resumes_once_it_can(cluster, tmp_path):
    """A pass that raises what is not a storage outage (here: a journal record that is not JSON,
    as a hand edit or a bad disk leaves it; before, any bug in a pass) used to leave the status as
    it was while kopf retried the daemon in 60 s. Now: Stalled / PassFailed naming the error within
    seconds, the traceback logged once, retries with backoff, and once the journal is repaired the
    job ends with every trial exactly once."""
    name = "pass-fails"
    doc = _toy_job(name, ["ok"] * 6, parallelism=2)
    doc["spec"]["warmStart"] = []
    operator = Operator(cluster, tmp_path)
    operator.start()
    garbage = b"{this is not a journal record\n"
    try:
        apply(cluster, doc, tmp_path)
        cluster.wait_for(lambda: len(trial_pods(cluster, name)) >= 2, 120, "two trials running")
        (journal,) = glob.glob(str(operator.study_dir / NS / f"{name}-*.journal"))
        with open(journal, "ab") as f:
            f.write(garbage)
        broken_at = time.monotonic()

        stall = cluster.wait_for(_stalled(cluster, name, "PassFailed"), 60, "Stalled/PassFailed")
        noticed = time.monotonic() - broken_at
        assert "JSONDecodeError" in stall["message"] and "retrying" in stall["message"], stall
        time.sleep(3)  # a few retries with backoff
        with open(journal, "rb+") as f:  # the repair: the bad record taken out
            data = f.read()
            assert data.count(garbage) == 1
            f.seek(0)
            f.write(data.replace(garbage, b""))
            f.truncate()
        repaired_at = time.monotonic()
        cluster.wait_for(lambda: job_status(cluster, name).get("phase") in ("Succeeded", "Failed"), 120, "the job")
        resumed = time.monotonic() - repaired_at
    finally:
        operator.stop()
    study = optuna.load_study(study_name=f"{NS}/{name}", storage=open_storage(journal))
    status = _assert_every_trial_once(cluster, name, 6, study.trials)
    assert {c["type"]: c for c in status["conditions"]}["Stalled"]["status"] == "False"
    log = operator.log.read_text()
    # (Each line is in the log twice: kopf's own handler and the operator's formatter.)
    assert log.count("[ERROR   ] TuningJob pass-fails: a reconcile pass failed;") == 1, "the traceback once"
    assert log.count("a reconcile pass failed again") >= 2, "retried"
    assert "failed with an exception and will try again" not in log, "kopf's 60 s retry was reached"
    print(f"\nStalled/PassFailed {noticed:.1f} s after the bad record; job done {resumed:.1f} s after the repair")

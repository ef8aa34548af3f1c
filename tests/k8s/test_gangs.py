"""Trials on a busy cluster, through the real operator (kopf, its own process) against the
emulated cluster's scheduler (issue 24): whole gangs and trials that say why they wait.

* Without a gang scheduler, on a node with room for 3 pods, 3 trials of 2 Horovod ranks each are
  launched at once: some rank-0 pods run and wait in their rendezvous for a peer that cannot be
  scheduled. ``trial.pendingTimeoutSeconds`` gives such a partial trial's pods back (a requeue,
  not a failure nor a retry); every trial completes, with both ranks, and no partial trial held a
  pod longer than the pending timeout (measured on the kubelet's process log).
* With the Kueue stand-in (quota: one trial's pods) every trial's ranks are one pod group, gated
  until admitted whole: never a partial group runs, queued trials say SchedulingGated, none is
  given back for time spent gated, and ``trial.timeoutSeconds`` (shorter than the longest wait in
  the queue) kills none of them: it counts from the moment every rank runs.
* An image that cannot be pulled says ImagePullBackOff/ErrImagePull in the status within a pass
  and fails its trial with that reason after the pending timeout (no retry: a retry cannot pull
  it either); a trial asking for more CPU than the node has shows the scheduler's message and a
  Warning event.

The trials are tests/k8s/gang_trial.py: real Horovod ranks that allreduce before and after a
short sleep, so a trial completes only with every rank, and its value (the sum of ``rank + 1``
over the ranks, 3.0) proves that both took part.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster
from conftest import ROOT, project_admission
from test_operator import NS, Operator, apply, job_status, study_trials, trial_pods

GANG = str(Path(__file__).resolve().parent / "gang_trial.py")
QUEUE = "team-a"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
GROUP_COUNT = "kueue.x-k8s.io/pod-group-total-count"
#: Slack on a measured hold or wait: an operator pass (0.5 s apart here) to see a change, the
#: status write interval (1 s), and a rank's SIGTERM ending its supervisor and Horovod program.
MARGIN_S = 2.5
#: Horovod's sum of rank + 1 over the 2 ranks: a trial's value when both ranks took part.
BOTH_RANKS = 3.0


def _cluster(tmp_path: Path, **options: Any) -> Cluster:
    """The `cluster` fixture's cluster (CRDs, the project's admission) with scheduler options."""
    review, defaults = project_admission()
    crds = sorted((ROOT / "crds").glob("*.yaml"))
    return Cluster(crd_paths=crds, admission=review, defaulter=defaults, workdir=tmp_path / "cluster", **options)


@pytest.fixture
def operator_on(tmp_path: Path) -> Iterator:
    """``operator_on(cluster)``: start the real operator against it; stopped after the test."""
    started: list[Operator] = []

    def start(cluster: Cluster) -> Operator:
        op = Operator(cluster, tmp_path)
        op.start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


def gang_job(name: str, *, max_trials: int, parallelism: int, seconds: float, **trial: Any) -> dict[str, Any]:
    """2-rank trials of gang_trial.py that each "train" ``seconds``; ``trial`` adds trial fields."""
    return {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "objective": {"metric": "ranks", "direction": "maximize"},
            "budget": {"maxTrials": max_trials, "parallelism": parallelism, "maxFailedTrials": 0},
            "algorithm": {"sampler": "random", "seed": 7},
            "earlyStopping": {"pruner": "none"},
            "parameters": [
                {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
                {"name": "seconds", "type": "fixed", "value": seconds},
            ],
            "trial": {
                "command": [sys.executable, GANG, "--seconds=${trialParameters.seconds}"],
                "epochs": 1,
                "workers": 2,
                **trial,
            },
            "metrics": {"intervalSeconds": 0.5, "collector": {"kind": "stdout"}},
        },
    }


def runs_of(cluster: Cluster, name: str) -> dict[str, dict[int, dict[str, Any]]]:
    """Each run of each trial (`<job>-t<N>[-a<run>]`) -> rank -> its process log entry."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for entry in cluster.process_log:
        pod = entry["pod"]
        if pod.startswith(f"{name}-t") and "-w" in pod:
            run, rank = pod.rsplit("-w", 1)
            runs.setdefault(run, {})[int(rank)] = entry
    return runs


def partial_holds(runs: dict[str, dict[int, dict[str, Any]]], workers: int, now: float) -> dict[str, float]:
    """Per run: the longest a rank of it was running while another rank of it had not started
    (was Pending, unbound): from the rank's start to the last peer's start, or to its own end
    if that came first (or its peer never started)."""
    holds = {}
    for run, ranks in runs.items():
        starts = [ranks[r]["started"] if r in ranks else float("inf") for r in range(workers)]
        whole = max(starts)
        holds[run] = max(min(whole, e["finished"] or now) - e["started"] for e in ranks.values())
    return holds


def events_of(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "events", "-n", NS, "-o", "json").stdout)["items"]
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


def ended(cluster: Cluster, name: str) -> bool:
    return job_status(cluster, name).get("phase") in ("Succeeded", "Failed")


def all_processes_ended(cluster: Cluster) -> bool:
    return all(p["finished"] is not None for p in cluster.process_log)


def watch_until_ended(cluster: Cluster, name: str, timeout: float) -> list[dict[str, Any]]:
    """Poll the job's status until it ends; returns every recentTrials entry seen on the way."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not ended(cluster, name):
        assert time.monotonic() < deadline, f"{name} did not end in {timeout} s:\n{cluster.describe()}"
        seen.extend(job_status(cluster, name).get("recentTrials") or [])
        time.sleep(0.2)
    return seen


def assert_all_completed_by_both_ranks(cluster: Cluster, operator: Operator, name: str, n: int) -> dict[str, Any]:
    status = job_status(cluster, name)
    assert status["phase"] == "Succeeded", json.dumps(status)[:4000]
    trials = [t for t in study_trials(operator, name) if t.state.name != "WAITING"]
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state.name == "COMPLETE" and t.value == BOTH_RANKS for t in trials), [
        (t.number, t.state.name, t.value, t.user_attrs.get("fail_reason")) for t in trials
    ]
    assert status["trials"]["completed"] == n and status["trials"]["failed"] == 0
    assert status["trials"]["retried"] == 0, "a requeue is not a retry"
    return status


# -------------------------------------------------------------------------------------------------
# Gangs without a gang scheduler


@pytest.mark.slow
@pytest.mark.horovod
def test_partial_trials_give_their_pods_back_and_every_trial_completes(tmp_path, operator_on):
    """Room for 3 pods, 3 trials of 2 ranks launched at once: trial 0 runs whole, trial 1's rank 0
    runs and waits for a rank 1 that does not fit, trial 2 waits entirely. After
    pendingTimeoutSeconds each partial run gives its pods back and comes back after a back-off."""
    pending_timeout = 3
    with _cluster(tmp_path, node_capacity={"pods": 3}) as cluster:
        operator = operator_on(cluster)
        t0 = time.monotonic()
        # A trial trains 6 s: left alone, trial 1's rank 0 would hold its pod that long and more.
        doc = gang_job("gangs", max_trials=4, parallelism=3, seconds=6, pendingTimeoutSeconds=pending_timeout)
        apply(cluster, doc, tmp_path)
        seen = watch_until_ended(cluster, "gangs", 240)
        wall = time.monotonic() - t0
        cluster.wait_for(lambda: all_processes_ended(cluster), 30, "every rank's process to end")
        status = assert_all_completed_by_both_ranks(cluster, operator, "gangs", 4)
        runs = runs_of(cluster, "gangs")
        events = events_of(cluster, "gangs")
        trials = study_trials(operator, "gangs")

    # Requeues were recorded: on the trials, in the status and as Warning events.
    requeued = {t.number: t.user_attrs.get("requeued_because") or [] for t in trials}
    assert sum(map(len, requeued.values())) >= 1, "the partial trial was never given back"
    assert all(f"pendingTimeoutSeconds={pending_timeout}" in r for rs in requeued.values() for r in rs), requeued
    assert any(s.get("requeues") for s in seen + status["recentTrials"]), "requeues not in the status"
    assert max(len(v) for v in requeued.values()) == max(s.get("requeues", 0) for s in status["recentTrials"])
    warned = [e for e in events if e["reason"] == "TrialRequeued"]
    assert len(warned) == sum(map(len, requeued.values())) and all(e["type"] == "Warning" for e in warned)
    assert any("Too many pods" in (s.get("waiting") or "") for s in seen), "no trial said why it waited"

    # A new run (new pod names) per requeue; no rank's pod started twice. (A run given back
    # before any of its ranks got room started no process at all.)
    expected = {f"gangs-t{n}" + (f"-a{a}" if a else "") for n, rs in requeued.items() for a in range(len(rs) + 1)}
    assert set(runs) <= expected, (sorted(runs), sorted(expected))
    pods = [e["pod"] for e in cluster.process_log if e["pod"].startswith("gangs-t")]
    assert len(pods) == len(set(pods)), "a rank's pod was started twice"
    # No partial run held a pod past the pending timeout (a real node's CPUs or GPUs)...
    holds = partial_holds(runs, 2, time.time())
    assert max(holds.values()) <= pending_timeout + MARGIN_S, holds
    # ... and each trial's last run (the one that completed) had both ranks.
    for t in trials:
        last = f"gangs-t{t.number}" + (f"-a{len(requeued[t.number])}" if requeued[t.number] else "")
        assert sorted(runs[last]) == [0, 1], (last, sorted(runs))
    rounded = {k: round(v, 1) for k, v in holds.items()}
    print(f"\ngangs: {wall:.1f} s wall, requeues {requeued}, partial holds (s) {rounded}")


# -------------------------------------------------------------------------------------------------
# Gangs with Kueue


def queued_seconds(cluster: Cluster, trial: Any, name: str) -> float:
    """From the trial's start in the study (asked, then launched at once) to its first rank's process."""
    first = min(e["started"] for e in cluster.process_log if e["pod"].startswith(f"{name}-t{trial.number}-"))
    return first - trial.datetime_start.timestamp()


@pytest.mark.slow
@pytest.mark.horovod
def test_kueue_admits_whole_trials_and_time_queued_is_not_trial_time(tmp_path, operator_on):
    """A queue with room for one trial's pods, 4 trials launched at once: Kueue's webhook gates
    every rank, its controller admits one whole trial at a time. The last trial waits in the
    queue for three others, longer than trial.timeoutSeconds, and still completes; none is given
    back for waiting gated, although pendingTimeoutSeconds is shorter still."""
    timeout, pending_timeout = 14, 3
    with _cluster(tmp_path, kueue_quota={QUEUE: 2}) as cluster:
        operator = operator_on(cluster)
        t0 = time.monotonic()
        doc = gang_job(
            "queued",
            max_trials=4,
            parallelism=4,
            seconds=5,
            timeoutSeconds=timeout,
            pendingTimeoutSeconds=pending_timeout,
            scheduling={"kueue": {"queueName": QUEUE}},
        )
        apply(cluster, doc, tmp_path)
        gated = cluster.wait_for(
            lambda: next((p for p in trial_pods(cluster, "queued") if p["spec"].get("schedulingGates")), None),
            60,
            "a rank gated by Kueue's webhook",
        )
        seen = watch_until_ended(cluster, "queued", 240)
        wall = time.monotonic() - t0
        cluster.wait_for(lambda: all_processes_ended(cluster), 30, "every rank's process to end")
        assert_all_completed_by_both_ranks(cluster, operator, "queued", 4)
        runs = runs_of(cluster, "queued")
        admitted = list(cluster.kueue.admitted) if cluster.kueue else []
        events = events_of(cluster, "queued")
        trials = study_trials(operator, "queued")

    # The ranks of one run are one pod group of the queue, as the operator labelled them.
    run = gated["metadata"]["name"].rsplit("-w", 1)[0]
    labels, annotations = gated["metadata"]["labels"], gated["metadata"].get("annotations") or {}
    assert (labels[QUEUE_LABEL], labels[GROUP_LABEL], annotations[GROUP_COUNT]) == (QUEUE, run, "2"), gated
    assert gated["spec"]["schedulingGates"] == [{"name": "kueue.x-k8s.io/admission"}]

    # Never a partial group: each run admitted whole, once, and no rank started before that.
    assert sorted(a["group"] for a in admitted) == sorted(runs) == [f"queued-t{n}" for n in range(4)], admitted
    for a in admitted:
        assert a["queue"] == QUEUE and a["size"] == 2
        assert a["pods"] == [f"{a['group']}-w0", f"{a['group']}-w1"], a
        assert all(e["started"] >= a["time"] for e in runs[a["group"]].values()), (a, runs[a["group"]])
    holds = partial_holds(runs, 2, time.time())
    assert max(holds.values()) < 1.0, holds

    # Queued trials said so; waiting gated is neither a requeue nor trial time.
    assert any((s.get("waiting") or "").startswith("worker 0: SchedulingGated") for s in seen), seen[-4:]
    assert not any(t.user_attrs.get("requeued_because") for t in trials), "a gated trial was given back"
    assert not [e for e in events if e["reason"] in ("TrialRequeued", "TrialFailed")]
    queued = {t.number: round(queued_seconds(cluster, t, "queued"), 1) for t in trials}
    assert max(queued.values()) > timeout + MARGIN_S, f"no trial queued longer than its timeout: {queued}"
    print(f"\nqueued: {wall:.1f} s wall, seconds in the queue per trial {queued}")


# -------------------------------------------------------------------------------------------------
# Why a trial waits

MISSING = "registry.example.com/missing/trial:1"
DEFAULT_IMAGE = "openautoglm/trial:0.1"


def waiting_of(cluster: Cluster, name: str, *words: str) -> str | None:
    """Trial 0's `waiting` in the job's status once it holds any of ``words``."""
    recent = job_status(cluster, name).get("recentTrials") or []
    text = recent[0].get("waiting") if recent else None
    return text if text and any(w in text for w in words) else None


def test_waiting_trials_say_why_and_an_unpullable_image_fails_its_trial(tmp_path, operator_on):
    """`nopull` names an image the registry does not have: its trial says ErrImagePull or
    ImagePullBackOff within a pass and fails with it after pendingTimeoutSeconds, not retried.
    `toobig` asks for more CPU than the node has: its trial shows the scheduler's message and a
    Warning event says it once."""
    pending_timeout = 5
    pulls = ("ErrImagePull", "ImagePullBackOff")
    with _cluster(tmp_path, node_capacity={"cpu": "2"}, pullable_images={DEFAULT_IMAGE}) as cluster:
        operator = operator_on(cluster)
        operator.wait_up()
        nopull = gang_job("nopull", max_trials=1, parallelism=1, seconds=1, image=MISSING, retries=1)
        nopull["spec"]["trial"]["pendingTimeoutSeconds"] = pending_timeout
        toobig = gang_job("toobig", max_trials=1, parallelism=1, seconds=1)
        toobig["spec"]["trial"]["resources"] = {"requests": {"cpu": "3", "memory": "256Mi"}, "limits": {"cpu": "3"}}
        apply(cluster, nopull, tmp_path)
        apply(cluster, toobig, tmp_path)
        cluster.wait_for(lambda: len(trial_pods(cluster, "nopull")) == 2, 60, "nopull's pods")
        created = time.monotonic()
        said = cluster.wait_for(lambda: waiting_of(cluster, "nopull", *pulls), 30, "nopull to say why it waits")
        said_after = time.monotonic() - created
        cluster.wait_for(lambda: ended(cluster, "nopull"), 30, "nopull's trial to fail")
        failed_after = time.monotonic() - created
        unschedulable = cluster.wait_for(lambda: waiting_of(cluster, "toobig", "Unschedulable"), 30, "toobig")
        time.sleep(2)  # a few more passes: the Warning is said once, not every pass
        status = job_status(cluster, "nopull")
        (trial,) = study_trials(operator, "nopull")
        events = {n: events_of(cluster, n) for n in ("nopull", "toobig")}
        assert not any(e["pod"].startswith(("nopull-", "toobig-")) for e in cluster.process_log), "nothing ran"

    # The image: said within a pass or two, the trial failed with it after the pending timeout.
    assert said.startswith("worker ") and MISSING in said, said
    assert said_after <= MARGIN_S, f"said {said_after:.1f} s after the pods were created"
    assert pending_timeout - 1 <= failed_after <= pending_timeout + MARGIN_S, failed_after
    reason = trial.user_attrs["fail_reason"]
    assert trial.state.name == "FAIL" and MISSING in reason and any(p in reason for p in pulls), reason
    assert f"pendingTimeoutSeconds={pending_timeout}" in reason
    assert not trial.user_attrs.get("retried_because") and not trial.user_attrs.get("requeued_because")
    assert status["phase"] == "Failed" and status["trials"]["retried"] == 0, status
    assert status["recentTrials"][0]["reason"] == reason
    failed = [e for e in events["nopull"] if e["reason"] == "TrialFailed"]
    assert len(failed) == 1 and MISSING in failed[0]["message"] and failed[0]["type"] == "Warning"

    # The scheduler's message, as kube-scheduler words it, and one Warning event with it.
    assert unschedulable == "worker 0: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.", unschedulable
    warned = [e for e in events["toobig"] if e["reason"] == "TrialWaiting"]
    assert len(warned) == 1 and warned[0]["type"] == "Warning", warned
    assert "0/1 nodes are available: 1 Insufficient cpu." in warned[0]["message"]
    print(f"\nwaiting: image said after {said_after:.1f} s, trial failed after {failed_after:.1f} s")

    # Said once: the kubelet alternates ErrImagePull and ImagePullBackOff with every pull it
    # retries, which must not make a Warning event of every retry.
    pulled = [e["message"] for e in events["nopull"] if e["reason"] == "TrialWaiting"]
    assert len(pulled) == 1 and MISSING in pulled[0], f"the image's trouble warned again and again: {pulled}"

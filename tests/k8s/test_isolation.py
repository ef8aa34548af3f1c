"""Tenants, in the real operator against the emulated cluster: each job's trials isolated by the
NetworkPolicies the operator keeps in step with them (judged by tests/netpol.py against the live
pods), look-alike pods neither adopted nor deleted, and an operator confined to one namespace."""

from __future__ import annotations

import json
import sys
from typing import Any

import kopf
import netpol
from test_operator import NS, TOY, Operator, apply, digits_job, job_status

from openautoglm.k8s import handlers
from openautoglm_trial import contract as c

POLICIES = "networking.k8s.io/v1/networkpolicies"
JOBS = "openautoglm.io/v1alpha1/tuningjobs"
JOB_LABEL = "openautoglm.io/job"
#: The operator as the trial policies know it (its settings' defaults).
OPERATOR_POD = netpol.Pod("openautoglm-system", {"app.kubernetes.io/name": "openautoglm-operator"})
GLOO_PORT = 40123


def _toy_job(name: str, *, max_trials: int, parallelism: int, workers: int = 1, retries: int = 0, namespace=NS):
    doc = digits_job(name, max_trials=max_trials)
    doc["metadata"]["namespace"] = namespace
    spec = doc["spec"]
    spec["budget"] = {"maxTrials": max_trials, "parallelism": parallelism, "maxFailedTrials": 0}
    spec["trial"] = {"command": [sys.executable, TOY], "epochs": 3, "workers": workers, "retries": retries}
    spec["metrics"] = {"intervalSeconds": 0.5, "collector": {"kind": "native"}}
    spec["objective"] = {"metric": "score", "direction": "maximize"}
    spec["earlyStopping"] = {"pruner": "none"}
    spec["parameters"] = [
        {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
        {"name": "epoch_seconds", "type": "fixed", "value": 1.0},
    ]
    spec.pop("warmStart")
    return doc


def _owned(cluster, plural: str, job: str, namespace: str = NS) -> list[dict[str, Any]]:
    return [o for o in cluster.list(plural, namespace) if (o["metadata"].get("labels") or {}).get(JOB_LABEL) == job]


def _snapshot(cluster, job: str) -> tuple[list[dict], list[dict]]:
    """The job's pods and policies read together, atomically (the cluster's loop)."""

    def read(api):
        pods = api.list(api.type_of("v1/pods"), NS, lambda o: (o["metadata"].get("labels") or {}).get(JOB_LABEL) == job)
        policies = api.list(api.type_of(POLICIES), NS, lambda o: True)
        return json.loads(json.dumps(pods)), json.loads(json.dumps(policies))

    return cluster.call(read)


def _finished(cluster, name: str, namespace: str = NS) -> bool:
    obj = cluster.get(JOBS, namespace, name) or {}
    return (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def test_trial_policies_follow_the_trials_and_isolate_them(cluster, tmp_path):
    """While two trials run, each trial's pods are selected by its own policy and the job's:
    ranks of one trial reach each other on the rendezvous and a Gloo port, the other trial and
    another job's pods reach neither, the operator reaches /metrics only. A released trial's
    policy goes with it; deleting the job leaves no policy, pod or Service."""
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        apply(cluster, _toy_job("isolated", max_trials=4, parallelism=2, workers=2), tmp_path)
        apply(cluster, _toy_job("neighbour", max_trials=1, parallelism=1), tmp_path)
        checked: list[tuple[str, str]] = []

        def two_trials_running() -> bool:
            pods, policies = _snapshot(cluster, "isolated")
            by_trial: dict[str, list[dict]] = {}
            for p in pods:
                by_trial.setdefault(p["metadata"]["labels"]["openautoglm.io/trial"], []).append(p)
            names = {p["metadata"]["name"] for p in policies}
            # A trial's policy is there before its first pod and goes after its last.
            for number in by_trial:
                assert f"isolated-t{number}-peers" in names, (number, names)
            full = sorted(n for n, ps in by_trial.items() if len(ps) == 2)
            if len(full) < 2 or "isolated-trials" not in names:
                return False
            namespaces = {
                o["metadata"]["name"]: o["metadata"].get("labels") or {} for o in cluster.list("v1/namespaces")
            }
            a0, a1 = (netpol.Pod.of(p) for p in sorted(by_trial[full[0]], key=lambda p: p["metadata"]["name"]))
            b0 = netpol.Pod.of(by_trial[full[1]][0])
            allowed = lambda src, dst, port: netpol.ingress_allowed(policies, namespaces, src, dst, port)  # noqa: E731
            for port in (c.DEFAULT_RENDEZVOUS_PORT, GLOO_PORT):
                assert allowed(a1, a0, port) and allowed(a0, a1, port)
                assert not allowed(b0, a0, port) and not allowed(a0, b0, port)
                assert not allowed(OPERATOR_POD, a0, port)
                assert not allowed(netpol.Pod(NS, {JOB_LABEL: "neighbour", "openautoglm.io/trial": full[0]}), a0, port)
            assert allowed(OPERATOR_POD, a0, 9090) and not allowed(b0, a0, 9090)
            checked.append((full[0], full[1]))
            return True

        cluster.wait_for(two_trials_running, 180, "two trials of 'isolated' running at once")
        cluster.wait_for(lambda: _finished(cluster, "isolated"), 240, "the job to finish")
        assert job_status(cluster, "isolated")["trials"]["completed"] == 4
        # every trial released: its policy gone, the job's stays while the job does
        cluster.wait_for(
            lambda: [p["metadata"]["name"] for p in _owned(cluster, POLICIES, "isolated")] == ["isolated-trials"],
            30,
            "only the job's policy",
        )
        policy = _owned(cluster, POLICIES, "isolated")[0]
        job = cluster.get(JOBS, NS, "isolated")
        assert policy["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
        cluster.kubectl("delete", "tj", "isolated", "-n", NS, "--wait=false")
        cluster.wait_for(lambda: cluster.get(JOBS, NS, "isolated") is None, 60, "the job to go")
        cluster.wait_for(
            lambda: not any(_owned(cluster, kind, "isolated") for kind in (POLICIES, "v1/pods", "v1/services")),
            30,
            "nothing of the job left",
        )
        cluster.wait_for(lambda: _finished(cluster, "neighbour"), 120, "the other job to finish")
        assert [p["metadata"]["name"] for p in _owned(cluster, POLICIES, "neighbour")] == ["neighbour-trials"]
    finally:
        operator.stop()


def test_the_harness_garbage_collects_policies_with_their_owner(cluster):
    """No operator: a TuningJob (so no finalizer) owning a NetworkPolicy; deleting the job takes the
    policy with it, as the cluster's garbage collector does."""
    job = cluster.create(JOBS, _toy_job("owner", max_trials=1, parallelism=1))
    ref = {"apiVersion": "openautoglm.io/v1alpha1", "kind": "TuningJob", "name": "owner", "uid": job["metadata"]["uid"]}
    cluster.create(
        POLICIES,
        {"metadata": {"name": "owner-trials", "namespace": NS, "ownerReferences": [ref]}, "spec": {"podSelector": {}}},
    )
    cluster.delete(JOBS, NS, "owner")
    cluster.wait_for(lambda: cluster.get(POLICIES, NS, "owner-trials") is None, 10, "the policy to be collected")


def _look_alike(name: str, trial: int, job: str, owner: dict | None = None) -> dict:
    """A pod anyone allowed to create pods could make: the job's labels (and a trial's name), no
    owner or another, and a termination message that says it completed with a score of 999."""
    forged = json.dumps({"status": "completed", "metrics": {"score": 999.0}, "best": {"score": 999.0}, "epochs": 3})
    code = f"import os; open(os.environ['OPENAUTOGLM_TERMINATION_LOG'], 'w').write({forged!r})"
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {JOB_LABEL: job, "openautoglm.io/trial": str(trial), "openautoglm.io/rank": "0"},
            "ownerReferences": [owner] if owner else [],
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "worker", "image": "python", "command": [sys.executable, "-c", code]}],
        },
    }


def test_look_alike_pods_are_neither_adopted_nor_deleted(cluster, tmp_path):
    """Before the job exists, someone creates a pod under trial 0's name and one labelled as trial
    1, both 'completed' with a forged score of 999; while it runs, another as trial 2. The first
    refuses trial 0's launch (run again as -a1, trial.retries), none is read as a result, each is
    named in a Warning event, none is deleted (not even with the job), and the job ends with
    exactly its 3 trials, all real."""
    owner = cluster.create("v1/configmaps", {"metadata": {"name": "stranger", "namespace": NS}})
    stranger = {"apiVersion": "v1", "kind": "ConfigMap", "name": "stranger", "uid": owner["metadata"]["uid"]}
    cluster.create("v1/pods", _look_alike("squat-t0-w0", 0, "squat"))
    cluster.create("v1/pods", _look_alike("forged-t1", 1, "squat", owner=stranger))
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        apply(cluster, _toy_job("squat", max_trials=3, parallelism=1, retries=1), tmp_path)
        cluster.wait_for(lambda: job_status(cluster, "squat").get("trials", {}).get("finished", 0) >= 1, 120, "a trial")
        cluster.create("v1/pods", _look_alike("forged-t2", 2, "squat"))
        cluster.wait_for(lambda: _finished(cluster, "squat"), 240, "the job to finish")
        status = job_status(cluster, "squat")
        assert status["phase"] == "Succeeded" and status["trials"]["completed"] == 3, status
        assert status["trials"]["finished"] == 3 and status["bestTrial"]["value"] < 2, status
        # the operator's pods (the kubelet also ran the look-alikes, created by the test)
        real = [p["pod"] for p in cluster.process_log if p["pod"].startswith("squat-t") and p["pod"] != "squat-t0-w0"]
        assert sorted(real) == ["squat-t0-a1-w0", "squat-t1-w0", "squat-t2-w0"], real
        events = json.loads(cluster.kubectl("get", "events", "-n", NS, "-o", "json").stdout)["items"]
        warnings = [e["message"] for e in events if e.get("reason") == "LookAlikePod" and e.get("type") == "Warning"]
        for pod in ("forged-t1", "forged-t2"):
            assert sum(pod in m for m in warnings) == 1, warnings
        assert any("ConfigMap/stranger" in m for m in warnings)
        retried = [e["message"] for e in events if e.get("reason") == "TrialRetried"]
        assert any("squat-t0-w0" in m and "not owned" in m for m in retried), retried
        cluster.kubectl("delete", "tj", "squat", "-n", NS, "--wait=false")
        cluster.wait_for(lambda: cluster.get(JOBS, NS, "squat") is None, 60, "the job to go")
        cluster.wait_for(lambda: not _owned(cluster, POLICIES, "squat"), 30, "the job's policies to go")
        left = sorted(p["metadata"]["name"] for p in _owned(cluster, "v1/pods", "squat"))
        assert left == ["forged-t1", "forged-t2", "squat-t0-w0"], left
    finally:
        operator.stop()


def test_an_operator_given_a_namespace_leaves_the_others_alone(cluster, tmp_path):
    """`openautoglm operator --namespace team-a` (deploy/namespaced): a job in team-a runs to its
    end; the same job in team-b is not touched (no status, no pod) while it does."""
    for ns in ("team-a", "team-b"):
        cluster.create("v1/namespaces", {"metadata": {"name": ns}})
    operator = Operator(cluster, tmp_path, args=("--namespace", "team-a"))
    operator.start()
    try:
        for ns in ("team-a", "team-b"):
            (tmp_path / ns).mkdir()
            apply(cluster, _toy_job("same-name", max_trials=2, parallelism=2, namespace=ns), tmp_path / ns)
        cluster.wait_for(lambda: _finished(cluster, "same-name", "team-a"), 180, "the team-a job to finish")
        done = cluster.get(JOBS, "team-a", "same-name")["status"]
        assert done["phase"] == "Succeeded" and done["trials"]["completed"] == 2
        untouched = cluster.get(JOBS, "team-b", "same-name")
        assert "status" not in untouched or not untouched["status"], untouched["status"]
        assert not untouched["metadata"].get("finalizers"), "kopf never saw it"
        assert not cluster.pods("team-b") and not cluster.list(POLICIES, "team-b")
        assert [p["metadata"]["name"] for p in cluster.list(POLICIES, "team-a")] == ["same-name-trials"]
    finally:
        operator.stop()
    assert "Traceback" not in operator.log.read_text()


def test_named_namespaces_turn_kopfs_cluster_wide_scanning_off(monkeypatch):
    """What lets deploy/namespaced do without a ClusterRole: given only named namespaces, kopf
    neither lists nor watches namespaces and CRDs; a glob still needs (and gets) the scanning."""
    for names, disabled in (([], False), (["team-a", "team-b"], True), (["team-*"], False)):
        monkeypatch.setattr(handlers, "_NAMESPACES", names)
        settings = kopf.OperatorSettings()
        handlers.configure(settings=settings)
        assert settings.scanning.disabled is disabled, names

"""The harness's scheduler step, scheduling gates, image pulls and Kueue stand-in (issue 24).

Each test runs plain pods as real processes that wait for a file the test writes, so which pod
runs when is decided by the test, not by timing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster, KubectlError

NS = "default"
QUEUE = "kueue.x-k8s.io/queue-name"
GROUP = "kueue.x-k8s.io/pod-group-name"
COUNT = "kueue.x-k8s.io/pod-group-total-count"
GATE = "kueue.x-k8s.io/admission"
WAIT_S = 20


@pytest.fixture
def go(tmp_path: Path) -> Path:
    """Where the test drops `<pod>.go` to let that pod's process end (exit 0)."""
    path = tmp_path / "go"
    path.mkdir()
    return path


def waiting_pod(name: str, go: Path, *, image: str = "python:3.11", **extra: Any) -> dict[str, Any]:
    code = f"import os, time\nwhile not os.path.exists({str(go / (name + '.go'))!r}): time.sleep(0.05)\n"
    container: dict[str, Any] = {"name": "main", "image": image, "command": ["python", "-c", code]}
    container.update(extra.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **extra.pop("metadata", {})},
        "spec": {"restartPolicy": "Never", "containers": [container], **extra},
    }


def release(go: Path, *names: str) -> None:
    for name in names:
        (go / f"{name}.go").touch()


def pod(c: Cluster, name: str) -> dict[str, Any]:
    return c.get("v1/pods", NS, name) or {}


def phase(c: Cluster, name: str) -> str | None:
    return (pod(c, name).get("status") or {}).get("phase")


def scheduled(c: Cluster, name: str) -> dict[str, Any]:
    """The pod's PodScheduled condition ({} if none)."""
    conditions = (pod(c, name).get("status") or {}).get("conditions") or []
    return next((cond for cond in conditions if cond.get("type") == "PodScheduled"), {})


def waiting(c: Cluster, name: str) -> dict[str, Any]:
    statuses = (pod(c, name).get("status") or {}).get("containerStatuses") or [{}]
    return (statuses[0].get("state") or {}).get("waiting") or {}


def started(c: Cluster, name: str) -> bool:
    return any(e["pod"] == name for e in c.process_log)


def assert_held_back(c: Cluster, name: str, reason: str, message: str) -> None:
    cond = scheduled(c, name)
    assert (cond.get("status"), cond.get("reason"), cond.get("message")) == ("False", reason, message), cond
    assert phase(c, name) == "Pending" and not pod(c, name)["spec"].get("nodeName") and not started(c, name)


def run(c: Cluster, *manifests: dict[str, Any]) -> None:
    for manifest in manifests:
        c.kubectl("create", "-f", "-", input=json.dumps(manifest))


# -------------------------------------------------------------------------------------------------
# Node capacity


@pytest.fixture
def three_pods(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(workdir=tmp_path / "c", dns=False, node_capacity={"pods": 3}) as c:
        yield c


def test_a_pod_that_does_not_fit_waits_unschedulable_until_a_pod_ends_then_in_creation_order(three_pods, go):
    c = three_pods
    # Created in this order, named against it: the queue follows creation, not names.
    names = ["p3", "p2", "p1", "p0", "late"]
    run(c, *(waiting_pod(n, go) for n in names))
    c.wait_for(lambda: all(phase(c, n) == "Running" for n in names[:3]), WAIT_S, "three pods to run")
    full = "0/1 nodes are available: 1 Too many pods."
    c.wait_for(lambda: scheduled(c, "p0").get("reason") == "Unschedulable", WAIT_S, "p0 to be unschedulable")
    for name in ("p0", "late"):
        assert_held_back(c, name, "Unschedulable", full)
    node = c.get("v1/nodes", None, "kmock-node")
    assert node["status"]["capacity"]["pods"] == node["status"]["allocatable"]["pods"] == "3"

    release(go, "p2")  # one place frees: the first pod created of those waiting gets it
    c.wait_for(lambda: phase(c, "p0") == "Running", WAIT_S, "p0 to run once p2 ended")
    assert phase(c, "p2") == "Succeeded" and scheduled(c, "p0")["status"] == "True"
    assert_held_back(c, "late", "Unschedulable", full)
    [p2] = [e for e in c.process_log if e["pod"] == "p2"]
    [p0] = [e for e in c.process_log if e["pod"] == "p0"]
    assert p0["started"] >= p2["finished"]

    c.delete("v1/pods", NS, "p3")  # a deleted pod frees its place too, once its process has ended
    c.wait_for(lambda: phase(c, "late") == "Running", WAIT_S, "late to run once p3 is deleted")
    [p3] = [e for e in c.process_log if e["pod"] == "p3"]
    [late] = [e for e in c.process_log if e["pod"] == "late"]
    assert p3["finished"] is not None and late["started"] >= p3["finished"]
    release(go, *names)
    c.wait_for(lambda: all(phase(c, n) == "Succeeded" for n in names if n != "p3"), WAIT_S, "all to succeed")


def test_requests_or_limits_count_against_cpu_memory_and_extended_resources(tmp_path, go):
    capacity = {"cpu": "1", "memory": "1Gi"}
    with Cluster(workdir=tmp_path / "c", dns=False, node_capacity=capacity) as c:
        big = waiting_pod("big", go, container={"resources": {"limits": {"cpu": "600m", "memory": "512Mi"}}})
        run(c, big)
        c.wait_for(lambda: phase(c, "big") == "Running", WAIT_S, "big to run")
        node = c.get("v1/nodes", None, "kmock-node")["status"]
        assert node["capacity"]["cpu"] == "1" and node["allocatable"]["memory"] == "1Gi"
        assert int(node["capacity"]["pods"]) == 110  # not given: the kubelet's default
        run(
            c,
            waiting_pod("both", go, container={"resources": {"requests": {"cpu": "500m", "memory": "600Mi"}}}),
            waiting_pod("cpu", go, container={"resources": {"requests": {"cpu": "0.5"}, "limits": {"cpu": "2"}}}),
            waiting_pod("small", go, container={"resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}),
            waiting_pod("gpu", go, container={"resources": {"limits": {"nvidia.com/gpu": "1"}}}),
        )
        # A pod that does not fit holds no one back: the small one runs beside big.
        c.wait_for(lambda: phase(c, "small") == "Running", WAIT_S, "small to run beside big")
        c.wait_for(lambda: scheduled(c, "gpu").get("reason"), WAIT_S, "gpu to be tried")
        two = "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
        assert_held_back(c, "both", "Unschedulable", two)
        assert_held_back(c, "cpu", "Unschedulable", "0/1 nodes are available: 1 Insufficient cpu.")
        assert_held_back(c, "gpu", "Unschedulable", "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")

        release(go, "big")
        c.wait_for(lambda: phase(c, "both") == "Running", WAIT_S, "both to run once big ended")
        assert_held_back(c, "cpu", "Unschedulable", "0/1 nodes are available: 1 Insufficient cpu.")
        release(go, "both", "small")
        c.wait_for(lambda: phase(c, "cpu") == "Running", WAIT_S, "cpu to run once both ended")
        release(go, "cpu")
        c.wait_for(lambda: phase(c, "cpu") == "Succeeded", WAIT_S, "cpu to succeed")
        assert_held_back(c, "gpu", "Unschedulable", "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")


# -------------------------------------------------------------------------------------------------
# Scheduling gates


def test_a_gated_pod_is_bound_once_its_gates_are_removed_and_gates_cannot_be_added(tmp_path, go):
    gates = [{"name": "example.com/a"}, {"name": "example.com/b"}]
    with Cluster(workdir=tmp_path / "c", dns=False) as c:
        run(c, waiting_pod("gated", go, schedulingGates=gates))
        c.wait_for(lambda: scheduled(c, "gated"), WAIT_S, "gated to be seen by the scheduler")
        gated = ("SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates")
        assert_held_back(c, "gated", *gated)

        with pytest.raises(KubectlError) as refused:
            c.kubectl(
                "patch", "pod", "gated", "--type=json",
                "-p", json.dumps([{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": "x"}}]),
            )  # fmt: skip
        assert (
            "spec.schedulingGates[2].name: Forbidden: only deletion is allowed, but found new scheduling gate 'x'"
            in refused.value.stderr
        )
        c.kubectl("patch", "pod", "gated", "--type=merge", "-p", json.dumps({"spec": {"schedulingGates": gates[1:]}}))
        assert pod(c, "gated")["spec"]["schedulingGates"] == gates[1:]
        time.sleep(0.5)  # a few kubelet passes (every 0.2 s): one gate left still holds it
        assert_held_back(c, "gated", *gated)

        c.kubectl("patch", "pod", "gated", "--type=json", "-p", '[{"op": "remove", "path": "/spec/schedulingGates"}]')
        c.wait_for(lambda: phase(c, "gated") == "Running", WAIT_S, "gated to run once ungated")
        assert scheduled(c, "gated")["status"] == "True" and pod(c, "gated")["spec"]["nodeName"] == "kmock-node"
        release(go, "gated")
        c.wait_for(lambda: phase(c, "gated") == "Succeeded", WAIT_S, "gated to succeed")


# -------------------------------------------------------------------------------------------------
# Image pulls


def test_an_image_the_cluster_cannot_pull_keeps_its_pod_pending_in_image_pull_back_off(tmp_path, go):
    known = ["python", "-c", "print('from the image')"]
    with Cluster(workdir=tmp_path / "c", dns=False, pullable_images={"python:3.11"}, images={"trial:1": known}) as c:
        run(c, waiting_pod("lost", go, image="registry.example/nosuch:1"), waiting_pod("ok", go))
        run(c, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "entry"}, "spec": {
            "restartPolicy": "Never", "containers": [{"name": "main", "image": "trial:1"}]}})  # fmt: skip
        c.wait_for(lambda: waiting(c, "lost").get("reason") == "ErrImagePull", WAIT_S, "ErrImagePull")
        message = waiting(c, "lost")["message"]
        assert 'failed to pull and unpack image "registry.example/nosuch:1"' in message and "not found" in message
        c.wait_for(lambda: waiting(c, "lost").get("reason") == "ImagePullBackOff", WAIT_S, "ImagePullBackOff")
        assert waiting(c, "lost")["message"] == 'Back-off pulling image "registry.example/nosuch:1"'
        # Bound to the node (the pull is the kubelet's), and Pending with no process.
        lost = pod(c, "lost")
        assert lost["spec"]["nodeName"] == "kmock-node" and scheduled(c, "lost")["status"] == "True"
        assert lost["status"]["phase"] == "Pending" and not started(c, "lost")
        # The images it was given (`images=`) and the pullable ones run.
        c.wait_for(lambda: phase(c, "entry") == "Succeeded", WAIT_S, "the entrypoint image to run")
        assert "from the image" in c.pod_log("entry")
        c.wait_for(lambda: phase(c, "ok") == "Running", WAIT_S, "ok to run")
        release(go, "ok", "lost")
        c.wait_for(lambda: phase(c, "ok") == "Succeeded", WAIT_S, "ok to succeed")
        time.sleep(1)  # a released process would have ended by now: this one never started
        assert phase(c, "lost") == "Pending" and not started(c, "lost")
        assert waiting(c, "lost")["reason"] in ("ErrImagePull", "ImagePullBackOff")


# -------------------------------------------------------------------------------------------------
# The Kueue stand-in


def member(name: str, go: Path, queue: str, group: str | None = None, size: int = 1) -> dict[str, Any]:
    labels = {QUEUE: queue, **({GROUP: group} if group else {})}
    annotations = {COUNT: str(size)} if group else {}
    return waiting_pod(name, go, metadata={"labels": labels, "annotations": annotations})


def gated_by_kueue_obj(obj: dict[str, Any]) -> bool:
    return {"name": GATE} in (obj.get("spec") or {}).get("schedulingGates", [])


def gated_by_kueue(c: Cluster, name: str) -> bool:
    return gated_by_kueue_obj(pod(c, name))


def most_running_at_once(c: Cluster, names: set[str]) -> int:
    """The most of these pods' processes that ever ran at the same time (from the process log)."""
    edges = []
    for e in c.process_log:
        if e["pod"] in names:
            edges += [(e["started"], 1), (e["finished"] or float("inf"), -1)]
    running = most = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += step
        most = max(most, running)
    return most


def first_revisions(c: Cluster, test: Any) -> dict[str, int]:
    """Pod name -> the first revision (in the API server's event history) at which `test(pod)` held."""

    def read(api: Any) -> dict[str, int]:
        found: dict[str, int] = {}
        for event in api.store.history:
            if event.storage == ("", "pods") and event.type != "DELETED" and test(event.object):
                found.setdefault(event.object["metadata"]["name"], event.revision)
        return found

    return c.call(read)


def test_kueue_stand_in_admits_whole_groups_within_quota_in_fifo_order(tmp_path, go):
    with Cluster(workdir=tmp_path / "c", dns=False, kueue_quota={"q": 2}) as c:
        assert c.kueue is not None
        run(c, member("g1-a", go, "q", "g1", 2))
        created = pod(c, "g1-a")
        assert created["metadata"]["labels"]["kueue.x-k8s.io/managed"] == "true" and gated_by_kueue(c, "g1-a")
        c.wait_for(lambda: scheduled(c, "g1-a"), WAIT_S, "g1-a to be seen")
        assert_held_back(c, "g1-a", "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates")
        assert c.kueue.admitted == []  # half a group is not admitted

        run(c, member("g1-b", go, "q", "g1", 2), member("g2-a", go, "q", "g2", 2), member("s1", go, "q"))
        run(c, member("other", go, "nosuch"), waiting_pod("plain", go))  # a queue not configured; no queue
        c.wait_for(lambda: phase(c, "g1-a") == phase(c, "g1-b") == "Running", WAIT_S, "g1 to run")
        c.wait_for(lambda: phase(c, "plain") == "Running", WAIT_S, "a pod with no queue to run ungated")
        assert [a["group"] for a in c.kueue.admitted] == ["g1"] and c.kueue.admitted[0]["pods"] == ["g1-a", "g1-b"]
        assert all(gated_by_kueue(c, n) and not started(c, n) for n in ("g2-a", "s1", "other"))

        # g1 ends: g2 is still incomplete (not queued yet), so the single pod behind it goes.
        release(go, "g1-a", "g1-b")
        c.wait_for(lambda: phase(c, "s1") == "Running", WAIT_S, "s1 to be admitted once g1 ended")
        # g2 complete now needs 2 with 1 in use: it waits, and (StrictFIFO) s2 behind it waits too.
        run(c, member("g2-b", go, "q", "g2", 2), member("s2", go, "q"))
        c.wait_for(lambda: scheduled(c, "s2"), WAIT_S, "s2 to be seen")
        assert [a["group"] for a in c.kueue.admitted] == ["g1", "pod/s1"]
        assert all(gated_by_kueue(c, n) and not started(c, n) for n in ("g2-a", "g2-b", "s2"))

        release(go, "s1")
        c.wait_for(lambda: phase(c, "g2-a") == phase(c, "g2-b") == "Running", WAIT_S, "g2 to run once s1 ended")
        assert gated_by_kueue(c, "s2") and not started(c, "s2")
        c.delete("v1/pods", NS, "g2-a")  # quota comes back pod by pod, deletion included
        c.wait_for(lambda: phase(c, "s2") == "Running", WAIT_S, "s2 to run once a g2 pod is gone")
        release(go, "g2-b", "s2", "plain")
        c.wait_for(lambda: phase(c, "s2") == "Succeeded", WAIT_S, "s2 to succeed")

        assert [a["group"] for a in c.kueue.admitted] == ["g1", "pod/s1", "g2", "pod/s2"]
        times = [a["time"] for a in c.kueue.admitted]
        assert times == sorted(times)
        assert gated_by_kueue(c, "other") and not started(c, "other")
        # Within quota all along (g2-a left out: the stand-in, as told, frees a deleted pod's share
        # at once, while the kubelet still stops its process).
        queued = {e["pod"] for e in c.process_log} - {"plain", "g2-a"}
        assert queued == {"g1-a", "g1-b", "s1", "g2-b", "s2"} and most_running_at_once(c, queued) <= 2
        # Never a partial group: each group's processes all started after its admission.
        # And in the API: every pod of a group lost its gate before any of them was bound.
        ungated = first_revisions(c, lambda p: QUEUE in p["metadata"].get("labels", {}) and not gated_by_kueue_obj(p))
        bound = first_revisions(c, lambda p: p["spec"].get("nodeName"))
        for admission in c.kueue.admitted:
            runs = [e for e in c.process_log if e["pod"] in admission["pods"]]
            assert len(runs) == admission["size"] and all(e["started"] >= admission["time"] for e in runs)
            assert max(ungated[n] for n in admission["pods"]) < min(bound[n] for n in admission["pods"])

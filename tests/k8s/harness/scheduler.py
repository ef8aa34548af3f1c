"""The scheduler step of the kubelet simulator: which pending pods are bound to the one node.

It stands for the kube-scheduler's filter step on a single node, nothing more:

- scheduling gates: a pod with a non-empty `spec.schedulingGates` is not considered; it reads
  PodScheduled=False, reason `SchedulingGated`, as the real scheduler writes it;
- node capacity (`Cluster(node_capacity=...)`, None: nothing is enforced, today's behaviour): the
  NodeResourcesFit filter. The pods bound and not finished (phase neither Succeeded nor Failed)
  hold their containers' requests -- a deleted one until its process has ended, as a real node
  holds a Terminating pod's share until its containers stop -- (a resource's request, else its limit, as the API
  server defaults it; an init container's if larger, as the scheduler counts it); a pod fits when
  one more pod stays within `pods` and each resource it requests within what is left. A pod that
  does not fit stays Pending and unbound with PodScheduled=False, reason `Unschedulable` and the
  scheduler's message (`0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods.`). Only the
  resources named in the capacity are counted, plus any extended resource (`vendor/name`) a pod
  requests, which a node without it does not have.

Pending pods are tried in creation order on every kubelet pass, each on its own (a pod that does
not fit does not hold back a smaller one behind it, as in the real scheduler's queue); room that
frees (a pod ends or is deleted) is given on the next pass.

Not simulated: more than one node, scoring, affinity, taints and tolerations, topology spread,
priorities and preemption (the real message adds a `preemption: ...` sentence; this one does not),
the scheduler's back-off, and FailedScheduling events.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import apimachinery as am
from apitypes import Obj

#: What the node reports when a resource is not given (the machine's own, and the kubelet's 110 pods).
DEFAULT_PODS: Final = 110
GATED_REASON: Final = "SchedulingGated"
GATED_MESSAGE: Final = "Scheduling is blocked due to non-empty scheduling gates"
UNSCHEDULABLE_REASON: Final = "Unschedulable"
_QUANTITY: Final = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES: Final = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "2Gi", 3) as a number; ValueError if it is not one."""
    m = _QUANTITY.match(str(value))
    if not m or m.group(2) not in _SUFFIXES:
        raise ValueError(f"bad quantity {value!r}")
    return float(m.group(1)) * _SUFFIXES[m.group(2)]


def pod_requests(pod: Obj) -> dict[str, float]:
    """What a pod asks of a node: per resource, the sum of its containers' requests (a request,
    else the limit) or the largest init container's, whichever is more."""
    spec = pod.get("spec") or {}

    def of(container: Mapping[str, Any]) -> dict[str, float]:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {name: quantity(value) for name, value in merged.items()}

    total: dict[str, float] = {}
    for container in spec.get("containers") or []:
        for name, value in of(container).items():
            total[name] = total.get(name, 0.0) + value
    for container in spec.get("initContainers") or []:
        for name, value in of(container).items():
            total[name] = max(total.get(name, 0.0), value)
    return total


def gated(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("schedulingGates"))


class NodeCapacity:
    """The node's capacity and the fit check against the pods bound to it."""

    def __init__(self, capacity: Mapping[str, Any] | None, machine: Mapping[str, str]):
        #: resource -> amount enforced (empty: nothing enforced)
        self.enforced = {name: quantity(value) for name, value in (capacity or {}).items()}
        #: what the Node's status reports: the machine's values under the given ones
        self.reported = {**machine, **{name: str(value) for name, value in (capacity or {}).items()}}

    def misfits(self, pod: Obj, bound: Iterable[Mapping[str, float]]) -> list[str]:
        """The scheduler's reasons the pod does not fit beside the pods holding `bound` requests
        (pod_requests of each; empty: it fits)."""
        if not self.enforced:
            return []
        bound = list(bound)
        reasons = []
        if "pods" in self.enforced and len(bound) + 1 > self.enforced["pods"]:
            reasons.append("Too many pods")
        used: dict[str, float] = {}
        for requests in bound:
            for name, value in requests.items():
                used[name] = used.get(name, 0.0) + value
        for name, wanted in sorted(pod_requests(pod).items()):
            if name == "pods" or wanted <= 0:
                continue
            if name in self.enforced or "/" in name:
                if wanted > self.enforced.get(name, 0.0) - used.get(name, 0.0):
                    reasons.append(f"Insufficient {name}")
        return reasons


def unschedulable_message(reasons: Iterable[str], nodes: int = 1) -> str:
    """The kube-scheduler's FitError text: reasons counted over nodes, sorted, joined."""
    counted = sorted(f"{nodes} {reason}" for reason in set(reasons))
    return f"0/{nodes} nodes are available: {', '.join(counted)}."


def mark_not_scheduled(pod: Obj, reason: str, message: str) -> bool:
    """Set PodScheduled=False (reason, message) in `pod`'s status in place; False if it already said so."""
    status = pod.setdefault("status", {})
    conditions = status.setdefault("conditions", [])
    current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
    if current and (current.get("status"), current.get("reason"), current.get("message")) == (
        "False",
        reason,
        message,
    ):
        return False
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "lastProbeTime": None,
        "lastTransitionTime": am.now_rfc3339(),
        "reason": reason,
        "message": message,
    }
    status["conditions"] = [c for c in conditions if c.get("type") != "PodScheduled"] + [condition]
    status.setdefault("phase", "Pending")
    return True


def machine_capacity(memory_bytes: int) -> dict[str, str]:
    """What the node reports when no capacity is given: this machine's CPUs and memory, 110 pods."""
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_bytes // 1024}Ki", "pods": str(DEFAULT_PODS)}

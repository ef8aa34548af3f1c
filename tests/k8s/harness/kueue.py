"""A small stand-in for Kueue's plain-pod integration with pod groups (`Cluster(kueue_quota=...)`).

What a cluster that queues batch work with Kueue does to the pods a client creates, reduced to
what a client can see of it:

- the webhook (`mutate`, a mutating admission hook on every pod create): a pod labelled
  `kueue.x-k8s.io/queue-name` gets the scheduling gate `kueue.x-k8s.io/admission` and the label
  `kueue.x-k8s.io/managed: "true"`, whatever the queue (a queue that is not configured keeps its
  pods gated, as Kueue does with no LocalQueue of that name);
- the controller (`sync`, on every pod event and periodically): a group is the pods of one
  namespace with the same `kueue.x-k8s.io/pod-group-name` label (a pod without it is a group of
  one), of the size its `kueue.x-k8s.io/pod-group-total-count` annotation says. Once every pod of
  a group exists, the group queues in its queue; the queues admit in creation order (the group's
  first pod), the head of a queue blocking those behind it as a StrictFIFO ClusterQueue does,
  when the pods of the groups already admitted that are neither finished nor deleted, plus this
  group's size, are within the queue's quota (a number of pods). Admission removes the gate from
  every pod of the group in one pass (as the system, before the kubelet's next pass can bind any
  of them) and is recorded in `admitted`. Quota is released pod by pod as they finish or go. A
  group whose admitted pods have all ended may queue again under the same name; a pod created
  into a group while it is admitted is ungated at once (Kueue's replacement of a failed pod). A
  group larger than its queue's quota never fits and is passed over.

Not simulated: Kueue's objects (Workload, LocalQueue, ClusterQueue, ResourceFlavor), resources
other than a pod count, cohorts and borrowing, preemption, BestEffortFIFO, waitForPodsReady and
eviction, the `kueue.x-k8s.io/managed` finalizer Kueue puts on a group's pods, its
namespaceSelector (every namespace but kube-system is managed here), and its validation of the
group labels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import traceback
from collections.abc import Mapping
from typing import Any, Final

from apitypes import Event, Obj, ResourceType

logger = logging.getLogger("k8s.kueue")

QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
GROUP_LABEL: Final = "kueue.x-k8s.io/pod-group-name"
COUNT_ANNOTATION: Final = "kueue.x-k8s.io/pod-group-total-count"
MANAGED_LABEL: Final = "kueue.x-k8s.io/managed"
GATE: Final = "kueue.x-k8s.io/admission"
SYNC_PERIOD_S: Final = 0.2
UNMANAGED_NAMESPACES: Final = ("kube-system",)


@dataclasses.dataclass
class Group:
    namespace: str
    name: str
    queue: str
    size: int
    pods: list[Obj]
    #: the revision that created its first pod: its place in the queue
    created: float


class KueueStandIn:
    """The webhook and the controller, on the emulated API server's loop; see the module docstring."""

    def __init__(self, api: Any, quota: Mapping[str, int]):
        self.api = api
        self.quota = dict(quota)
        self.pods_type: ResourceType = api.type_of("v1/pods")
        #: every admission, in order: {namespace, group, queue, size, pods (names), time (time.time())}
        self.admitted: list[dict[str, Any]] = []
        #: (namespace, group) -> uids of the pods of its current admission
        self._active: dict[tuple[str, str], set[str]] = {}
        self._created: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.errors: list[str] = []

    # ------------------------------------------------------------------------------------------
    # Lifecycle

    def start(self) -> None:
        self.api.mutators.append(self.mutate)
        self.api.listeners.append(self._on_event)
        self._task = asyncio.create_task(self._run(), name="kueue")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def _on_event(self, event: Event) -> None:
        if event.storage != ("", "pods"):
            return
        uid = event.object["metadata"].get("uid", "")
        if event.type == "ADDED":
            self._created[uid] = event.revision
        elif event.type == "DELETED":
            self._created.pop(uid, None)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), SYNC_PERIOD_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                self.sync()
            except Exception:
                logger.exception("kueue stand-in sync failed")
                self.errors.append(traceback.format_exc())

    # ------------------------------------------------------------------------------------------
    # The webhook

    def mutate(self, rtype: ResourceType, pod: Obj) -> None:
        meta = pod["metadata"]
        if rtype.storage != ("", "pods") or meta.get("namespace") in UNMANAGED_NAMESPACES:
            return
        if not (meta.get("labels") or {}).get(QUEUE_LABEL):
            return
        meta["labels"][MANAGED_LABEL] = "true"
        gates = pod.setdefault("spec", {}).setdefault("schedulingGates", [])
        if not any(g.get("name") == GATE for g in gates):
            gates.append({"name": GATE})

    # ------------------------------------------------------------------------------------------
    # The controller

    def sync(self) -> None:
        groups = self._groups()
        self._release(groups)
        used = {queue: 0 for queue in self.quota}
        for key, uids in self._active.items():
            group = groups.get(key)
            if group is not None and group.queue in used:
                used[group.queue] += sum(1 for p in group.pods if p["metadata"]["uid"] in uids and _live(p))
        blocked: set[str] = set()
        for key, group in sorted(groups.items(), key=lambda kv: (kv[1].created, kv[0])):
            waiting = [p for p in group.pods if _gated(p) and _live(p)]
            if not waiting:
                continue
            if key in self._active:  # replacements join an admitted group at once
                self._ungate(waiting)
                self._active[key] |= {p["metadata"]["uid"] for p in waiting}
                continue
            quota = self.quota.get(group.queue)
            if quota is None or group.queue in blocked or len(group.pods) < group.size or group.size > quota:
                continue
            if used[group.queue] + group.size > quota:
                blocked.add(group.queue)  # StrictFIFO: the head waits, and so does the rest of its queue
                continue
            used[group.queue] += group.size
            self._admit(key, group)

    def _groups(self) -> dict[tuple[str, str], Group]:
        groups: dict[tuple[str, str], Group] = {}
        for pod in self.api.list(self.pods_type):
            meta = pod["metadata"]
            labels = meta.get("labels") or {}
            if labels.get(MANAGED_LABEL) != "true" or not labels.get(QUEUE_LABEL):
                continue
            name = labels.get(GROUP_LABEL) or f"pod/{meta['name']}"
            size = _size(meta) if labels.get(GROUP_LABEL) else 1
            created = self._created.get(meta["uid"], float("inf"))
            key = (meta.get("namespace", "default"), name)
            group = groups.setdefault(key, Group(key[0], name, labels[QUEUE_LABEL], size, [], created))
            group.pods.append(pod)
            group.created = min(group.created, created)
        return groups

    def _release(self, groups: Mapping[tuple[str, str], Group]) -> None:
        """Forget admissions whose pods have all finished or gone: their group may queue again."""
        for key, uids in list(self._active.items()):
            group = groups.get(key)
            if group is None or not any(p["metadata"]["uid"] in uids and _live(p) for p in group.pods):
                del self._active[key]

    def _admit(self, key: tuple[str, str], group: Group) -> None:
        self._active[key] = {p["metadata"]["uid"] for p in group.pods}
        self.admitted.append(
            {
                "namespace": group.namespace,
                "group": group.name,
                "queue": group.queue,
                "size": group.size,
                "pods": sorted(p["metadata"]["name"] for p in group.pods),
                "time": time.time(),
            }
        )
        logger.info("kueue stand-in admits %s/%s (%d pods) in %s", group.namespace, group.name, group.size, group.queue)
        self._ungate([p for p in group.pods if _gated(p)])

    def _ungate(self, pods: list[Obj]) -> None:
        def lift(pod: Obj) -> None:
            spec = pod.setdefault("spec", {})
            gates = [g for g in spec.get("schedulingGates") or [] if g.get("name") != GATE]
            if gates:
                spec["schedulingGates"] = gates
            else:
                spec.pop("schedulingGates", None)

        for pod in pods:
            meta = pod["metadata"]
            self.api.update_as_system(self.pods_type, meta.get("namespace"), meta["name"], lift, uid=meta["uid"])


def _size(meta: Mapping[str, Any]) -> int:
    try:
        return max(1, int((meta.get("annotations") or {}).get(COUNT_ANNOTATION, "1")))
    except ValueError:
        return 1


def _gated(pod: Obj) -> bool:
    return any(g.get("name") == GATE for g in (pod.get("spec") or {}).get("schedulingGates") or [])


def _live(pod: Obj) -> bool:
    """Neither finished nor being deleted: it holds its share of the quota."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")

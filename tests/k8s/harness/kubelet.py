"""A kubelet simulator: runs every pod of the emulated API server as a real local process.

One node (`kmock-node`), which it also schedules to (scheduler.py, the kube-scheduler's filter
step for one node): a pod with scheduling gates is not bound (PodScheduled=False, SchedulingGated)
until they are removed; with `node_capacity` a pod that does not fit beside the pods bound and
running stays Pending, unbound, Unschedulable with the scheduler's message, until room frees
(pending pods are tried in creation order on every pass); without it every pod fits, and the
node reports this machine's CPUs and memory and 110 pods. For each pod that may run it assigns a
unique loopback address (127.250.0.0 and up: never 127.0.0.1, and clear of the 127.16-215.x.y
addresses the LocalBackend hands out), binds the pod to the node, and starts the first
container's `command + args` (exec form, never a shell; `python`/`python3` -> this
interpreter) in its own session with the container's environment
(`value`, `$(VAR)` expansion, `valueFrom` fieldRef/resourceFieldRef/configMapKeyRef/secretKeyRef,
`envFrom`), on top of this process's environment minus OPENAUTOGLM_*/HOROVOD_*/KUBECONFIG, plus
`OPENAUTOGLM_TERMINATION_LOG` standing in for the bind mount of terminationMessagePath, in
`workingDir` if the container gives one. Volumes are directories on this machine that the process
sees at its volumeMounts' mountPaths, in a private mount namespace (volumes.py: emptyDir per pod,
persistentVolumeClaim per claim and namespace, shared and pre-fillable through
`Cluster.pvc_path`, configMap/secret/downwardAPI/projected written from the emulator's objects).
Only the first container runs: sidecars and init containers are not simulated. It
reports status as the real kubelet does: Pending with podIP, Running with containerStatuses,
readiness from the readinessProbe, and on exit `state.terminated` with the termination message
(or the log tail under FallbackToLogsOnError) and phase Succeeded/Failed (restartPolicy Never;
Always/OnFailure restart the process with a short back-off). Deleting a pod sends SIGTERM to the
process group and SIGKILL after the grace period (capped at 5 s). With `pullable_images`, a
container whose image is not among them (nor among `images`, `image_files`, `rootfs_images`)
is never started: it waits in ErrImagePull, then ImagePullBackOff (`Back-off pulling image
"..."`), in turn with a back-off (1 s doubling to 10 s; the real kubelet's is 10 s to 5 min), its
pod Pending and bound; without it every image "pulls".

Not simulated: images themselves (pulls, digests, pull secrets; a container runs this machine's
Python unless its image is in `rootfs_images`), resource limits (cgroups: requests are only
counted by the scheduler step), more than one node, the scheduler's scoring, affinity, taints,
priorities and preemption, evictions, and events (FailedScheduling, Pulling, BackOff).

It also plays cluster DNS (see cluster_dns.py): a pod with `hostname` + `subdomain` selected by
a headless Service named like the subdomain gets `<hostname>.<subdomain>.<ns>.svc.cluster.local`
and the shorter forms a pod's resolv.conf search path would complete (`<hostname>.<subdomain>`,
`...<ns>`, `...<ns>.svc`), and the Service itself `<service>.<ns>(.svc(.cluster.local))`, while
the pod is Running and ready, or the Service has `publishNotReadyAddresses: true` -- the records
the real cluster DNS serves from the Service's endpoints. (A bare `<service>` is not added: the
hosts file has no namespaces.) Pods share this machine's network namespace: a process must bind
its pod IP, not 0.0.0.0, or two pods on one port collide.

A container whose image is in `rootfs_images` (image -> rootfs.Image, a built image on disk; none
by default) runs in that image's root file system instead (rootfs.py: an overlay of it with the
container's own layer, its own /proc, /dev and host name): the environment is the image's Env
under the container's (nothing of this machine's), the command the image's ENTRYPOINT/CMD where
the pod gives none (and its own `python`), the user runAsUser/runAsGroup (else the image's USER),
with fsGroup and supplementalGroups, readOnlyRootFilesystem and allowPrivilegeEscalation honoured;
volumes are mounted at their mountPaths inside it, emptyDirs world-writable and writable volumes
given fsGroup, as the kubelet does; the termination-log file is mounted at terminationMessagePath;
/etc/hosts is the pod's own (its IP and host name, plus the cluster DNS records above, rewritten as
they change), /etc/resolv.conf has the cluster's search path. While it runs, its process log entry
gets what /proc says of it (rootfs.sample: the overlay's lower directory, a read-only root, the
process's uid). Exec probes still run on this machine.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import ipaddress
import logging
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final

import aiohttp
import apimachinery as am
import rootfs
import scheduler
import volumes
from cluster_dns import HostsFile
from emulator import ApiError, ApiServer, Event, Obj
from scheduler import quantity

from openautoglm_trial import contract

logger = logging.getLogger("k8s.kubelet")

NODE_NAME: Final = "kmock-node"
HOST_IP: Final = "127.0.0.1"
POD_NETWORK_START: Final = int(ipaddress.IPv4Address("127.250.0.0"))
POD_NETWORK_SIZE: Final = 5 * 65536  # 127.250.0.0 - 127.254.255.255
MAX_GRACE_S: Final = 5.0
SYNC_PERIOD_S: Final = 0.2
READINESS_PERIOD_S: Final = 0.5
#: how long ErrImagePull shows before the back-off, and the back-off's first and largest length
PULL_ERROR_S: Final = 1.0
PULL_BACKOFF_S: Final = 1.0
MAX_PULL_BACKOFF_S: Final = 10.0
TERMINATION_MESSAGE_LIMIT: Final = 4096
FALLBACK_LOG_LINES: Final = 80
FALLBACK_LOG_BYTES: Final = 2048
STRIPPED_ENV_PREFIXES: Final = contract.RESERVED_ENV_PREFIXES
STRIPPED_ENV: Final = frozenset({"KUBECONFIG"})
TERMINATION_LOG_ENV: Final = contract.TERMINATION_LOG


@functools.cache
def _image_code() -> list[str]:
    """Where this machine's copy of what the images carry lives: the checkout (the packages, the
    tests' own trial programs) and the two packages wherever they are installed from."""
    import openautoglm
    import openautoglm_trial

    checkout = Path(__file__).resolve().parents[3]
    packages = {Path(m.__file__).resolve().parent.parent for m in (openautoglm, openautoglm_trial)}
    return sorted({str(checkout), *(str(p) for p in packages if not p.is_relative_to(checkout))})


class ContainerConfigError(Exception):
    """The container cannot be configured yet (missing ConfigMap/Secret key): retried."""


class StartError(Exception):
    """The container cannot be started at all (no command, binary not found)."""


@dataclasses.dataclass
class PodRuntime:
    uid: str
    namespace: str
    name: str
    ip: str
    dir: Path
    grace_s: float
    restart_policy: str
    proc: subprocess.Popen[bytes] | None = None
    record: dict[str, Any] | None = None
    started_at: str = ""
    kill_deadline: float | None = None
    deleting: bool = False
    finished: bool = False
    restarts: int = 0
    restart_at: float | None = None
    #: mount points this pod created on the machine (volumes.MountPoints), released when it ends.
    mount_points: list[Path] = dataclasses.field(default_factory=list)
    ready: bool = False
    readiness_failures: int = 0
    liveness_failures: int = 0
    next_probe: dict[str, float] = dataclasses.field(default_factory=dict)
    probing: set[str] = dataclasses.field(default_factory=set)
    #: the built image the container runs in (its root file system), None: in this machine's
    image: rootfs.Image | None = None
    #: failed pulls of an image the cluster cannot pull (Cluster(pullable_images=...)) so far
    pull_failures: int = 0
    #: what the pod asked of the node (scheduler.pod_requests): held while it is bound
    requests: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.dir / "container.log"

    @property
    def termination_path(self) -> Path:
        return self.dir / "termination-log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names replaced, `$$` escapes, the rest left as is."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class Kubelet:
    def __init__(
        self,
        api: ApiServer,
        workdir: Path,
        process_log: list[dict[str, Any]],
        *,
        hosts: HostsFile | None = None,
        images: Mapping[str, list[str]] | None = None,
        image_files: Mapping[str, Mapping[str, str]] | None = None,
        rootfs_images: Mapping[str, rootfs.Image] | None = None,
        node_capacity: Mapping[str, Any] | None = None,
        pullable_images: Iterable[str] | None = None,
    ):
        self.api = api
        #: the scheduler step's view of the node (scheduler.py): what it reports, what it enforces
        self.node = scheduler.NodeCapacity(node_capacity, scheduler.machine_capacity(_memory_bytes()))
        #: the images a pull of succeeds (None: every image); the images this kubelet knows are among them
        self.pullable: frozenset[str] | None = None
        if pullable_images is not None:
            known = [*(images or {}), *(image_files or {}), *(rootfs_images or {})]
            self.pullable = frozenset([*pullable_images, *known])
        #: pod uid -> the revision that created it: the scheduler's queue order
        self._created: dict[str, int] = {}
        #: image -> the built image on disk: a container of that image runs in its root file
        #: system (rootfs.py) instead of this machine's, with the pod's user and no host env.
        self.rootfs_images = dict(rootfs_images or {})
        #: image -> {path in the container: directory here}: the files an image would hold
        #: (a user's program baked into its trial image), mounted read-only under the volumes.
        self.image_files = {image: dict(paths) for image, paths in (image_files or {}).items()}
        self.workdir = workdir
        self.process_log = process_log
        self.hosts = hosts
        self.images = dict(images or {})
        self.pods_type = api.type_of("v1/pods")
        self.runtimes: dict[str, PodRuntime] = {}
        self._wake = asyncio.Event()
        self._next_ip = random.randrange(POD_NETWORK_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self.mount_points = volumes.MountPoints()
        #: the cluster DNS records (ip, names) last computed: the hosts file of a pod in an image
        self._dns_records: list[tuple[str, list[str]]] = []
        #: tracebacks of failed sync passes (shown by Cluster.describe()).
        self.errors: list[str] = []

    # ------------------------------------------------------------------------------------------
    # Lifecycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(trust_env=False)
        self.api.listeners.append(self._on_event)
        self.api.readers["pods/log"] = self._read_log
        self._register_node()
        self._task = asyncio.create_task(self._run(), name="kubelet")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for rt in self.runtimes.values():
            if rt.running:
                self._signal(rt, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while any(rt.running for rt in self.runtimes.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for rt in self.runtimes.values():
            if rt.proc is not None:
                if rt.running:
                    self._signal(rt, signal.SIGKILL)
                    rt.proc.wait()
                self._record_exit(rt)
            self._release_mount_points(rt)
        if self._session is not None:
            await self._session.close()

    def _on_event(self, event: Event) -> None:
        if event.storage == ("", "pods"):
            uid = event.object["metadata"].get("uid", "")
            if event.type == "ADDED":
                self._created[uid] = event.revision
            elif event.type == "DELETED":
                self._created.pop(uid, None)
        if event.storage in (("", "pods"), ("", "services")):
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), SYNC_PERIOD_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                self._sync()
            except Exception:
                logger.exception("kubelet sync failed")
                self.errors.append(traceback.format_exc())

    def _register_node(self) -> None:
        node_type = self.api.type_of("v1/nodes")
        if self.api.get(node_type, None, NODE_NAME) is None:
            self.api.create(
                node_type,
                None,
                {
                    "metadata": {
                        "name": NODE_NAME,
                        "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"},
                    }
                },
            )
        capacity = self.node.reported

        def status(node: Obj) -> None:
            node["status"] = {
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": NODE_NAME}],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastHeartbeatTime": am.now_rfc3339(),
                        "lastTransitionTime": am.now_rfc3339(),
                    }
                ],
            }

        self.api.update_as_system(node_type, None, NODE_NAME, status)

    # ------------------------------------------------------------------------------------------
    # The sync loop: level-triggered against the pods in the store

    def _sync(self) -> None:
        pods = {p["metadata"]["uid"]: p for p in self.api.list(self.pods_type)}
        self._schedule(pods)
        # As in a real cluster, a pod's DNS records exist from when it has an IP (if not-ready
        # addresses are published), so a process can resolve its own name as it starts.
        self._sync_dns(pods)
        now = time.monotonic()
        for uid, rt in list(self.runtimes.items()):
            pod = pods.get(uid)
            if (pod is None or pod["metadata"].get("deletionTimestamp")) and not rt.deleting:
                rt.deleting = True
                if rt.running:
                    self._signal(rt, signal.SIGTERM)
                    rt.kill_deadline = now + rt.grace_s
            if (
                rt.proc is None
                and not rt.finished
                and not rt.deleting
                and pod is not None
                and (rt.restart_at is None or now >= rt.restart_at)
            ):
                self._start_container(pod, rt)
            if rt.proc is not None and not rt.finished and rt.proc.poll() is not None:
                self._on_exit(rt, pod)
            if rt.kill_deadline is not None and now >= rt.kill_deadline and rt.running:
                self._signal(rt, signal.SIGKILL)
                rt.kill_deadline = None
            if pod is not None and rt.running and not rt.deleting:
                self._schedule_probes(pod, rt, now)
            if rt.image is not None and rt.running and rt.record is not None and rt.proc is not None:
                rt.record.update(rootfs.sample(rt.proc.pid) or {})
            if pod is None and rt.proc is None:  # only once its exit is recorded (poll() reaps it)
                self._release_mount_points(rt)
                del self.runtimes[uid]
        self._sync_dns(pods)

    def _schedule(self, pods: Mapping[str, Obj]) -> None:
        """The scheduler step (scheduler.py): bind the pending pods that may run, in creation
        order; the others get PodScheduled=False with the scheduler's reason and message."""
        bound = [rt.requests for uid, rt in self.runtimes.items() if _holds_node(rt, pods.get(uid))]
        pending = [
            pod
            for uid, pod in pods.items()
            if uid not in self.runtimes and not pod["metadata"].get("deletionTimestamp") and not _finished(pod)
        ]
        pending.sort(key=lambda p: (self._created.get(p["metadata"]["uid"], math.inf), p["metadata"]["name"]))
        for pod in pending:
            if scheduler.gated(pod):
                self._not_scheduled(pod, scheduler.GATED_REASON, scheduler.GATED_MESSAGE)
            elif reasons := self.node.misfits(pod, bound):
                self._not_scheduled(pod, scheduler.UNSCHEDULABLE_REASON, scheduler.unschedulable_message(reasons))
            else:
                self._admit_pod(pod)
                bound.append(self.runtimes[pod["metadata"]["uid"]].requests)

    def _not_scheduled(self, pod: Obj, reason: str, message: str) -> None:
        meta = pod["metadata"]
        self.api.update_as_system(
            self.pods_type,
            meta.get("namespace"),
            meta["name"],
            lambda p: scheduler.mark_not_scheduled(p, reason, message),
            uid=meta["uid"],
        )

    def _allocate_ip(self) -> str:
        while True:
            n = self._next_ip % POD_NETWORK_SIZE
            self._next_ip += 1
            ip = ipaddress.IPv4Address(POD_NETWORK_START + n)
            if ip.packed[-1] not in (0, 255):
                return str(ip)

    def _admit_pod(self, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        ns, name = meta.get("namespace", "default"), meta["name"]
        ip = self._allocate_ip()
        pod_dir = self.workdir / "pods" / ns / f"{name}-{meta['uid'][:8]}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        rt = PodRuntime(
            uid=meta["uid"],
            namespace=ns,
            name=name,
            ip=ip,
            dir=pod_dir,
            grace_s=min(float(spec.get("terminationGracePeriodSeconds", 30)), MAX_GRACE_S),
            restart_policy=spec.get("restartPolicy", "Always"),
            requests=scheduler.pod_requests(pod),
        )
        self.runtimes[rt.uid] = rt
        now = am.now_rfc3339()
        containers = spec.get("containers") or [{}]

        def bind(p: Obj) -> None:
            p.setdefault("spec", {})["nodeName"] = NODE_NAME
            status = p.setdefault("status", {})
            status.update(
                {
                    "phase": "Pending",
                    "hostIP": HOST_IP,
                    "hostIPs": [{"ip": HOST_IP}],
                    "podIP": ip,
                    "podIPs": [{"ip": ip}],
                    "startTime": now,
                    "conditions": [
                        _condition("PodScheduled", True, now),
                        _condition("Initialized", True, now),
                        _condition("ContainersReady", False, now, "ContainersNotReady"),
                        _condition("Ready", False, now, "ContainersNotReady"),
                    ],
                    "containerStatuses": [
                        {
                            "name": c.get("name", ""),
                            "image": c.get("image", ""),
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "started": False,
                            "state": {"waiting": {"reason": "ContainerCreating"}},
                        }
                        for c in containers
                    ],
                }
            )

        self.api.update_as_system(self.pods_type, ns, name, bind, uid=rt.uid)

    def _start_container(self, pod: Obj, rt: PodRuntime) -> None:
        current = self.api.get(self.pods_type, rt.namespace, rt.name)  # with the podIP just set
        if current is not None and current["metadata"]["uid"] == rt.uid:
            pod = current
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        rt.restart_at = None
        if self.pullable is not None and container.get("image", "") not in self.pullable:
            self._pull_failed(rt, str(container.get("image", "")))
            return
        rt.image = self.rootfs_images.get(container.get("image", ""))
        in_image: rootfs.Container | None = None
        try:
            env = self._environment(pod, container, rt)
            argv = self._argv(container, env, rt.image)
            prepared = volumes.prepare(pod, rt.dir, self.workdir, self._volume_data, _field_ref)
            mount_list = volumes.mounts(container, prepared, lambda text: expand(text, env))
            layers = [
                volumes.Mount(str(Path(src).resolve()), os.path.normpath(target), True, Path(src).is_file())
                for target, src in self.image_files.get(container.get("image", ""), {}).items()
            ]
            for layer in layers if rt.image is None else []:
                # A container runtime creates mount points in the image's file system; here the
                # layer is mounted read-only, so they are made in its directory beforehand.
                for m in mount_list:
                    inside = PurePosixPath(m.target)
                    if PurePosixPath(layer.target) in inside.parents and not m.file:
                        Path(layer.source, inside.relative_to(layer.target)).mkdir(parents=True, exist_ok=True)
            # Parents before children: the image's /app first, a volume at /app/data over it.
            mount_list = sorted(layers + mount_list, key=lambda m: len(PurePosixPath(m.target).parts))
            if rt.image is not None:
                in_image = self._image_container(pod, container, rt, rt.image, prepared, mount_list, argv, env)
        except (ContainerConfigError, rootfs.ConfigError) as exc:
            self._set_waiting(rt, "CreateContainerConfigError", str(exc))
            rt.restart_at = time.monotonic() + 1.0
            return
        except volumes.VolumeError as exc:  # the real kubelet keeps retrying the mount (FailedMount)
            self._set_waiting(rt, "ContainerCreating", f"MountVolume.SetUp failed: {exc}")
            rt.restart_at = time.monotonic() + 1.0
            return
        except StartError as exc:
            self._fail_start(rt, str(exc))
            return
        rt.termination_path.write_bytes(b"")
        try:
            if in_image is not None:  # the launcher gets the environment from its plan
                run, cwd, run_env = in_image.launcher_argv(), rt.dir, {}
            else:
                (run, cwd), run_env = self._command_line(rt, container, mount_list, argv), env
        except OSError as exc:
            self._fail_start(rt, f"cannot create a mount point: {exc}")
            return
        try:
            with open(rt.log_path, "ab") as log:
                rt.proc = subprocess.Popen(
                    run,
                    cwd=cwd,
                    env=run_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            self._fail_start(rt, f"failed to start {argv[0]!r}: {exc}")
            return
        rt.started_at = am.now_rfc3339()
        rt.record = {
            "pod": rt.name,
            "namespace": rt.namespace,
            "uid": rt.uid,
            "pid": rt.proc.pid,
            "ip": rt.ip,
            "started": time.time(),
            "exit_code": None,
            "finished": None,
            "argv": argv,
            "log": str(rt.log_path),
            "restart": rt.restarts,
            "liveness_failures": 0,
            "mounts": {m.target: m.source for m in mount_list},
        }
        if rt.image is not None:  # and, once it runs there, what rootfs.sample() reads
            rt.record.update({"image": rt.image.name, "rootfs": str(rt.image.rootfs)})
        self.process_log.append(rt.record)
        probes = {kind: container.get(f"{kind}Probe") for kind in ("readiness", "liveness")}
        now = time.monotonic()
        rt.next_probe = {kind: now + float(p.get("initialDelaySeconds", 0)) for kind, p in probes.items() if p}
        rt.ready = not probes["readiness"]
        rt.readiness_failures = rt.liveness_failures = 0

        def running(p: Obj) -> None:
            status = p["status"]
            status["phase"] = "Running"
            cs = status["containerStatuses"][0]
            cs.update(
                {
                    "state": {"running": {"startedAt": rt.started_at}},
                    "started": True,
                    "ready": rt.ready,
                    "restartCount": rt.restarts,
                    "containerID": f"kmock://{rt.proc.pid if rt.proc else 0}",
                }
            )
            _set_ready_conditions(status, rt.ready)

        self.api.update_as_system(self.pods_type, rt.namespace, rt.name, running, uid=rt.uid)

    def _image_container(
        self,
        pod: Obj,
        container: Mapping[str, Any],
        rt: PodRuntime,
        image: rootfs.Image,
        prepared: Mapping[str, tuple[Path, bool]],
        mount_list: list[volumes.Mount],
        argv: list[str],
        env: Mapping[str, str],
    ) -> rootfs.Container:
        """The container in its image's root file system. Volumes get what the kubelet gives
        them for a non-root user: emptyDir world-writable, fsGroup's group on writable ones."""
        spec = pod.get("spec") or {}
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        for volume in spec.get("volumes") or []:
            path, read_only = prepared[volume["name"]]
            if "emptyDir" in volume:
                path.chmod(0o777)
            if fs_group is not None and not read_only and ("emptyDir" in volume or "persistentVolumeClaim" in volume):
                rootfs.apply_fs_group(path, int(fs_group))
        in_image = rootfs.pod_container(
            pod,
            container,
            image,
            pod_dir=rt.dir,
            ip=rt.ip,
            argv=argv,
            env=env,
            mounts=mount_list,
            termination_log=rt.termination_path,
        )
        hosts = rootfs.hosts_text(rt.ip, rootfs.own_names(pod), self._dns_records)
        rootfs.write_in_place(rt.dir / "etc" / "hosts", hosts)
        return in_image

    def _set_waiting(self, rt: PodRuntime, reason: str, message: str) -> None:
        def waiting(p: Obj) -> None:
            p["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": message}}

        self.api.update_as_system(self.pods_type, rt.namespace, rt.name, waiting, uid=rt.uid)

    def _pull_failed(self, rt: PodRuntime, image: str) -> None:
        """A pull of an image the registry does not have: ErrImagePull, then ImagePullBackOff for a
        back-off that doubles (1 s up to 10 s; the real kubelet's runs from 10 s to 5 min), then
        another try; the pod stays Pending and no process starts."""
        if rt.pull_failures % 2 == 0:
            reason, delay = "ErrImagePull", PULL_ERROR_S
            message = (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
                f'failed to resolve reference "{image}": {image}: not found'
            )
        else:
            reason, message = "ImagePullBackOff", f'Back-off pulling image "{image}"'
            delay = min(PULL_BACKOFF_S * 2 ** (rt.pull_failures // 2), MAX_PULL_BACKOFF_S)
        rt.pull_failures += 1
        rt.restart_at = time.monotonic() + delay
        self._set_waiting(rt, reason, message)

    def _fail_start(self, rt: PodRuntime, message: str) -> None:
        logger.warning("pod %s/%s cannot start: %s", rt.namespace, rt.name, message)
        rt.finished = True
        self._release_mount_points(rt)
        now = am.now_rfc3339()

        def failed(p: Obj) -> None:
            status = p["status"]
            status["phase"] = "Failed"
            status["containerStatuses"][0].update(
                {
                    "ready": False,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": 128,
                            "reason": "StartError",
                            "message": message,
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            )
            _set_ready_conditions(status, False, "PodFailed")

        self.api.update_as_system(self.pods_type, rt.namespace, rt.name, failed, uid=rt.uid)

    def _on_exit(self, rt: PodRuntime, pod: Obj | None) -> None:
        assert rt.proc is not None
        exit_code = self._record_exit(rt)
        try:
            os.killpg(rt.proc.pid, signal.SIGKILL)  # a container's other processes end with its main one
        except (ProcessLookupError, PermissionError):
            pass
        container = (((pod or {}).get("spec") or {}).get("containers") or [{}])[0]
        message = self._termination_message(rt, container, exit_code)
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": rt.started_at,
            "finishedAt": am.now_rfc3339(),
            "containerID": f"kmock://{rt.proc.pid}",
        }
        if message:
            terminated["message"] = message
        restart = not rt.deleting and (
            rt.restart_policy == "Always" or (rt.restart_policy == "OnFailure" and exit_code != 0)
        )
        rt.proc = None
        if restart:
            backoff = min(0.5 * 2**rt.restarts, MAX_GRACE_S)
            rt.restarts += 1
            rt.restart_at = time.monotonic() + backoff

            def crashed(p: Obj) -> None:
                status = p["status"]
                status["containerStatuses"][0].update(
                    {
                        "ready": False,
                        "started": False,
                        "restartCount": rt.restarts,
                        "lastState": {"terminated": terminated},
                        "state": {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": f"back-off {backoff:.1f}s restarting failed container",
                            }
                        },
                    }
                )
                _set_ready_conditions(status, False)

            self.api.update_as_system(self.pods_type, rt.namespace, rt.name, crashed, uid=rt.uid)
            return
        rt.finished = True
        rt.ready = False
        self._release_mount_points(rt)

        def ended(p: Obj) -> None:
            status = p["status"]
            status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            status["containerStatuses"][0].update(
                {"ready": False, "started": False, "state": {"terminated": terminated}}
            )
            _set_ready_conditions(status, False, "PodCompleted" if exit_code == 0 else "PodFailed")

        self.api.update_as_system(self.pods_type, rt.namespace, rt.name, ended, uid=rt.uid)

    def _record_exit(self, rt: PodRuntime) -> int:
        assert rt.proc is not None
        code = rt.proc.returncode
        exit_code = code if code >= 0 else 128 - code  # killed by a signal: 128 + signal number
        if rt.record is not None and rt.record["exit_code"] is None:
            rt.record["exit_code"] = exit_code
            rt.record["finished"] = time.time()
            rt.record["liveness_failures"] = rt.liveness_failures
        return exit_code

    def _command_line(
        self, rt: PodRuntime, container: Mapping[str, Any], mount_list: list[volumes.Mount], argv: list[str]
    ) -> tuple[list[str], str | Path]:
        """The process's argv and cwd: through the mount launcher when the container mounts volumes."""
        working_dir = container.get("workingDir")
        if not rt.mount_points:  # once per pod: a restarted container finds them in place
            wanted = [(m.target, m.file) for m in volumes.host_level(mount_list)]
            if working_dir and not any(Path(working_dir).is_relative_to(m.target) for m in mount_list):
                wanted.append((working_dir, False))
            rt.mount_points = self.mount_points.acquire(wanted)
        if mount_list and os.geteuid() == 0:  # the launcher mounts, then changes to workingDir itself
            argv = volumes.launcher_argv(
                sys.executable, rt.dir, str(working_dir or rt.dir), mount_list, argv, keep=_image_code()
            )
            return argv, rt.dir
        if mount_list:
            logger.warning(
                "pod %s/%s: volumeMounts need root (a mount namespace); running without them", rt.namespace, rt.name
            )
        return argv, working_dir or rt.dir

    def _release_mount_points(self, rt: PodRuntime) -> None:
        self.mount_points.release(rt.mount_points)
        rt.mount_points = []

    def pvc_dir(self, namespace: str, claim: str) -> Path:
        """The directory behind PersistentVolumeClaim `claim` (created on first use)."""
        path = volumes.pvc_dir(self.workdir, namespace, claim)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _volume_data(self, plural: str, namespace: str, name: str) -> dict[str, str] | None:
        try:
            return self._config_data(plural, namespace, {"name": name, "optional": True})
        except ContainerConfigError:
            return None

    def _termination_message(self, rt: PodRuntime, container: Mapping[str, Any], exit_code: int) -> str:
        try:
            data = rt.termination_path.read_bytes()[:TERMINATION_MESSAGE_LIMIT]
        except OSError:
            data = b""
        if not data.strip() and exit_code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            try:
                lines = rt.log_path.read_bytes().splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
            except OSError:
                lines = []
            data = b"".join(lines)[-FALLBACK_LOG_BYTES:]
        return data.decode("utf-8", "replace")

    @staticmethod
    def _signal(rt: PodRuntime, sig: int) -> None:
        if rt.proc is None:
            return
        try:
            os.killpg(rt.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # ------------------------------------------------------------------------------------------
    # Container environment and command line

    def _environment(self, pod: Obj, container: Mapping[str, Any], rt: PodRuntime) -> dict[str, str]:
        """In an image: the image's Env under the container's; else this process's environment
        (less the project's own variables) under it, and the termination log's path."""
        if rt.image is not None:
            env = rt.image.environment()
        else:
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(STRIPPED_ENV_PREFIXES) and k not in STRIPPED_ENV
            }
        spec = pod.get("spec") or {}
        env["HOSTNAME"] = spec.get("hostname") or pod["metadata"]["name"]
        defined: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                if kind in source:
                    data = self._config_data(plural, rt.namespace, source[kind])
                    defined.update({prefix + k: v for k, v in (data or {}).items()})
        for item in container.get("env") or []:
            name = item["name"]
            if "value" in item:
                defined[name] = expand(str(item["value"]), defined)
            elif "valueFrom" in item:
                value = self._value_from(pod, container, rt, item["valueFrom"])
                if value is not None:
                    defined[name] = value
            else:
                defined[name] = ""
        env.update(defined)
        if rt.image is None:  # in an image the file is where terminationMessagePath says
            env[TERMINATION_LOG_ENV] = str(rt.termination_path)
        return env

    def _value_from(
        self, pod: Obj, container: Mapping[str, Any], rt: PodRuntime, source: Mapping[str, Any]
    ) -> str | None:
        if "fieldRef" in source:
            return _field_ref(pod, source["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            kind, _, resource = ref["resource"].partition(".")
            value = ((container.get("resources") or {}).get(kind) or {}).get(resource)
            if value is None:  # unset limits read as the node's allocatable
                value = str(os.cpu_count() or 1) if resource == "cpu" else str(_memory_bytes())
            return str(math.ceil(quantity(value) / quantity(ref.get("divisor", "1"))))
        for kind, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
            if kind in source:
                ref = source[kind]
                data = self._config_data(plural, rt.namespace, ref)
                if data is not None and ref["key"] in data:
                    return data[ref["key"]]
                if ref.get("optional"):
                    return None
                raise ContainerConfigError(
                    f"couldn't find key {ref['key']} in {plural[:-1]} {rt.namespace}/{ref.get('name')}"
                )
        return None

    def _config_data(self, plural: str, namespace: str, ref: Mapping[str, Any]) -> dict[str, str] | None:
        obj = self.api.get(self.api.type_of(f"v1/{plural}"), namespace, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"{plural[:-1]} {ref.get('name')!r} not found")
        if plural == "secrets":
            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            data.update(obj.get("stringData") or {})
            return data
        return dict(obj.get("data") or {})

    def _argv(
        self, container: Mapping[str, Any], env: Mapping[str, str], image: rootfs.Image | None = None
    ) -> list[str]:
        command, args = container.get("command"), container.get("args")
        if image is not None:  # the image's ENTRYPOINT/CMD where the pod gives none; its own python
            argv = image.argv(
                [expand(str(a), env) for a in command or []],
                None if args is None else [expand(str(a), env) for a in args],
            )
            if not argv:
                raise StartError(f"image {image.name!r} has no ENTRYPOINT or CMD and the container no command")
            return argv
        if not command:
            entrypoint = self.images.get(container.get("image", ""))
            if entrypoint is None:
                raise StartError(
                    f"container has no command and image {container.get('image')!r} has no known "
                    "entrypoint (pass Cluster(images={image: argv}))"
                )
            command, args = entrypoint, args if args is not None else []
        argv = [expand(str(a), env) for a in list(command) + list(args or [])]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv

    # ------------------------------------------------------------------------------------------
    # Probes

    def _schedule_probes(self, pod: Obj, rt: PodRuntime, now: float) -> None:
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        for kind, due in rt.next_probe.items():
            probe = container.get(f"{kind}Probe")
            if probe and now >= due and kind not in rt.probing:
                rt.probing.add(kind)
                period = READINESS_PERIOD_S if kind == "readiness" else float(probe.get("periodSeconds", 10))
                rt.next_probe[kind] = now + period
                task = asyncio.create_task(self._probe(rt, kind, probe, container))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)

    async def _probe(self, rt: PodRuntime, kind: str, probe: Mapping[str, Any], container: Mapping[str, Any]) -> None:
        try:
            ok = await self._check(rt, probe, container)
        except Exception as exc:
            logger.debug("%s probe of %s failed: %s", kind, rt.name, exc)
            ok = False
        finally:
            rt.probing.discard(kind)
        if not rt.running or rt.deleting:
            return
        threshold = int(probe.get("failureThreshold", 3))
        if kind == "liveness":
            rt.liveness_failures = 0 if ok else rt.liveness_failures + 1
            if rt.record is not None:
                rt.record["liveness_failures"] = rt.liveness_failures
            if rt.liveness_failures >= threshold:
                logger.info(
                    "pod %s/%s failed its liveness probe %d times: killing it",
                    rt.namespace,
                    rt.name,
                    rt.liveness_failures,
                )
                self._signal(rt, signal.SIGTERM)
                rt.kill_deadline = time.monotonic() + rt.grace_s
            return
        rt.readiness_failures = 0 if ok else rt.readiness_failures + 1
        ready = True if ok else (False if not rt.ready or rt.readiness_failures >= threshold else rt.ready)
        if ready != rt.ready:
            rt.ready = ready

            def mark(p: Obj) -> None:
                status = p["status"]
                if status.get("containerStatuses") and "running" in status["containerStatuses"][0].get("state", {}):
                    status["containerStatuses"][0]["ready"] = ready
                    _set_ready_conditions(status, ready)

            self.api.update_as_system(self.pods_type, rt.namespace, rt.name, mark, uid=rt.uid)

    async def _check(self, rt: PodRuntime, probe: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = _port(get.get("port"), container)
            url = f"{get.get('scheme', 'HTTP').lower()}://{get.get('host') or rt.ip}:{port}{get.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            assert self._session is not None
            async with self._session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
            ) as response:
                return 200 <= response.status < 400
        if "tcpSocket" in probe:
            sock = probe["tcpSocket"]
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(sock.get("host") or rt.ip, _port(sock.get("port"), container)), timeout
            )
            writer.close()
            return True
        if "exec" in probe:
            proc = await asyncio.create_subprocess_exec(
                *probe["exec"]["command"], cwd=rt.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                return await asyncio.wait_for(proc.wait(), timeout) == 0
            except TimeoutError:
                proc.kill()
                return False
        return True  # grpc probes are not simulated

    # ------------------------------------------------------------------------------------------
    # Cluster DNS and logs

    def _sync_dns(self, pods: Mapping[str, Obj]) -> None:
        services = [
            s
            for s in self.api.list(self.api.type_of("v1/services"))
            if (s.get("spec") or {}).get("clusterIP") == "None"
        ]
        names: dict[str, list[str]] = {}
        for uid, rt in self.runtimes.items():
            pod = pods.get(uid)
            if pod is None or rt.deleting or rt.finished:
                continue
            spec, labels = pod.get("spec") or {}, pod["metadata"].get("labels") or {}
            for svc in services:
                sspec, smeta = svc["spec"], svc["metadata"]
                if (
                    smeta.get("namespace") != rt.namespace
                    or not sspec.get("selector")
                    or not am.match_selector_object(sspec["selector"], labels)
                ):
                    continue
                if not (rt.ready or sspec.get("publishNotReadyAddresses")):
                    continue
                svc_name, ns = smeta["name"], rt.namespace
                entry = names.setdefault(rt.ip, [])
                entry += [f"{svc_name}.{ns}", f"{svc_name}.{ns}.svc", f"{svc_name}.{ns}.svc.cluster.local"]
                if spec.get("hostname") and spec.get("subdomain") == svc_name:
                    fqdn = f"{spec['hostname']}.{svc_name}"
                    entry += [fqdn, f"{fqdn}.{ns}", f"{fqdn}.{ns}.svc", f"{fqdn}.{ns}.svc.cluster.local"]
        records = self._dns_records = [(ip, list(dict.fromkeys(n))) for ip, n in names.items()]
        if self.hosts is not None:
            self.hosts.update(records)
        for uid, rt in self.runtimes.items():  # a container in an image reads its own /etc/hosts
            pod = pods.get(uid)
            hosts = rt.dir / "etc" / "hosts"
            if rt.image is not None and pod is not None and not rt.finished and hosts.exists():
                rootfs.write_in_place(hosts, rootfs.hosts_text(rt.ip, rootfs.own_names(pod), records))

    def _read_log(self, namespace: str, name: str, query: Mapping[str, str]) -> str:
        pod = self.api.get(self.pods_type, namespace, name)
        if pod is None:
            raise ApiError.not_found(self.pods_type, name)
        rt = self.runtimes.get(pod["metadata"]["uid"])
        if rt is None or not rt.log_path.exists():
            return ""
        text = rt.log_path.read_text(errors="replace")
        if query.get("tailLines"):
            text = "".join(text.splitlines(keepends=True)[-int(query["tailLines"]) :])
        return text


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _holds_node(rt: PodRuntime, pod: Obj | None) -> bool:
    """Whether a bound pod still holds its share of the node: not ended, and if deleted, its
    process still running (a real node holds a Terminating pod's share until it has stopped)."""
    if rt.finished or (pod is not None and _finished(pod)):
        return False
    return rt.running if rt.deleting or pod is None or pod["metadata"].get("deletionTimestamp") else True


def _condition(kind: str, ok: bool, now: str, reason: str | None = None) -> Obj:
    cond: Obj = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None, "lastTransitionTime": now}
    if reason and not ok:
        cond["reason"] = reason
    return cond


def _set_ready_conditions(status: Obj, ready: bool, reason: str = "ContainersNotReady") -> None:
    now = am.now_rfc3339()
    conditions = status.setdefault("conditions", [])
    for kind in ("ContainersReady", "Ready"):
        new = _condition(kind, ready, now, reason)
        for i, cond in enumerate(conditions):
            if cond.get("type") == kind:
                if cond.get("status") != new["status"] or cond.get("reason") != new.get("reason"):
                    conditions[i] = new
                break
        else:
            conditions.append(new)


def _field_ref(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    if m := re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path):
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
    }
    if path not in simple:
        raise StartError(f"unsupported fieldRef {path!r}")
    return simple[path] or ""


def _port(port: Any, container: Mapping[str, Any]) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"unknown named port {port!r}")


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * 2**30

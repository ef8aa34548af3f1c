"""A Kubernetes cluster on one machine for tests: emulated API server + kubelet simulator + DNS.

    with Cluster(crd_paths=[...], workdir=tmp_path) as cluster:
        cluster.kubectl("apply", "-f", "examples/digits.yaml")
        subprocess.Popen(["kopf", "run", ...], env=cluster.env())   # KUBECONFIG=cluster.kubeconfig
        cluster.wait_for(lambda: cluster.pods(), 30, "trial pods")

The API server (emulator.py, on kmock's KubernetesEmulator), the kubelet (kubelet.py) and the
/etc/hosts DNS block (cluster_dns.py) run in a background thread with their own asyncio loop, so
a test may block freely; every read here is served by that loop, atomically. Real clients talk
to it over HTTP at `url`: kopf (in-process or a subprocess), kubectl, the kubernetes client.

What each part stands for on a busy cluster, when asked for (by default every pod is bound at
once and every image pulls, as before):
- `node_capacity`: one node with room for so many pods / so much CPU, memory, GPUs; the
  kubelet's scheduler step (scheduler.py) stands for the kube-scheduler's filter on that node:
  Unschedulable pods with its message, scheduling gates honoured (SchedulingGated).
- `pullable_images`: a registry that has only these images: others end in ImagePullBackOff.
- `kueue_quota`: a stand-in for Kueue's plain-pod groups (kueue.py): its webhook gates every pod
  labelled with a queue, its controller lifts the gates of a whole pod group at once when the
  queue's quota (pods) admits it, first come first served; `kueue.admitted` logs admissions.
Not simulated (what a test here cannot show): more than one node, the real kube-scheduler's
scoring, affinity, taints, priorities and preemption; a real Kueue (its Workload, LocalQueue
and ClusterQueue objects, resource flavors, cohorts and borrowing, preemption, BestEffortFIFO,
waitForPodsReady); resource limits enforced on the processes; the events these components write.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import apimachinery as am
import kmock
import kubernetes.client
import yaml
from cluster_dns import HostsFile
from emulator import Admission, ApiServer, Defaulter, FaultInjector, Obj, load_crd_documents
from kubelet import Kubelet
from kueue import KueueStandIn
from rootfs import Image

T = TypeVar("T")
START_TIMEOUT_S = 30.0


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


class Cluster:
    """Context manager; see the module docstring.

    Args:
        crd_paths: YAML files whose CustomResourceDefinitions are served from the start
            (other documents in them are ignored).
        admission: `admission(obj) -> [messages]` for every create/update/patch of a custom
            resource; messages reject it with a 422 Invalid Status.
        defaulter: `defaulter(obj) -> obj` with schema defaults filled, called before admission;
            its result is what gets stored.
        workdir: pod working directories and logs, the kubeconfig, kubectl's cache.
        images: image -> entrypoint argv, for containers that give no `command`.
        image_files: image -> {path in the container: directory here}, the files the image holds.
        rootfs_images: image -> a built image on disk (rootfs.Image): containers of that image run
            in its root file system, as its user, instead of in this machine's (default: none).
        dns: manage the /etc/hosts block (needs write access to /etc/hosts).
        node_capacity: what the one node has room for, e.g. {"pods": 3} or {"cpu": "4", "memory":
            "8Gi", "nvidia.com/gpu": 1}: pods that do not fit stay Pending, unbound, Unschedulable
            with the scheduler's message, until room frees (scheduler.py). None (default): every
            pod is bound at once, as before; the node reports this machine's CPUs and memory.
        pullable_images: the images a pull succeeds for (those in `images`, `image_files` and
            `rootfs_images` too); a container of any other image waits in ErrImagePull /
            ImagePullBackOff, its pod Pending, forever. None (default): every image pulls.
        kueue_quota: {queue name: pods}: run the Kueue stand-in (kueue.py), its webhook gating
            every pod labelled with a queue and its controller admitting whole pod groups within
            the queue's quota, in order; its admissions are in `self.kueue.admitted`. None
            (default): no Kueue.
    """

    def __init__(
        self,
        *,
        crd_paths: Iterable[Path] = (),
        admission: Admission | None = None,
        defaulter: Defaulter | None = None,
        workdir: Path,
        images: Mapping[str, list[str]] | None = None,
        dns: bool = True,
        image_files: Mapping[str, Mapping[str, str]] | None = None,
        rootfs_images: Mapping[str, Image] | None = None,
        node_capacity: Mapping[str, Any] | None = None,
        pullable_images: Iterable[str] | None = None,
        kueue_quota: Mapping[str, int] | None = None,
    ):
        self.crd_paths = [Path(p) for p in crd_paths]
        self.admission = admission
        self.defaulter = defaulter
        self.workdir = Path(workdir)
        self.images = dict(images or {})
        self.image_files = dict(image_files or {})
        self.rootfs_images = dict(rootfs_images or {})
        self.dns = dns
        self.node_capacity = dict(node_capacity) if node_capacity is not None else None
        self.pullable_images = set(pullable_images) if pullable_images is not None else None
        self.kueue_quota = dict(kueue_quota) if kueue_quota is not None else None
        self.url = ""
        self.kubeconfig = self.workdir / "kubeconfig"
        #: one entry per pod process the kubelet started:
        #: {pod, namespace, uid, pid, ip, started, exit_code, finished, argv, log, restart, liveness_failures}
        self.process_log: list[dict[str, Any]] = []
        self.api: ApiServer | None = None
        self.kubelet: Kubelet | None = None
        #: the Kueue stand-in while the cluster runs with `kueue_quota` (its `admitted` log), else None
        self.kueue: KueueStandIn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------------------------------
    # Lifecycle

    def __enter__(self) -> Cluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._thread_main, name="k8s-cluster", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise RuntimeError("the emulated cluster did not start")
        if self._error is not None:
            raise RuntimeError("the emulated cluster failed to start") from self._error
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "kmock",
                    "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                    "users": [{"name": "kmock", "user": {"token": "kmock"}}],
                    "contexts": [
                        {"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": "default"}}
                    ],
                }
            )
        )
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(START_TIMEOUT_S)

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._started.set()
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        api = ApiServer(admission=self.admission, defaulter=self.defaulter)
        for crd in load_crd_documents(self.crd_paths):
            api.load_crd(crd)
        hosts = HostsFile() if self.dns else None
        async with api, kmock.Server(api) as server:
            self.api, self.url = api, str(server.url).rstrip("/")
            if hosts is not None:
                hosts.start()
            kubelet = Kubelet(
                api,
                self.workdir,
                self.process_log,
                hosts=hosts,
                images=self.images,
                image_files=self.image_files,
                rootfs_images=self.rootfs_images,
                node_capacity=self.node_capacity,
                pullable_images=self.pullable_images,
            )
            self.kubelet = kubelet
            if self.kueue_quota is not None:
                self.kueue = KueueStandIn(api, self.kueue_quota)
                self.kueue.start()
            await kubelet.start()
            try:
                self._started.set()
                await self._stop.wait()
            finally:
                api.close_watches()
                if self.kueue is not None:
                    await self.kueue.stop()
                await kubelet.stop()
                if hosts is not None:
                    hosts.close()
                await asyncio.sleep(0.05)  # let the watch handlers end before the server closes

    def call(self, fn: Callable[[ApiServer], T], timeout: float = 30) -> T:
        """Run `fn(api_server)` in the cluster's loop (atomic there) and return its result."""
        if self._loop is None or self.api is None or not self._loop.is_running():
            raise RuntimeError("the cluster is not running")
        api = self.api

        async def run() -> T:
            return fn(api)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    # ------------------------------------------------------------------------------------------
    # API server trouble

    def inject_faults(self, rates: Mapping[str, float], *, seed: int = 0, **options: Any) -> None:
        """From now on the API server fails the operator's requests (kopf's and the kubernetes
        client's, by User-Agent; never kubectl's, nor this object's direct reads) at `rates`:
        {emulator.CONFLICT | THROTTLED | ERROR_BEFORE | ERROR_AFTER | WATCH_DROP: probability per
        request}. `options`: the rest of emulator.FaultInjector (agents, retry_after_s, drop_after)."""
        injector = FaultInjector(rates=dict(rates), seed=seed, **options)

        def install(api: ApiServer) -> None:
            api.faults = injector

        self.call(install)

    def stop_faults(self) -> FaultInjector | None:
        """No more faults; returns the injector (`injected`: counts by kind, `log`: each fault)."""

        def remove(api: ApiServer) -> FaultInjector | None:
            injector, api.faults = api.faults, None
            return copy.deepcopy(injector)

        return self.call(remove)

    def faults_injected(self) -> dict[str, int]:
        """How many faults of each kind were injected so far."""
        return self.call(lambda api: dict(api.faults.injected) if api.faults is not None else {})

    # ------------------------------------------------------------------------------------------
    # Clients

    def api_client(self) -> kubernetes.client.ApiClient:
        config = kubernetes.client.Configuration()
        config.host = self.url
        return kubernetes.client.ApiClient(config)

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for a client subprocess (kopf, the operator): KUBECONFIG set, no proxy."""
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "NO_PROXY": no_proxy, "no_proxy": no_proxy, **extra}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster (its own discovery cache under workdir)."""
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.workdir / 'kubectl-cache'}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    # ------------------------------------------------------------------------------------------
    # Reading and writing state directly (no HTTP)

    def list(
        self, group_version_plural: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[Obj]:
        match = am.parse_label_selector(label_selector)

        def read(api: ApiServer) -> list[Obj]:
            items = api.list(
                api.type_of(group_version_plural), namespace, lambda o: match(o["metadata"].get("labels") or {})
            )
            return copy.deepcopy(items)

        return self.call(read)

    def get(self, group_version_plural: str, namespace: str | None, name: str) -> Obj | None:
        return self.call(lambda api: copy.deepcopy(api.get(api.type_of(group_version_plural), namespace, name)))

    def pods(self, namespace: str | None = None) -> list[Obj]:
        return self.list("v1/pods", namespace)

    def services(self, namespace: str | None = None) -> list[Obj]:
        return self.list("v1/services", namespace)

    def create(self, group_version_plural: str, obj: Obj, namespace: str | None = None) -> Obj:
        """Create through the API semantics (admission included); raises emulator.ApiError."""
        return self.call(
            lambda api: copy.deepcopy(
                api.create(
                    api.type_of(group_version_plural), namespace or obj.get("metadata", {}).get("namespace"), obj
                )
            )
        )

    def delete(
        self, group_version_plural: str, namespace: str | None, name: str, propagation: str = "Background"
    ) -> Obj:
        return self.call(
            lambda api: copy.deepcopy(
                api.delete(api.type_of(group_version_plural), namespace, name, {"propagationPolicy": propagation})
            )
        )

    def pvc_path(self, claim: str, namespace: str = "default") -> Path:
        """The directory behind PersistentVolumeClaim `claim`: what a test writes there before a job
        runs, every pod mounting the claim reads (and what they write stays there)."""
        if self.kubelet is None:
            raise RuntimeError("the cluster is not running")
        return self.kubelet.pvc_dir(namespace, claim)

    def put_in_pvc(self, claim: str, files: Mapping[str, str | bytes], namespace: str = "default") -> Path:
        """Write `files` ({relative path: content}) into the claim's directory; returns it."""
        root = self.pvc_path(claim, namespace)
        for rel, content in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        return root

    def pod_log(self, name: str, namespace: str = "default") -> str:
        """The output of the pod's latest process (like `kubectl logs`)."""
        entries = [e for e in self.process_log if e["pod"] == name and e["namespace"] == namespace]
        return Path(entries[-1]["log"]).read_text(errors="replace") if entries else ""

    # ------------------------------------------------------------------------------------------
    # Waiting

    def wait_for(self, predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
        """Poll `predicate` until it returns something truthy (returned); AssertionError on timeout.

        Exceptions from the predicate propagate: make it total (`.get()`, not `[...]`).
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError(f"the emulated cluster stopped while waiting for {what}") from self._error
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{self.describe()}")
            time.sleep(interval)

    def describe(self) -> str:
        """One line per pod (phase, IP, container state) and per process: for failure messages."""
        lines = []
        try:
            for pod in self.pods():
                status = pod.get("status") or {}
                states = [
                    (cs.get("state") or {}).get("waiting", {}).get("reason") or next(iter(cs.get("state") or {}), "?")
                    for cs in status.get("containerStatuses") or []
                ]
                unscheduled = [
                    f" {c.get('reason')}: {c.get('message')}"
                    for c in status.get("conditions") or []
                    if c.get("type") == "PodScheduled" and c.get("status") == "False"
                ]
                lines.append(
                    f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']}: "
                    f"{status.get('phase')} ip={status.get('podIP')} containers={states}{''.join(unscheduled)}"
                    f"{' deleting' if pod['metadata'].get('deletionTimestamp') else ''}"
                )
        except RuntimeError:
            pass
        for entry in self.process_log[-20:]:
            lines.append(f"process {entry['namespace']}/{entry['pod']} pid={entry['pid']} exit={entry['exit_code']}")
        for error in (self.kubelet.errors if self.kubelet else [])[-3:]:
            lines.append(f"kubelet error: {error}")
        for error in (self.kueue.errors if self.kueue else [])[-3:]:
            lines.append(f"kueue stand-in error: {error}")
        for error in (self.api.internal_errors if self.api else [])[-3:]:
            lines.append(f"API server error: {error}")
        return "\n".join(lines) or "(no pods, no processes)"

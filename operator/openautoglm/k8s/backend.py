"""KubernetesBackend: a trial is one pod per Horovod rank plus a headless Service.

Names are deterministic (``<job>-t<N>-w<rank>``, Service ``<job>-t<N>``), so launching
again after an operator restart finds what exists (409) and creates only what is missing.
A trial run again (trial.retries) gets pods named ``<job>-t<N>-a<run>-w<rank>``: the failed
run's pods may still hold their names while they terminate.

Names and labels prove nothing: anyone who may create pods in the namespace can copy them. So a
pod, Service or NetworkPolicy is adopted, trusted or deleted only if its ownerReferences hold this
TuningJob's uid. A look-alike pod (our labels, another owner or none) is left alone and reported
once (a Warning event, :meth:`KubernetesBackend.take_notices`); a look-alike holding the name of
an object a launch needs refuses that launch (:class:`LaunchRefused`), and every delete carries
the uid it means as a precondition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from openautoglm import config
from openautoglm.engine.checkpoints import trial_subpath
from openautoglm.engine.queueing import MAX_WAITING_CHARS
from openautoglm.engine.trials import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    LaunchRefused,
    TrialObservation,
    WorkerObservation,
)
from openautoglm.engine.worker import trial_name, worker_name
from openautoglm.k8s.api import Api
from openautoglm.k8s.builders import (
    CONTAINER,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_RANK,
    LABEL_TRIAL,
    build_checkpoint_janitor,
    build_job_network_policy,
    build_trial_network_policy,
    build_trial_service,
    build_worker_pod,
    owned_by,
    parse_label_selector,
    trial_policy_name,
)
from openautoglm.spec import TuningJob

log = logging.getLogger(__name__)

_PHASES = {"Pending": PENDING, "Running": RUNNING, "Succeeded": SUCCEEDED, "Failed": FAILED}


def observe_pod(pod: dict[str, Any], port: int) -> WorkerObservation:
    """What a worker pod says about its rank: phase, endpoint, exit code, termination message."""
    labels = pod["metadata"].get("labels") or {}
    status = pod.get("status") or {}
    phase = _PHASES.get(status.get("phase", "Pending"), PENDING)
    ip = status.get("podIP")
    # The trial container's status, not a sidecar's (the kubelet sorts statuses by name).
    worker: dict[str, Any] = next(
        (cs for cs in status.get("containerStatuses") or [] if cs.get("name") == CONTAINER), {}
    )
    terminated = (worker.get("state") or {}).get("terminated")
    if terminated and phase in (PENDING, RUNNING):
        # A plain sidecar keeps the pod Running after the trial container exited: the rank is done.
        phase = SUCCEEDED if terminated.get("exitCode") == 0 else FAILED
    exit_code = terminated.get("exitCode") if terminated else None
    message = terminated.get("message") if terminated else None
    reason = None
    if phase == FAILED and not message:
        reason = (terminated or {}).get("reason") or status.get("reason") or status.get("message")
    if pod["metadata"].get("deletionTimestamp") and phase in (PENDING, RUNNING):
        phase = FAILED
        reason = "pod deleted"
    return WorkerObservation(
        _label_number(labels, LABEL_RANK),
        phase,
        f"{ip}:{port}" if ip else None,
        exit_code,
        message,
        reason,
        _label_number(labels, LABEL_ATTEMPT),
        waiting_reason(status, worker) if phase == PENDING else None,
    )


def waiting_reason(status: dict[str, Any], worker: dict[str, Any]) -> str | None:
    """Why a pending pod's trial container does not run, as "<Reason>: <message>": its scheduling
    (Unschedulable with the scheduler's message, SchedulingGated) before its container's state
    (ImagePullBackOff, ErrImagePull, ContainerCreating, CreateContainerConfigError ...)."""
    conditions = status.get("conditions")
    for cond in conditions if isinstance(conditions, list) else []:
        if isinstance(cond, dict) and cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return _reason_text(cond.get("reason") or "Unschedulable", cond.get("message"))
    state = worker.get("state")
    waiting = state.get("waiting") if isinstance(state, dict) else None
    if isinstance(waiting, dict) and waiting.get("reason"):
        return _reason_text(waiting["reason"], waiting.get("message"))
    return None


def _reason_text(reason: Any, message: Any) -> str:
    text = str(reason)[:64]
    if message:
        text += ": " + " ".join(str(message).split())[:MAX_WAITING_CHARS]
    return text


def _label_number(labels: dict[str, Any], key: str) -> int:
    """A rank or run number from a label; one that is not a small decimal (a hand-edited label)
    reads as 0, never as an error that would fail the pass."""
    value = labels.get(key)
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6 else 0


class KubernetesBackend:
    def __init__(
        self,
        job: TuningJob,
        job_body: dict[str, Any],
        api: Api,
        namespace: str,
        cfg: config.Settings | None = None,
    ):
        self.job = job
        self.body = job_body
        self.api = api
        self.namespace = namespace
        self.uid: str = job_body["metadata"]["uid"]
        self.cfg = cfg or config.load()
        #: The runs of each trial that have pods, from the last listing and this process's
        #: launches: what stop() deletes, without listing again.
        self._runs: dict[int, set[int]] = {}
        #: name -> uid of this job's own pods, from the last listing and this process's creates:
        #: a delete names the uid (a precondition), and a name not here is not ours to delete.
        self._pods: dict[str, str] = {}
        #: (kind, name) -> uid of the Services and NetworkPolicies this process created or read.
        self._others: dict[tuple[str, str], str] = {}
        #: Whether the job's NetworkPolicy is known to exist (created or found ours).
        self._job_policy = False
        #: uids of the look-alike pods reported so far (each once per operator process).
        self._reported: set[str] = set()
        self._notices: list[tuple[str, str]] = []
        #: The last (keep, below) whose checkpoints are gone, and the janitor pod at work, if any:
        #: (name, what it removes, when it was created: time.monotonic()).
        self._tidied: tuple[frozenset[int], int] | None = None
        self._janitor: tuple[str, tuple[frozenset[int], int], float] | None = None

    # ------------------------------------------------------------------ reading
    def observe(self) -> dict[int, TrialObservation]:
        pods = self.api.list_pods(self.namespace, {LABEL_JOB: self.job.name})
        by_trial: dict[int, list[WorkerObservation]] = {}
        owned: dict[str, str] = {}
        for pod in pods:
            meta = pod["metadata"]
            if not owned_by(pod, self.uid):
                self._look_alike(pod)
                continue
            owned[meta["name"]] = meta.get("uid") or ""
            number = (meta.get("labels") or {}).get(LABEL_TRIAL, "")
            if isinstance(number, str) and number.isascii() and number.isdigit():
                by_trial.setdefault(int(number), []).append(observe_pod(pod, self.job.spec.metrics.port))
        self._pods = owned
        size = self.job.spec.trial.workers
        self._runs = {n: {w.attempt for w in ws} | self._runs.get(n, set()) for n, ws in by_trial.items()}
        return {n: TrialObservation(n, sorted(ws, key=lambda w: w.rank), size) for n, ws in by_trial.items()}

    def _look_alike(self, pod: dict[str, Any]) -> None:
        """A pod with the job's labels that the job does not own: never adopted, trusted or
        deleted; said once as a Warning (someone copied our labels, or a stale object of a
        deleted job of the same name)."""
        meta = pod["metadata"]
        key = meta.get("uid") or meta["name"]
        if key in self._reported:
            return
        self._reported.add(key)
        owners = [f"{r.get('kind')}/{r.get('name')}" for r in meta.get("ownerReferences") or [] if isinstance(r, dict)]
        message = (
            f"pod {meta['name']} carries this job's labels but is not owned by it "
            f"(owner: {', '.join(owners) or 'none'}): ignored, neither adopted nor deleted"
        )
        log.warning("TuningJob %s/%s: %s", self.namespace, self.job.name, message)
        self._notices.append(("LookAlikePod", message))

    def take_notices(self) -> list[tuple[str, str]]:
        """(reason, message) of what deserves a Warning event since the last call: the backend
        runs on a pass thread, the daemon posts events (k8s/controller.py hands them over)."""
        notices, self._notices = self._notices, []
        return notices

    # ------------------------------------------------------------------ launching
    def launch(self, number: int, params: dict[str, Any], attempt: int = 0) -> None:
        self._runs.setdefault(number, set()).add(attempt)
        if self.cfg.trial_network_policy:
            # Before any pod: a pod that starts before its policy exists is open meanwhile.
            if not self._job_policy:
                self._ensure(
                    "NetworkPolicy",
                    self.api.ensure_network_policy,
                    self.api.read_network_policy,
                    self._job_policy_body(),
                )
                self._job_policy = True
            body = build_trial_network_policy(self.job, self.body, number, self.namespace)
            self._ensure("NetworkPolicy", self.api.ensure_network_policy, self.api.read_network_policy, body)
        body = build_trial_service(self.job, self.body, number, self.namespace)
        self._ensure("Service", self.api.ensure_service, self.api.read_service, body)
        for rank in range(self.job.spec.trial.workers):
            body = build_worker_pod(self.job, self.body, number, rank, params, self.namespace, attempt)
            pod = self._ensure("Pod", self.api.ensure_pod, self.api.read_pod, body)
            self._pods[body["metadata"]["name"]] = pod["metadata"].get("uid") or ""

    def _job_policy_body(self) -> dict[str, Any]:
        monitoring = self.cfg.monitoring_namespace_selector.strip()
        return build_job_network_policy(
            self.job,
            self.body,
            self.namespace,
            operator_namespace=self.cfg.operator_namespace,
            operator_pods=parse_label_selector(self.cfg.operator_pod_labels),
            monitoring_namespaces=parse_label_selector(monitoring) if monitoring else None,
        )

    def _ensure(
        self,
        kind: str,
        create: Callable[[dict[str, Any]], dict[str, Any] | None],
        read: Callable[[str, str], dict[str, Any] | None],
        body: dict[str, Any],
    ) -> dict[str, Any]:
        """Create ``body``, or adopt what holds its name if this job owns it (a crashed pass made
        it); anything else refuses the launch: someone else's object is never taken for ours."""
        name = body["metadata"]["name"]
        for _ in range(2):  # created, or found: once more only if it vanished in between
            obj = create(body) or read(self.namespace, name)
            if obj is None:
                continue
            if not owned_by(obj, self.uid):
                raise LaunchRefused(
                    f"a {kind} named {name} exists in {self.namespace} and is not owned by this TuningJob: "
                    "not adopted (delete it, or rename the job)"
                )
            if kind != "Pod":
                self._others[(kind, name)] = obj["metadata"].get("uid") or ""
            return obj
        raise LaunchRefused(f"the {kind} {name} was deleted as it was created, twice")

    # ------------------------------------------------------------------ stopping
    def retire(self, number: int, attempt: int, reason: str) -> None:
        log.info("stopping run %d of trial %s: %s", attempt, trial_name(self.job.name, number), reason)
        for rank in range(self.job.spec.trial.workers):
            self._delete_pod(worker_name(self.job.name, number, rank, attempt))
        self._runs.get(number, set()).discard(attempt)

    def stop(self, number: int, reason: str) -> None:
        log.info("stopping trial %s: %s", trial_name(self.job.name, number), reason)
        for attempt in sorted(self._runs.get(number) or {0}):
            for rank in range(self.job.spec.trial.workers):
                self._delete_pod(worker_name(self.job.name, number, rank, attempt))

    def release(self, number: int) -> None:
        self.stop(number, "released")
        self._delete_other("Service", trial_name(self.job.name, number))
        if self.cfg.trial_network_policy:
            self._delete_other("NetworkPolicy", trial_policy_name(self.job.name, number))
        self._runs.pop(number, None)

    def _delete_pod(self, name: str) -> None:
        """Delete one of our pods. Every pass lists them first (observe) and a launch records what
        it creates, so a name missing from that record is someone else's or not there."""
        uid = self._pods.get(name)
        if uid:
            self.api.delete_pod(self.namespace, name, uid)

    def _delete_other(self, kind: str, name: str) -> None:
        """Delete our Service or NetworkPolicy ``name``, read first if this process has not seen
        it (after a restart); someone else's of that name is left alone."""
        uid = self._others.pop((kind, name), None)
        read, delete = {
            "Service": (self.api.read_service, self.api.delete_service),
            "NetworkPolicy": (self.api.read_network_policy, self.api.delete_network_policy),
        }[kind]
        if uid is None:
            obj = read(self.namespace, name)
            if obj is None or not owned_by(obj, self.uid):
                return
            uid = obj["metadata"].get("uid") or ""
        delete(self.namespace, name, uid)

    def update(self, job: TuningJob) -> None:
        self.job = job

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_location(self, number: int) -> dict[str, str] | None:
        ck = self.job.spec.trial.checkpoint
        if ck is None or not ck.claim:
            return None
        return {"claim": ck.claim, "path": trial_subpath(self.namespace, self.job.name, number)}

    def tidy_checkpoints(self, keep: set[int], below: int) -> bool:
        """Run a janitor pod (build_checkpoint_janitor) per change of what is kept, one at a time.
        A janitor that fails, or cannot start within trial.pendingTimeoutSeconds, is said as a
        Warning and given up on (its trials' files stay): a job is never held open by it."""
        ck = self.job.spec.trial.checkpoint
        wanted = (frozenset(keep), below)
        if ck is None or not ck.claim or wanted == self._tidied:
            return True
        if self._janitor is not None:
            name, doing, started = self._janitor
            if not self._janitor_over(name, started):
                return False
            self._janitor = None
            if doing == wanted:
                self._tidied = wanted
                return True
        body = build_checkpoint_janitor(self.job, self.body, self.namespace, wanted[0], below)
        try:
            pod = self._ensure("Pod", self.api.ensure_pod, self.api.read_pod, body)
        except LaunchRefused as err:
            self._notices.append(("CheckpointsNotRemoved", str(err)))
            self._tidied = wanted
            return True
        self._pods[body["metadata"]["name"]] = pod["metadata"].get("uid") or ""
        self._janitor = (body["metadata"]["name"], wanted, time.monotonic())
        return False

    def _janitor_over(self, name: str, started: float) -> bool:
        """Whether the janitor pod ``name`` is done (then deleted); a failure is said once."""
        pod = self.api.read_pod(self.namespace, name)
        if pod is None:
            return True
        phase = (pod.get("status") or {}).get("phase")
        late = phase == "Pending" and time.monotonic() - started > self.job.spec.trial.pending_timeout_seconds
        if phase not in ("Succeeded", "Failed") and not late:
            return False
        if phase != "Succeeded":
            why = "did not start in time" if late else f"failed: {observe_pod(pod, 0).reason or 'see its log'}"
            self._notices.append(
                ("CheckpointsNotRemoved", f"pod {name}, removing checkpoints trial.checkpoint.keep lets go, {why}")
            )
        if owned_by(pod, self.uid):
            self.api.delete_pod(self.namespace, name, pod["metadata"].get("uid") or "")
        return True

    def close(self) -> None:
        pass

    def delete_all(self) -> None:
        """Remove every pod, Service and NetworkPolicy the job owns (the TuningJob is being
        deleted); look-alikes with its labels stay."""
        labels = {LABEL_JOB: self.job.name}
        for listed, delete in (
            (self.api.list_pods, self.api.delete_pod),
            (self.api.list_services, self.api.delete_service),
            (self.api.list_network_policies, self.api.delete_network_policy),
        ):
            for obj in listed(self.namespace, labels):
                if owned_by(obj, self.uid):
                    delete(self.namespace, obj["metadata"]["name"], obj["metadata"]["uid"])

"""Pure builders of the manifests the operator writes: worker pods, the trial Service, the
NetworkPolicies isolating trials, the TuningJob status. They return dicts, touch no server, and
are unit-tested alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from typing import Any, Final

from openautoglm import podtemplate
from openautoglm.engine.checkpoints import job_subpath, trial_subpath
from openautoglm.engine.status import JobStatus
from openautoglm.engine.worker import build_worker_env, trial_name, worker_command, worker_name
from openautoglm.spec import API_VERSION, KIND, TuningJob
from openautoglm_trial import contract as c

LABEL_JOB: Final = "openautoglm.io/job"
LABEL_TRIAL: Final = "openautoglm.io/trial"
LABEL_RANK: Final = "openautoglm.io/rank"
#: Which run of the trial the pod belongs to (0, or a retry: trial.retries).
LABEL_ATTEMPT: Final = "openautoglm.io/attempt"
#: Non-root user of the trial image (trial_image/Dockerfile).
TRIAL_UID: Final = 10001
CONTAINER: Final = podtemplate.WORKER_CONTAINER
#: The claim of trial.checkpoint, mounted at contract.CHECKPOINT_MOUNT_PATH.
CHECKPOINT_VOLUME: Final = "openautoglm-checkpoint"
#: Kueue's plain-pod groups (https://kueue.sigs.k8s.io/docs/tasks/run/plain_pods/): every rank of
#: one run of a trial is one group, admitted whole; its webhook gates the pods until then.
KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP_LABEL: Final = "kueue.x-k8s.io/pod-group-name"
KUEUE_GROUP_COUNT: Final = "kueue.x-k8s.io/pod-group-total-count"


def owner_reference(job_body: dict[str, Any]) -> dict[str, Any]:
    """Owned by the TuningJob: deleting the job garbage-collects its pods and services."""
    meta = job_body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def trial_labels(job: str, number: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "openautoglm-trial",
        "app.kubernetes.io/instance": job,
        "app.kubernetes.io/component": "trial-worker",
        "app.kubernetes.io/part-of": "openautoglm",
        "app.kubernetes.io/managed-by": "openautoglm-operator",
        LABEL_JOB: job,
        LABEL_TRIAL: str(number),
    }


def worker_hosts(job: str, number: int, namespace: str, workers: int, attempt: int = 0) -> list[str]:
    """DNS names of the ranks: pod hostname + the headless Service as subdomain."""
    service = trial_name(job, number)
    return [f"{worker_name(job, number, r, attempt)}.{service}.{namespace}.svc" for r in range(workers)]


def _restricted_pod_security() -> dict[str, Any]:
    # The "restricted" Pod Security Standard, pod level: the trial image's non-root user; fsGroup
    # makes the volumes (the checkpoint claim too) writable by it.
    return {
        "runAsNonRoot": True,
        "runAsUser": TRIAL_UID,
        "runAsGroup": TRIAL_UID,
        "fsGroup": TRIAL_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _restricted_container_security() -> dict[str, Any]:
    # The "restricted" Pod Security Standard, container level.
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_worker_pod(
    job: TuningJob,
    job_body: dict[str, Any],
    number: int,
    rank: int,
    params: dict[str, Any],
    namespace: str,
    attempt: int = 0,
) -> dict[str, Any]:
    """The pod of Horovod rank ``rank`` of run ``attempt`` of trial ``number``, with
    ``spec.trial.podTemplate`` merged under it."""
    spec = job.spec
    hosts = worker_hosts(job.name, number, namespace, spec.trial.workers, attempt)
    claim = spec.trial.checkpoint.claim if spec.trial.checkpoint is not None else None
    env = build_worker_env(
        job,
        number,
        rank,
        params,
        hosts,
        bind_address="",
        checkpoint_dir=c.CHECKPOINT_MOUNT_PATH if claim else None,
        run=attempt,
        namespace=namespace,
    )
    # The kubelet mounts /dev/termination-log; the runtime writes there by default.
    env.pop(c.TERMINATION_LOG, None)
    env.pop(c.BIND_ADDRESS, None)
    env["HOME"] = "/tmp"  # read-only root file system: caches go to the emptyDir
    # The image's cache dir (/var/cache/openautoglm) is on that read-only root too: a text-lm trial
    # caches its tokenizer there (tests/images found it failing with EROFS).
    env[c.CACHE_DIR] = "/tmp/openautoglm-cache"
    env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    # Listen on the pod IP: the kubelet probes it and peers scrape it.
    env_list.append({"name": c.BIND_ADDRESS, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    port = spec.metrics.port
    labels = {**trial_labels(job.name, number), LABEL_RANK: str(rank), LABEL_ATTEMPT: str(attempt)}
    requests, limits = spec.trial.resources.effective()
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": worker_name(job.name, number, rank, attempt),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(job_body)],
        },
        "spec": {
            "hostname": worker_name(job.name, number, rank, attempt),
            "subdomain": trial_name(job.name, number),
            "restartPolicy": "Never",  # a failed rank fails the trial; Optuna decides what next
            "automountServiceAccountToken": False,  # trials never talk to the API server
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 30,
            "securityContext": _restricted_pod_security(),
            "containers": [
                {
                    "name": CONTAINER,
                    "image": spec.trial.image,
                    "command": worker_command(job),
                    "env": env_list,
                    "ports": [
                        {"name": "metrics", "containerPort": port, "protocol": "TCP"},
                        {"name": "rendezvous", "containerPort": c.DEFAULT_RENDEZVOUS_PORT, "protocol": "TCP"},
                    ],
                    "resources": {k: v for k, v in (("requests", requests), ("limits", limits)) if v},
                    # Importing torch takes seconds: a startup probe keeps liveness from firing early.
                    "startupProbe": {
                        "httpGet": {"path": "/healthz", "port": "metrics"},
                        "periodSeconds": 2,
                        "failureThreshold": 60,
                        "timeoutSeconds": 2,
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "metrics"},
                        "periodSeconds": 10,
                        "failureThreshold": 3,
                        "timeoutSeconds": 5,
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/readyz", "port": "metrics"},
                        "periodSeconds": 2,
                        "failureThreshold": 3,
                        "timeoutSeconds": 2,
                    },
                    "terminationMessagePath": c.DEFAULT_TERMINATION_LOG,
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "securityContext": _restricted_container_security(),
                    "volumeMounts": [{"name": podtemplate.TMP_VOLUME, "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": podtemplate.TMP_VOLUME, "emptyDir": {}}],
        },
    }
    if claim:
        _mount_checkpoints(pod, claim, trial_subpath(namespace, job.name, number))
    kueue = spec.trial.scheduling.kueue
    if kueue is not None:
        # One group per run: a requeued or retried run is a new workload, never the old one's rest.
        labels[KUEUE_QUEUE_LABEL] = kueue.queue_name
        labels[KUEUE_GROUP_LABEL] = worker_name(job.name, number, 0, attempt).removesuffix("-w0")
        pod["metadata"]["annotations"] = {KUEUE_GROUP_COUNT: str(spec.trial.workers)}
    return podtemplate.merge_into_pod(pod, spec.trial.pod_template)


def _mount_checkpoints(pod: dict[str, Any], claim: str, subpath: str) -> None:
    """The claim's ``subpath`` at the checkpoint mount: every rank and run of a trial sees one
    directory (the kubelet creates it on first use), and nothing of other trials or jobs."""
    pod["spec"]["volumes"].append({"name": CHECKPOINT_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": CHECKPOINT_VOLUME, "mountPath": c.CHECKPOINT_MOUNT_PATH, "subPath": subpath}
    )


def janitor_name(job: str, keep: set[int] | frozenset[int], below: int) -> str:
    """One name per removal (what it keeps and up to which trial): an operator restarted mid-way
    finds its own pod instead of starting a second."""
    digest = hashlib.sha256(f"{sorted(keep)}:{below}".encode()).hexdigest()[:8]
    return f"{job}-ckpt-{digest}"


def build_checkpoint_janitor(
    job: TuningJob, job_body: dict[str, Any], namespace: str, keep: set[int] | frozenset[int], below: int
) -> dict[str, Any]:
    """A pod that removes the checkpoints trial.checkpoint.keep lets go: the operator never mounts
    a tenant's claim, so a pod in the job's namespace, with the trial image and the trial pods'
    restrictions, does it. It sees only the job's directory on the claim."""
    spec = job.spec
    assert spec.trial.checkpoint is not None and spec.trial.checkpoint.claim
    labels = {
        **trial_labels(job.name, 0),
        "app.kubernetes.io/component": "checkpoint-janitor",
    }
    del labels[LABEL_TRIAL]  # not a trial's pod: observe() passes it by
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": janitor_name(job.name, keep, below),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(job_body)],
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "activeDeadlineSeconds": 600,
            "securityContext": _restricted_pod_security(),
            "containers": [
                {
                    "name": "janitor",
                    "image": spec.trial.image,
                    "command": [
                        "python",
                        "-m",
                        "openautoglm_trial.prune",
                        c.CHECKPOINT_MOUNT_PATH,
                        "--below",
                        str(below),
                        "--keep",
                        ",".join(str(n) for n in sorted(keep)),
                    ],
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "200m", "memory": "128Mi"},
                    },
                    "securityContext": _restricted_container_security(),
                    "volumeMounts": [],
                }
            ],
            "volumes": [],
        },
    }
    _mount_checkpoints(pod, spec.trial.checkpoint.claim, job_subpath(namespace, job.name))
    return pod


def build_trial_service(job: TuningJob, job_body: dict[str, Any], number: int, namespace: str) -> dict[str, Any]:
    """Headless Service giving the ranks of a trial their DNS names."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": trial_name(job.name, number),
            "namespace": namespace,
            "labels": trial_labels(job.name, number),
            "ownerReferences": [owner_reference(job_body)],
        },
        "spec": {
            "clusterIP": "None",
            # Rank 0 is ready only after hvd.init(), which needs the other ranks to reach
            # it by name first: publish the names before readiness or they deadlock.
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB: job.name, LABEL_TRIAL: str(number)},
            "ports": [
                {"name": "rendezvous", "port": c.DEFAULT_RENDEZVOUS_PORT, "targetPort": "rendezvous"},
                {"name": "metrics", "port": job.spec.metrics.port, "targetPort": "metrics"},
            ],
        },
    }


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """Whether ``obj`` is one of the TuningJob ``uid``'s own objects. Names and labels prove
    nothing (anyone who may create pods in the namespace can copy them); the owner's uid does."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(ref, dict) and ref.get("uid") == uid for ref in refs)


#: A label key (an optional DNS-subdomain prefix and a name) and a label value, as the API server
#: checks them: a selector it would refuse is refused at start-up instead of at every launch.
_KEY: Final = r"(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_VALUE: Final = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"


def parse_label_selector(text: str) -> dict[str, Any]:
    """A LabelSelector from its text form (``kubectl -l``): ``k=v``/``k==v`` (matchLabels),
    ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k`` (matchExpressions). Raises
    ValueError on anything else; an empty text selects everything (``{}``)."""
    labels: dict[str, str] = {}
    exprs: list[dict[str, Any]] = []
    for term in _selector_terms(text):
        if m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s+\(([^()]*)\)", term):
            values = [v.strip() for v in m.group(3).split(",")]
            if not all(re.fullmatch(_VALUE, v) for v in values):
                raise ValueError(f"not a label selector term: {term!r} (in {text!r})")
            exprs.append({"key": m.group(1), "operator": "In" if m.group(2) == "in" else "NotIn", "values": values})
        elif m := re.fullmatch(rf"({_KEY})\s*!=\s*({_VALUE})", term):
            exprs.append({"key": m.group(1), "operator": "NotIn", "values": [m.group(2)]})
        elif m := re.fullmatch(rf"({_KEY})\s*==?\s*({_VALUE})", term):
            labels[m.group(1)] = m.group(2)
        elif m := re.fullmatch(rf"!\s*({_KEY})", term):
            exprs.append({"key": m.group(1), "operator": "DoesNotExist"})
        elif re.fullmatch(_KEY, term):
            exprs.append({"key": term, "operator": "Exists"})
        else:
            raise ValueError(f"not a label selector term: {term!r} (in {text!r})")
    selector: dict[str, Any] = {}
    if labels:
        selector["matchLabels"] = labels
    if exprs:
        selector["matchExpressions"] = exprs
    return selector


def _selector_terms(text: str) -> list[str]:
    """Split on the commas outside parentheses (``a in (x,y),b`` is two terms)."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t.strip() for t in terms if t.strip()]


def job_policy_name(job: str) -> str:
    """The job's NetworkPolicy: ``-trials`` never ends a trial's name (``<job>-t<N>``), nor the
    trial policy's, so no other job's object can hold it (job names: <= 40 characters)."""
    return f"{job}-trials"


def trial_policy_name(job: str, number: int) -> str:
    return f"{trial_name(job, number)}-peers"


def _policy_labels(job: str, number: int | None) -> dict[str, str]:
    labels = {**trial_labels(job, 0 if number is None else number), "app.kubernetes.io/component": "trial-network"}
    if number is None:
        del labels[LABEL_TRIAL]
    return labels


def build_job_network_policy(
    job: TuningJob,
    job_body: dict[str, Any],
    namespace: str,
    *,
    operator_namespace: str,
    operator_pods: dict[str, Any],
    monitoring_namespaces: dict[str, Any] | None,
) -> dict[str, Any]:
    """Ingress to every trial pod of the job: its /metrics from the operator's pods and from pods
    in the monitoring namespaces (``None``: no such rule), nothing else. Rendezvous and Gloo are
    let in by each trial's own policy (:func:`build_trial_network_policy`): policies add up.

    The port is named, not numbered: an edited ``spec.metrics.port`` applies to later trials only,
    and each pod names its own."""
    metrics_port = [{"port": "metrics", "protocol": "TCP"}]
    ingress: list[dict[str, Any]] = [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": operator_namespace}},
                    "podSelector": operator_pods,
                }
            ],
            "ports": metrics_port,
        }
    ]
    if monitoring_namespaces is not None:
        ingress.append({"from": [{"namespaceSelector": monitoring_namespaces}], "ports": metrics_port})
    selected = {"matchLabels": {LABEL_JOB: job.name}}
    return _ingress_policy(job, job_body, namespace, job_policy_name(job.name), None, selected, ingress)


def build_trial_network_policy(job: TuningJob, job_body: dict[str, Any], number: int, namespace: str) -> dict[str, Any]:
    """Ingress to the pods of one trial from the pods of that trial, on every port: Horovod's
    rendezvous (an unauthenticated key-value store) and Gloo's rank-to-rank connections, which
    use ephemeral ports."""
    peers = {"matchLabels": {LABEL_JOB: job.name, LABEL_TRIAL: str(number)}}
    # A podSelector alone is this namespace; no ports: all of them.
    ingress = [{"from": [{"podSelector": peers}]}]
    return _ingress_policy(job, job_body, namespace, trial_policy_name(job.name, number), number, peers, ingress)


def _ingress_policy(
    job: TuningJob,
    job_body: dict[str, Any],
    namespace: str,
    name: str,
    number: int | None,
    selected: dict[str, Any],
    ingress: list[dict[str, Any]],
) -> dict[str, Any]:
    """A NetworkPolicy of the job (of trial ``number``, or the whole job for None), owned by it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _policy_labels(job.name, number),
            "ownerReferences": [owner_reference(job_body)],
        },
        "spec": {
            "podSelector": selected,
            # Ingress only: where trials may connect to is the user's (their podTemplate's) policy.
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def _timestamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: kstatus (sigs.k8s.io/cli-utils) reads Reconciling and Stalled, Flux and ``kubectl wait`` read
#: Ready; Running/Succeeded/Failed are the job's own. Every condition carries observedGeneration,
#: so a tool can tell a status about the spec it just applied from one about the spec before.
CONDITION_TYPES: Final = ("Ready", "Reconciling", "Stalled", "Running", "Succeeded", "Failed")
SPEC_CHANGE_REFUSED: Final = "SpecChangeRefused"
#: Stalled: the job's study storage (PostgreSQL) does not answer; it resumes when it does.
STORAGE_UNAVAILABLE: Final = "StorageUnavailable"
#: Stalled: the volume of the job's study journal is full (or over quota); it resumes when it has room.
STORAGE_FULL: Final = "StorageFull"
#: The job names a storage Secret (or key) that is not there (yet).
STORAGE_SECRET_MISSING: Final = "StorageSecretMissing"
#: Stalled: the storage Secret's value is not a PostgreSQL URL (the message names the Secret and
#: key, never the value).
STORAGE_SECRET_INVALID: Final = "StorageSecretInvalid"
#: Stalled: the job names a server (Prometheus, PostgreSQL) or a journal outside its namespace's
#: studies directory that the operator's settings do not allow.
CONNECTION_NOT_ALLOWED: Final = "ConnectionNotAllowed"
#: Stalled: a reconcile pass raised (a bug, or a study the operator cannot read); the operator logs
#: the traceback once and retries with backoff, so the status says so instead of nothing.
PASS_FAILED: Final = "PassFailed"


def build_conditions(
    previous: list[dict[str, Any]] | None,
    phase: str,
    reason: str | None,
    message: str | None,
    generation: int | None,
    now: dt.datetime,
    *,
    refused: str | None = None,
    unavailable: str | None = None,
    unavailable_reason: str = STORAGE_UNAVAILABLE,
) -> list[dict[str, Any]]:
    """Conditions as Kubernetes wants them: lastTransitionTime changes only on a transition.

    ``phase`` is Pending, Running, Succeeded, Failed or Invalid (a spec the operator cannot run);
    ``refused`` says why the newest spec edit was not applied (the job goes on with the one before,
    so GitOps sees Stalled/Degraded rather than a silent no-op); ``unavailable`` says why the
    job's study storage cannot be reached or written, ``unavailable_reason`` how (StorageUnavailable,
    StorageFull); the trials go on, and the job resumes when it can be written again."""
    old = {cnd.get("type"): cnd for cnd in previous or []}
    active = phase in ("Pending", "Running")
    failed = phase in ("Failed", "Invalid")
    stalled = failed or refused is not None or unavailable is not None
    if unavailable is not None:
        stalled_why: tuple[str, str | None] = (unavailable_reason, unavailable)
    elif refused is not None:
        stalled_why = (SPEC_CHANGE_REFUSED, refused)
    else:
        stalled_why = (reason or phase, message)
    wanted: dict[str, tuple[bool, str, str | None]] = {
        "Ready": (
            phase == "Succeeded" and not stalled,
            reason or phase if phase == "Succeeded" else "NotFinished",
            message,
        ),
        "Reconciling": (active and not stalled, "TrialsRunning" if active else (reason or phase), message),
        "Stalled": (stalled, *stalled_why) if stalled else (False, "NotStalled", None),
        "Running": (active, "TrialsRunning" if active else (reason or phase), message),
        "Succeeded": (phase == "Succeeded", reason or phase if phase == "Succeeded" else "NotFinished", message),
        "Failed": (failed, reason or phase if failed else "NotFailed", message),
    }
    out = []
    for ctype in CONDITION_TYPES:
        ok, why, text = wanted[ctype]
        status = "True" if ok else "False"
        prev = old.get(ctype)
        changed = prev is None or prev.get("status") != status
        out.append(
            {
                "type": ctype,
                "status": status,
                "reason": why,
                "message": (text or "") if ok else "",
                "lastTransitionTime": (
                    _timestamp(now) if prev is None or changed else prev.get("lastTransitionTime", _timestamp(now))
                ),
                "observedGeneration": generation,
            }
        )
    return out


def build_resource_status(
    status: JobStatus,
    *,
    previous: dict[str, Any] | None,
    generation: int | None,
    start_time: str,
    now: dt.datetime,
    storage: str,
    refused: str | None = None,
) -> dict[str, Any]:
    """The TuningJob resource's .status from the engine's JobStatus: same size at 10 or 10,000 trials."""
    counts = status.counts
    out: dict[str, Any] = {
        "phase": status.phase,
        "reason": status.reason,
        "message": status.message,
        "observedGeneration": generation,
        "conditions": build_conditions(
            (previous or {}).get("conditions"),
            status.phase,
            status.reason,
            status.message,
            generation,
            now,
            refused=refused,
        ),
        "trials": counts,
        "progress": f"{counts['finished']}/{counts['max']}",
        "bestTrial": status.best,
        "paretoFront": status.pareto or None,
        "recentTrials": status.recent,
        "startTime": start_time,
        # A finished job that an edit continues is not complete any more.
        "completionTime": ((previous or {}).get("completionTime") or _timestamp(now)) if status.terminal else None,
        "elapsedSeconds": status.elapsed_seconds,
        "studyStorage": storage,
        # Kept on a finished job until its janitor pod is done: the operator drives it until then.
        "checkpointsPending": True if status.checkpoints_pending else None,
    }
    return out


#: Status fields written as soon as they change: what `kubectl wait`, Argo CD's health check and
#: a GitOps controller act on. The rest (counts, best, recent trials) may wait for the next write.
PROMPT_STATUS_FIELDS = ("phase", "reason", "message", "observedGeneration", "conditions", "checkpointsPending")


def status_worth_writing(
    previous: dict[str, Any] | None,
    status: dict[str, Any],
    elapsed_step: float,
    *,
    since_written: float = math.inf,
    min_interval: float = 0.0,
) -> bool:
    """Whether a new status differs enough from the written one to patch it now.

    A change of a prompt field is written at once; any other change once ``min_interval``
    seconds have passed since the last write (a busy job finishing trials every few
    milliseconds wrote its status after every one, a patch and a watch event per trial for
    every reader); the elapsed time alone once it moved by ``elapsed_step`` seconds (it always
    moves: patching it on every pass wrote the status for nothing a reader needs)."""
    if previous is None:
        return True
    if any(previous.get(k) != status.get(k) for k in PROMPT_STATUS_FIELDS):
        return True
    before = {k: v for k, v in previous.items() if k != "elapsedSeconds"}
    after = {k: v for k, v in status.items() if k != "elapsedSeconds"}
    if before != after:
        return since_written >= min_interval
    old, new = previous.get("elapsedSeconds"), status.get("elapsedSeconds")
    if old is None or new is None:
        return old != new
    return abs(new - old) >= elapsed_step


def build_invalid_status(
    problems: list[str], *, previous: dict[str, Any] | None, generation: int | None, now: dt.datetime
) -> dict[str, Any]:
    message = "; ".join(problems)[:4000]
    return {
        "phase": "Failed",
        "reason": "InvalidSpec",
        "message": message,
        "observedGeneration": generation,
        "conditions": build_conditions(
            (previous or {}).get("conditions"), "Invalid", "InvalidSpec", message, generation, now
        ),
    }


def build_stalled_status(
    previous: dict[str, Any] | None,
    *,
    generation: int | None,
    now: dt.datetime,
    message: str,
    reason: str = STORAGE_UNAVAILABLE,
) -> dict[str, Any]:
    """The last status written, with Stalled=True (``reason``: StorageUnavailable, StorageFull,
    StorageSecretMissing, PassFailed) and why: a pass cannot run, so nothing else in the status can
    be brought up to date until it can."""
    status = dict(previous or {})
    status["conditions"] = build_conditions(
        status.get("conditions"),
        status.get("phase") or "Running",
        status.get("reason"),
        status.get("message"),
        generation,
        now,
        unavailable=message,
        unavailable_reason=reason,
    )
    return status

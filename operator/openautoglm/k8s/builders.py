"""Pure builders of the manifests the operator writes: worker pods, the trial Service,
the TuningJob status. They return dicts, touch no server, and are unit-tested alone.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Final

from openautoglm_trial import contract as c

from openautoglm import podtemplate
from openautoglm.spec import API_VERSION, KIND
from openautoglm.spec import TuningJob
from openautoglm.engine.status import JobStatus
from openautoglm.engine.worker import build_worker_env, trial_name, worker_command, worker_name

LABEL_JOB: Final = "openautoglm.io/job"
LABEL_TRIAL: Final = "openautoglm.io/trial"
LABEL_RANK: Final = "openautoglm.io/rank"
#: Non-root user of the trial image (trial_image/Dockerfile).
TRIAL_UID: Final = 10001
CONTAINER: Final = podtemplate.WORKER_CONTAINER


def owner_reference(job_body: dict[str, Any]) -> dict[str, Any]:
    """Owned by the TuningJob: deleting the job garbage-collects its pods and services."""
    meta = job_body["metadata"]
    return {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


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


def worker_hosts(job: str, number: int, namespace: str, workers: int) -> list[str]:
    """DNS names of the ranks: pod hostname + the headless Service as subdomain."""
    return [f"{worker_name(job, number, r)}.{trial_name(job, number)}.{namespace}.svc" for r in range(workers)]


def _restricted_container_security() -> dict[str, Any]:
    # The "restricted" Pod Security Standard, container level.
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
            "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"}}


def build_worker_pod(job: TuningJob, job_body: dict[str, Any], number: int, rank: int,
                     params: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The pod of Horovod rank ``rank`` of trial ``number``, with ``spec.trial.podTemplate`` merged under it."""
    spec = job.spec
    hosts = worker_hosts(job.name, number, namespace, spec.trial.workers)
    env = build_worker_env(job, number, rank, params, hosts, bind_address="")
    # The kubelet mounts /dev/termination-log; the runtime writes there by default.
    env.pop(c.TERMINATION_LOG, None)
    env.pop(c.BIND_ADDRESS, None)
    env["HOME"] = "/tmp"  # read-only root file system: caches go to the emptyDir
    env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    # Listen on the pod IP: the kubelet probes it and peers scrape it.
    env_list.append({"name": c.BIND_ADDRESS, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    port = spec.metrics.port
    labels = {**trial_labels(job.name, number), LABEL_RANK: str(rank)}
    requests, limits = spec.trial.resources.effective()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": worker_name(job.name, number, rank), "namespace": namespace, "labels": labels,
                     "ownerReferences": [owner_reference(job_body)]},
        "spec": {
            "hostname": worker_name(job.name, number, rank),
            "subdomain": trial_name(job.name, number),
            "restartPolicy": "Never",   # a failed rank fails the trial; Optuna decides what next
            "automountServiceAccountToken": False,   # trials never talk to the API server
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {"runAsNonRoot": True, "runAsUser": TRIAL_UID, "runAsGroup": TRIAL_UID,
                                "fsGroup": TRIAL_UID, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": CONTAINER,
                "image": spec.trial.image,
                "command": worker_command(job),
                "env": env_list,
                "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"},
                          {"name": "rendezvous", "containerPort": c.DEFAULT_RENDEZVOUS_PORT, "protocol": "TCP"}],
                "resources": {k: v for k, v in (("requests", requests), ("limits", limits)) if v},
                # Importing torch takes seconds: a startup probe keeps liveness from firing early.
                "startupProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 2,
                                 "failureThreshold": 60, "timeoutSeconds": 2},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10,
                                  "failureThreshold": 3, "timeoutSeconds": 5},
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 2,
                                   "failureThreshold": 3, "timeoutSeconds": 2},
                "terminationMessagePath": c.DEFAULT_TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": _restricted_container_security(),
                "volumeMounts": [{"name": podtemplate.TMP_VOLUME, "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": podtemplate.TMP_VOLUME, "emptyDir": {}}],
        },
    }
    return podtemplate.merge_into_pod(pod, spec.trial.pod_template)


def build_trial_service(job: TuningJob, job_body: dict[str, Any], number: int, namespace: str) -> dict[str, Any]:
    """Headless Service giving the ranks of a trial their DNS names."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": trial_name(job.name, number), "namespace": namespace,
                     "labels": trial_labels(job.name, number), "ownerReferences": [owner_reference(job_body)]},
        "spec": {
            "clusterIP": "None",
            # Rank 0 is ready only after hvd.init(), which needs the other ranks to reach
            # it by name first: publish the names before readiness or they deadlock.
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB: job.name, LABEL_TRIAL: str(number)},
            "ports": [{"name": "rendezvous", "port": c.DEFAULT_RENDEZVOUS_PORT, "targetPort": "rendezvous"},
                      {"name": "metrics", "port": job.spec.metrics.port, "targetPort": "metrics"}],
        },
    }


def _timestamp(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


CONDITION_TYPES: Final = ("Ready", "Running", "Succeeded", "Failed")


def build_conditions(previous: list[dict[str, Any]] | None, phase: str, reason: str | None, message: str | None,
                     generation: int | None, now: dt.datetime) -> list[dict[str, Any]]:
    """Conditions as Kubernetes wants them: lastTransitionTime changes only on a transition."""
    old = {cnd.get("type"): cnd for cnd in previous or []}
    wanted = {
        # Ready: the spec was accepted and the operator drives the job.
        "Ready": (phase != "Invalid", "Accepted" if phase != "Invalid" else (reason or "InvalidSpec")),
        "Running": (phase in ("Pending", "Running"), "TrialsRunning" if phase in ("Pending", "Running") else (reason or phase)),
        "Succeeded": (phase == "Succeeded", reason or phase if phase == "Succeeded" else "NotFinished"),
        "Failed": (phase in ("Failed", "Invalid"), reason or phase if phase in ("Failed", "Invalid") else "NotFailed"),
    }
    out = []
    for ctype in CONDITION_TYPES:
        ok, why = wanted[ctype]
        status = "True" if ok else "False"
        prev = old.get(ctype)
        changed = prev is None or prev.get("status") != status
        out.append({
            "type": ctype, "status": status, "reason": why,
            "message": (message or "") if ok else "",
            "lastTransitionTime": _timestamp(now) if changed else prev.get("lastTransitionTime", _timestamp(now)),
            "observedGeneration": generation,
        })
    return out


def build_status(status: JobStatus, *, previous: dict[str, Any] | None, generation: int | None,
                 start_time: str, now: dt.datetime, storage: str) -> dict[str, Any]:
    """The TuningJob's .status: same size at 10 or 10,000 trials."""
    counts = status.counts
    out: dict[str, Any] = {
        "phase": status.phase,
        "reason": status.reason,
        "message": status.message,
        "observedGeneration": generation,
        "conditions": build_conditions((previous or {}).get("conditions"), status.phase, status.reason,
                                       status.message, generation, now),
        "trials": counts,
        "progress": f"{counts['finished']}/{counts['max']}",
        "bestTrial": status.best,
        "paretoFront": status.pareto or None,
        "recentTrials": status.recent,
        "startTime": start_time,
        "completionTime": (previous or {}).get("completionTime") or (_timestamp(now) if status.terminal else None),
        "elapsedSeconds": status.elapsed_seconds,
        "studyStorage": storage,
    }
    return out


def build_invalid_status(problems: list[str], *, previous: dict[str, Any] | None, generation: int | None,
                         now: dt.datetime) -> dict[str, Any]:
    message = "; ".join(problems)[:4000]
    return {"phase": "Failed", "reason": "InvalidSpec", "message": message, "observedGeneration": generation,
            "conditions": build_conditions((previous or {}).get("conditions"), "Invalid", "InvalidSpec", message,
                                           generation, now)}

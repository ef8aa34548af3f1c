"""KubernetesBackend: a trial is one pod per Horovod rank plus a headless Service.

Names are deterministic (``<job>-t<N>-w<rank>``, Service ``<job>-t<N>``), so launching
again after an operator restart finds what exists (409) and creates only what is missing.
A trial run again (trial.retries) gets pods named ``<job>-t<N>-a<run>-w<rank>``: the failed
run's pods may still hold their names while they terminate.
"""

from __future__ import annotations

import logging
from typing import Any

from openautoglm.engine.trials import FAILED, PENDING, RUNNING, SUCCEEDED, TrialObservation, WorkerObservation
from openautoglm.engine.worker import trial_name, worker_name
from openautoglm.k8s.api import Api
from openautoglm.k8s.builders import (
    CONTAINER,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_RANK,
    LABEL_TRIAL,
    build_trial_service,
    build_worker_pod,
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
    worker = next((cs for cs in status.get("containerStatuses") or [] if cs.get("name") == CONTAINER), {})
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
    attempt = labels.get(LABEL_ATTEMPT, "0")
    return WorkerObservation(
        int(labels.get(LABEL_RANK, 0)),
        phase,
        f"{ip}:{port}" if ip else None,
        exit_code,
        message,
        reason,
        int(attempt) if attempt.isdigit() else 0,
    )


class KubernetesBackend:
    def __init__(self, job: TuningJob, job_body: dict[str, Any], api: Api, namespace: str):
        self.job = job
        self.body = job_body
        self.api = api
        self.namespace = namespace
        #: The runs of each trial that have pods, from the last listing and this process's
        #: launches: what stop() deletes, without listing again.
        self._runs: dict[int, set[int]] = {}

    def observe(self) -> dict[int, TrialObservation]:
        pods = self.api.list_pods(self.namespace, {LABEL_JOB: self.job.name})
        by_trial: dict[int, list[WorkerObservation]] = {}
        for pod in pods:
            number = (pod["metadata"].get("labels") or {}).get(LABEL_TRIAL, "")
            if number.isdigit():
                by_trial.setdefault(int(number), []).append(observe_pod(pod, self.job.spec.metrics.port))
        size = self.job.spec.trial.workers
        self._runs = {n: {w.attempt for w in ws} | self._runs.get(n, set()) for n, ws in by_trial.items()}
        return {n: TrialObservation(n, sorted(ws, key=lambda w: w.rank), size) for n, ws in by_trial.items()}

    def launch(self, number: int, params: dict[str, Any], attempt: int = 0) -> None:
        self._runs.setdefault(number, set()).add(attempt)
        self.api.ensure_service(build_trial_service(self.job, self.body, number, self.namespace))
        for rank in range(self.job.spec.trial.workers):
            self.api.ensure_pod(build_worker_pod(self.job, self.body, number, rank, params, self.namespace, attempt))

    def retire(self, number: int, attempt: int, reason: str) -> None:
        log.info("stopping run %d of trial %s: %s", attempt, trial_name(self.job.name, number), reason)
        for rank in range(self.job.spec.trial.workers):
            self.api.delete_pod(self.namespace, worker_name(self.job.name, number, rank, attempt))
        self._runs.get(number, set()).discard(attempt)

    def stop(self, number: int, reason: str) -> None:
        log.info("stopping trial %s: %s", trial_name(self.job.name, number), reason)
        for attempt in sorted(self._runs.get(number) or {0}):
            for rank in range(self.job.spec.trial.workers):
                self.api.delete_pod(self.namespace, worker_name(self.job.name, number, rank, attempt))

    def release(self, number: int) -> None:
        self.stop(number, "released")
        self.api.delete_service(self.namespace, trial_name(self.job.name, number))
        self._runs.pop(number, None)

    def update(self, job: TuningJob) -> None:
        self.job = job

    def close(self) -> None:
        pass

    def delete_all(self) -> None:
        """Remove every pod and Service of the job (the TuningJob is being deleted)."""
        for pod in self.api.list_pods(self.namespace, {LABEL_JOB: self.job.name}):
            self.api.delete_pod(self.namespace, pod["metadata"]["name"])
        for svc in self.api.list_services(self.namespace, {LABEL_JOB: self.job.name}):
            self.api.delete_service(self.namespace, svc["metadata"]["name"])

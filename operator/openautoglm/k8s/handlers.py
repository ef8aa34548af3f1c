"""The kopf operator: every handler of TuningJobs, each a few lines over controller.py.

Run with ``openautoglm operator`` (the operator image's entrypoint).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf
from kubernetes import client, config

from openautoglm import settings as settings_mod
from openautoglm.k8s.api import Api
from openautoglm.k8s.builders import LABEL_JOB
from openautoglm.k8s.controller import Controllers
from openautoglm.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)
CONTROLLERS = Controllers()
_API: dict[str, Api] = {}


def api() -> Api:
    if "api" not in _API:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        _API["api"] = Api(client.ApiClient())
    return _API["api"]


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = settings_mod.load()
    # Our own finalizer and annotations; the status stays ours (no status.kopf).
    settings.persistence.finalizer = "openautoglm.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="openautoglm.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="openautoglm.io")
    # Events are posted deliberately (trial started/pruned/failed, new best), not per log line.
    settings.posting.level = logging.WARNING
    # Each TuningJob's loop is a sync daemon holding one worker thread.
    settings.execution.max_workers = cfg.operator_max_jobs + 8
    # Without a server-side timeout a silently dropped watch is never noticed (kopf#585-like
    # hangs behind load balancers); re-list every few minutes instead.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    if cfg.operator_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(cfg.operator_metrics_port)


def needs_driving(body: kopf.Body, **_: Any) -> bool:
    """A job needs its loop until it is terminal with its newest spec applied. kopf stops the
    daemon when this turns false and starts it again when an edit makes it true (a finished
    job whose budget was raised); a daemon that returned by itself would never be restarted."""
    status = body.get("status") or {}
    return status.get("phase") not in ("Succeeded", "Failed") or status.get("observedGeneration") != body.get(
        "metadata", {}
    ).get("generation")


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0, when=needs_driving)
def tuningjob_daemon(stopped: kopf.DaemonStopped, body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
    """The job's loop: a reconcile pass every interval, or at once when a trial pod changes or
    the spec is edited. ``body`` is kopf's live view of the object: each pass reads its spec."""
    ctl = CONTROLLERS.get(dict(body), api())
    if not ctl.valid:
        ctl.invalid_status()
        logger.error("invalid TuningJob: %s", "; ".join(ctl.problems))
        stopped.wait()  # until kopf stops it: the status is terminal now; an edit starts it again
        return
    reported = False
    while not stopped:
        result = ctl.reconcile(dict(body))
        for e in result.outcome.events if result.outcome else []:
            # kopf.event, not kopf.info: info/warn obey posting.level, which keeps log lines out.
            kopf.event(dict(body), type="Warning" if e.warning else "Normal", reason=e.reason, message=e.message)
        if result.done and not reported:
            logger.info("TuningJob %s: %s (%s)", ctl.name, result.status["phase"], result.status.get("reason"))
            ctl.close()
            reported = True
        _wait(ctl, stopped, 60.0 if result.done else ctl.interval)
    ctl.close()


def _wait(ctl: Any, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep until the interval ends, a pod or spec event wakes the job, or kopf stops the daemon."""
    deadline = time.monotonic() + seconds
    while not stopped and not ctl.wakeup.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ctl.wakeup.wait(min(left, 1.0))
    ctl.wakeup.clear()


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def tuningjob_update(body: kopf.Body, uid: str, **_: Any) -> None:
    """A spec edit (kubectl apply, Argo CD, Flux): wake the job's loop, which applies the live
    spec at once. A finished job's loop is started again by kopf (see needs_driving)."""
    ctl = CONTROLLERS.find_uid(uid)
    if ctl is not None:
        ctl.wakeup.set()


@kopf.on.event("", "v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
def trial_pod_event(event: kopf.RawEvent, namespace: str, labels: dict[str, str], **_: Any) -> None:
    """A worker pod finished or vanished: wake its job's loop instead of waiting an interval."""
    pod = event.get("object") or {}
    phase = (pod.get("status") or {}).get("phase")
    if event.get("type") == "DELETED" or phase in ("Succeeded", "Failed"):
        ctl = CONTROLLERS.find(namespace, labels[LABEL_JOB])
        if ctl is not None:
            ctl.wakeup.set()


@kopf.on.delete(GROUP, VERSION, PLURAL)
def tuningjob_delete(body: kopf.Body, uid: str, **_: Any) -> None:
    """Stop and remove the job's trials (ownerReferences would too, where GC runs)."""
    ctl = CONTROLLERS.get(dict(body), api())
    ctl.delete_all()
    CONTROLLERS.forget(uid)


def run(namespaces: list[str] | None = None) -> None:
    """Run the operator until SIGINT/SIGTERM (what ``openautoglm operator`` calls)."""
    cfg = settings_mod.load()
    kopf.configure(verbose=cfg.log_level.upper() == "DEBUG")
    kopf.run(
        standalone=True,  # one replica (the journal has one writer); no peering objects needed
        clusterwide=not namespaces,
        namespaces=namespaces or (),
        liveness_endpoint=f"http://0.0.0.0:{cfg.operator_health_port}/healthz" if cfg.operator_health_port else None,
    )

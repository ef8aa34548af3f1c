"""The kopf operator: every handler of TuningJobs, each a few lines over controller.py.

Run with ``openautoglm operator`` (the operator image's entrypoint).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import kopf
from kubernetes import client, config

from openautoglm import settings as settings_mod
from openautoglm.engine.storage import outage_errors
from openautoglm.k8s import telemetry
from openautoglm.k8s.api import Api
from openautoglm.k8s.builders import LABEL_JOB
from openautoglm.k8s.controller import Controllers
from openautoglm.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)
T = TypeVar("T")
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


#: The study and API work of every job runs here; jobs themselves wait on the event loop.
#: Before, each job's loop was a sync daemon holding one of kopf's threads for its whole life
#: and the pod-event handler needed a free one from the same pool: with more jobs than threads
#: a job waited for another to finish before it started, and its pod events went unheard.
_POOL: dict[str, concurrent.futures.ThreadPoolExecutor] = {}


def pool() -> concurrent.futures.ThreadPoolExecutor:
    if "pool" not in _POOL:
        workers = max(1, settings_mod.load().operator_workers)
        _POOL["pool"] = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="study")
    return _POOL["pool"]


async def in_pool(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking study/API work on the bounded pool (FIFO: every job gets its turn)."""
    telemetry.JOBS_WAITING.inc()  # until a thread takes it: the operator's queue, on the dashboard
    waiting, lock = [True], threading.Lock()

    def leave_queue() -> None:  # exactly once: when a thread takes it, or when it is cancelled first
        with lock:
            if waiting[0]:
                waiting[0] = False
                telemetry.JOBS_WAITING.dec()

    def run() -> T:
        leave_queue()
        return fn(*args)

    try:
        return await asyncio.get_running_loop().run_in_executor(pool(), run)
    finally:
        leave_queue()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = settings_mod.load()
    # Our own finalizer and annotations; the status stays ours (no status.kopf).
    settings.persistence.finalizer = "openautoglm.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="openautoglm.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="openautoglm.io")
    # Events are posted deliberately (trial started/pruned/failed, new best), not per log line.
    settings.posting.level = logging.WARNING
    # Every handler is async; the few sync calls kopf itself makes need no more than this.
    settings.execution.max_workers = 4
    # Without a server-side timeout a silently dropped watch is never noticed (kopf#585-like
    # hangs behind load balancers); re-list every few minutes instead.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    if cfg.operator_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(cfg.operator_metrics_port)


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    if "pool" in _POOL:
        _POOL.pop("pool").shutdown(wait=False, cancel_futures=True)


def needs_driving(body: kopf.Body, **_: Any) -> bool:
    """A job needs its loop until it is terminal with its newest spec applied. kopf stops the
    daemon when this turns false and starts it again when an edit makes it true (a finished
    job whose budget was raised); a daemon that returned by itself would never be restarted."""
    status = body.get("status") or {}
    return status.get("phase") not in ("Succeeded", "Failed") or status.get("observedGeneration") != body.get(
        "metadata", {}
    ).get("generation")


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_backoff=10.0, cancellation_timeout=10.0, when=needs_driving)
async def tuningjob_daemon(stopped: kopf.DaemonStopped, body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
    """The job's loop: a reconcile pass every interval, or at once when a trial pod changes or
    the spec is edited. ``body`` is kopf's live view of the object: each pass reads its spec.
    The loop waits on the event loop; only the pass itself takes a thread of the pool."""
    ctl = await in_pool(CONTROLLERS.get, dict(body), api())
    if not ctl.valid:
        await in_pool(ctl.invalid_status)
        logger.error("invalid TuningJob: %s", "; ".join(ctl.problems))
        await stopped.wait()  # until kopf stops it: the status is terminal now; an edit starts it again
        return
    reported = False
    outage = outage_errors()
    try:
        while not stopped:
            try:
                result = await in_pool(ctl.reconcile, dict(body))
            except outage as err:
                await _ride_out_outage(ctl, err, stopped, outage)
                continue
            for e in result.outcome.events if result.outcome else []:
                # kopf.event, not kopf.info: info/warn obey posting.level, which keeps log lines out.
                kopf.event(dict(body), type="Warning" if e.warning else "Normal", reason=e.reason, message=e.message)
            if result.done and not reported:
                logger.info("TuningJob %s: %s (%s)", ctl.name, result.status["phase"], result.status.get("reason"))
                await in_pool(ctl.close)
                reported = True
            wait = 60.0 if result.done else ctl.interval
            if result.write_in is not None:  # a held-back status write is due before that
                wait = min(wait, result.write_in + 0.01)
            await _wait(ctl, stopped, wait)
    finally:
        # Also on cancellation: the pass in the pool (if any) finishes under the job's lock first.
        await asyncio.shield(in_pool(ctl.close))


async def _ride_out_outage(ctl: Any, err: BaseException, stopped: kopf.DaemonStopped, outage: tuple) -> None:
    """The study storage does not answer: Stalled (StorageUnavailable) in the status, then retry
    with backoff until the study can be read again. The trials' pods run on meanwhile; the next
    pass adopts them (a pass is safe to repeat)."""
    log.warning("TuningJob %s: study storage unreachable: %s", ctl.name, type(err).__name__)
    await in_pool(ctl.storage_outage, err)
    delay = 0.5
    while not stopped:
        await _wait(ctl, stopped, delay)
        try:
            await in_pool(ctl.reopen)
            return
        except outage:
            delay = min(delay * 2, 15.0)


async def _wait(ctl: Any, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep until the interval ends, a pod or spec event wakes the job, or kopf stops the daemon."""
    waits = [asyncio.ensure_future(ctl.woken.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    ctl.woken.clear()


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def tuningjob_update(body: kopf.Body, uid: str, **_: Any) -> None:
    """A spec edit (kubectl apply, Argo CD, Flux): wake the job's loop, which applies the live
    spec at once. A finished job's loop is started again by kopf (see needs_driving)."""
    ctl = CONTROLLERS.find_uid(uid)
    if ctl is not None:
        ctl.wake()


@kopf.on.event("", "v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
async def trial_pod_event(event: kopf.RawEvent, namespace: str, labels: dict[str, str], **_: Any) -> None:
    """A worker pod finished or vanished: wake its job's loop instead of waiting an interval.
    Async, so that it never queues behind study work for a thread."""
    pod = event.get("object") or {}
    phase = (pod.get("status") or {}).get("phase")
    if event.get("type") == "DELETED" or phase in ("Succeeded", "Failed"):
        ctl = CONTROLLERS.find(namespace, labels[LABEL_JOB])
        if ctl is not None:
            ctl.wake()


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def tuningjob_delete(body: kopf.Body, uid: str, **_: Any) -> None:
    """Stop and remove the job's trials (ownerReferences would too, where GC runs)."""
    ctl = await in_pool(CONTROLLERS.get, dict(body), api())
    await in_pool(ctl.delete_all)
    CONTROLLERS.forget(uid)
    telemetry.forget(body["metadata"].get("namespace") or "", body["metadata"]["name"], uid)


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

"""The kopf operator: every handler of TuningJobs, each a few lines over controller.py.

Run with ``openautoglm operator`` (the operator image's entrypoint).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kopf
import kubernetes
from kubernetes import client

from openautoglm import config
from openautoglm.engine.storage import outage_errors
from openautoglm.k8s import leader, telemetry
from openautoglm.k8s.api import Api
from openautoglm.k8s.builders import LABEL_JOB, parse_label_selector
from openautoglm.k8s.controller import Controllers
from openautoglm.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)
T = TypeVar("T")
CONTROLLERS = Controllers()
_API: dict[str, Api] = {}
#: The namespaces given to ``run`` (empty: every namespace, cluster-wide).
_NAMESPACES: list[str] = []


def api() -> Api:
    if "api" not in _API:
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        conf = client.Configuration.get_default_copy()
        # api.py retries, with backoff and counted; urllib3's own (3, silent, and for GETs also
        # 429/503 with Retry-After) would hide attempts from openautoglm_api_retries_total.
        conf.retries = 0
        _API["api"] = Api(client.ApiClient(conf))
    return _API["api"]


#: The study and API work of every job runs here; jobs themselves wait on the event loop.
#: Before, each job's loop was a sync daemon holding one of kopf's threads for its whole life
#: and the pod-event handler needed a free one from the same pool: with more jobs than threads
#: a job waited for another to finish before it started, and its pod events went unheard.
_POOL: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
#: Pools shut down by the cleanup handler whose last passes may still run: a leader hands its
#: Lease back only once they are done.
_DRAINING: list[concurrent.futures.ThreadPoolExecutor] = []


def pool() -> concurrent.futures.ThreadPoolExecutor:
    if "pool" not in _POOL:
        workers = max(1, config.load().operator_workers)
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
    if _NAMESPACES and not any(ch in ns for ns in _NAMESPACES for ch in "*?[!,"):
        # Namespaced install, each namespace named: serve exactly these and the resources found at
        # start-up. kopf's scanning would otherwise list and watch every namespace and every CRD,
        # the only cluster-wide reads it makes (kopf/_core/reactor/observation.py); without them the
        # operator needs no ClusterRole at all (deploy/namespaced). Globs need the scanning.
        settings.scanning.disabled = True


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    if "pool" in _POOL:
        _POOL["pool"].shutdown(wait=False, cancel_futures=True)
        _DRAINING.append(_POOL.pop("pool"))


def needs_driving(body: kopf.Body, **_: Any) -> bool:
    """A job needs its loop until it is terminal with its newest spec applied and the checkpoints
    its keep policy lets go removed. kopf stops the daemon when this turns false and starts it
    again when an edit makes it true (a finished job whose budget was raised); a daemon that
    returned by itself would never be restarted."""
    status = body.get("status") or {}
    return (
        status.get("phase") not in ("Succeeded", "Failed")
        or status.get("observedGeneration") != body.get("metadata", {}).get("generation")
        or bool(status.get("checkpointsPending"))
    )


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_backoff=10.0, cancellation_timeout=10.0, when=needs_driving)
async def tuningjob_daemon(stopped: kopf.DaemonStopped, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """The job's loop: a reconcile pass every interval, or at once when a trial pod changes or
    the spec is edited. ``body`` is kopf's live view of the object: each pass reads its spec.
    The loop waits on the event loop; only the pass itself takes a thread of the pool."""
    ctl = await in_pool(CONTROLLERS.get, dict(body), api())
    delay = 0.5
    while ctl.waiting is not None and not stopped:
        # Its storage Secret is missing or its study storage does not answer: Stalled with the
        # reason, then build it again (the Secret may have been created, the database be back).
        await in_pool(ctl.waiting_status)
        await _wait(ctl, stopped, delay)
        delay = min(delay * 2, 15.0)
        ctl = await in_pool(CONTROLLERS.get, dict(body), api())
    if stopped:
        return
    _announce_takeover(body)
    if not ctl.valid:
        await in_pool(ctl.invalid_status)
        logger.error("invalid TuningJob: %s", "; ".join(ctl.problems))
        await stopped.wait()  # until kopf stops it: the status is terminal now; an edit starts it again
        return
    reported = False
    outage = outage_errors()
    failures = 0
    try:
        while not stopped:
            try:
                result = await in_pool(ctl.reconcile, dict(body))
            except outage as err:
                await _ride_out_outage(ctl, err, stopped, outage)
                continue
            except Exception as err:  # noqa: BLE001 - said in the status, logged, retried
                failures += 1
                await _after_failed_pass(ctl, err, failures, stopped, logger)
                continue
            failures = 0
            for e in result.outcome.events if result.outcome else []:
                # kopf.event, not kopf.info: info/warn obey posting.level, which keeps log lines out.
                kopf.event(body, type="Warning" if e.warning else "Normal", reason=e.reason, message=e.message)
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


_ANNOUNCED: set[str] = set()


def _announce_takeover(body: kopf.Body) -> None:
    """A replica that took over from another says so once on each job it drives: an Event beside
    the status's ``operator`` field, for ``kubectl describe``."""
    lead = leader.current()
    uid = body["metadata"].get("uid") or ""
    if lead is None or not lead.previous or uid in _ANNOUNCED:
        return
    _ANNOUNCED.add(uid)
    how = "its lease expired" if lead.handover == "LeaseExpired" else "it handed the lease over on shutdown"
    kopf.event(
        body,
        type="Normal",
        reason="OperatorTakeover",
        message=f"operator replica {lead.identity} drives this job now: it took over from {lead.previous} ({how}); "
        "the running trials are adopted, not restarted",
    )


async def _ride_out_outage(ctl: Any, err: BaseException, stopped: kopf.DaemonStopped, outage: tuple) -> None:
    """The study storage does not answer, or its journal's volume is full: Stalled
    (StorageUnavailable, StorageFull) in the status (controller.storage_outage logs why), then
    retry with backoff until the study can be written again. The trials' pods run on meanwhile;
    the next pass adopts them (a pass is safe to repeat)."""
    await in_pool(ctl.storage_outage, err)
    delay = 0.5
    while not stopped:
        await _wait(ctl, stopped, delay)
        try:
            await in_pool(ctl.reopen)
            return
        except outage:
            delay = min(delay * 2, 15.0)


async def _after_failed_pass(
    ctl: Any, err: Exception, failures: int, stopped: kopf.DaemonStopped, logger: kopf.Logger
) -> None:
    """A pass raised (a bug, or a study the operator cannot read). kopf would retry the daemon in
    60 s and leave the status as it was; instead the status says Stalled/PassFailed with the error,
    the traceback is logged once, and the pass is retried with backoff (1 s doubling to 60 s) on
    the study read again, as after a restart (a pass is safe to repeat)."""
    if failures == 1:
        # The traceback as text, scrubbed: an exception may quote the storage URL it was given.
        trace = "".join(traceback.format_exception(err))
        logger.error("TuningJob %s: a reconcile pass failed; retrying with backoff\n%s", ctl.name, ctl.redact(trace))
    else:
        logger.warning("TuningJob %s: a reconcile pass failed again (%d): %s", ctl.name, failures, ctl.redact(str(err)))
    await in_pool(ctl.pass_failed, err)
    await _wait(ctl, stopped, min(2.0 ** (failures - 1), 60.0))
    if not stopped:
        try:
            await in_pool(ctl.reopen)
        except Exception as again:  # noqa: BLE001 - the next pass meets it again, and says so
            logger.warning("TuningJob %s: reading the study again failed: %s", ctl.name, again)


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
async def trial_pod_event(event: kopf.RawEvent, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    """A worker pod finished or vanished: wake its job's loop instead of waiting an interval.
    Async, so that it never queues behind study work for a thread."""
    pod = event.get("object") or {}
    phase = (pod.get("status") or {}).get("phase")
    if namespace is not None and (event.get("type") == "DELETED" or phase in ("Succeeded", "Failed")):
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
    """Run the operator until SIGINT/SIGTERM (what ``openautoglm operator`` calls). With leader
    election, first stand by until this replica holds the Lease (k8s/leader.py)."""
    cfg = config.load()
    kopf.configure(verbose=cfg.log_level.upper() == "DEBUG")
    _NAMESPACES[:] = namespaces or []
    # A mistyped selector stops the operator here, not every job's first launch.
    parse_label_selector(cfg.operator_pod_labels)
    parse_label_selector(cfg.monitoring_namespace_selector)
    if cfg.operator_metrics_port:  # before the election: a standby's metrics say it stands by
        from prometheus_client import start_http_server

        start_http_server(cfg.operator_metrics_port)
    elector = _elect(cfg) if cfg.leader_election else None
    telemetry.LEADER.set(1)
    try:
        kopf.run(
            # kopf's peering stays off: it pauses peers, it does not elect one (see k8s/leader.py).
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces or (),
            liveness_endpoint=f"http://0.0.0.0:{cfg.operator_health_port}/healthz"
            if cfg.operator_health_port
            else None,
        )
    finally:
        if elector is not None and _drained(timeout=cfg.leader_election_renew_seconds):
            elector.release()  # SIGTERM: the standby takes over at its next poll, not a lease later
        # Not drained in time: keep the Lease, which runs out by itself after the process exits.


def _elect(cfg: config.Settings) -> leader.Elector:
    """Block until this replica leads, answering /healthz meanwhile; then renew in the background."""
    api()  # loads the kubeconfig or the in-cluster config
    lease = leader.LeaseConfig(
        cfg.leader_election_lease,
        cfg.leader_election_namespace,
        cfg.leader_election_lease_seconds,
        cfg.leader_election_renew_seconds,
        cfg.leader_election_retry_seconds,
    )
    # Its own client: renewals never queue behind the jobs' API calls.
    elector = leader.Elector(client.CoordinationV1Api(client.ApiClient()), lease, leader.new_identity(), on_lost=_lost)
    telemetry.LEADER.set(0)
    with leader.standby_health(cfg.operator_health_port):
        lead = elector.acquire()
    elector.keep()
    if lead.handover == "LeaseExpired":
        _break_journal_locks(Path(cfg.study_dir))
    return elector


def _break_journal_locks(study_dir: Path) -> None:
    """The previous leader died without handing over, maybe in the middle of a journal write: its
    lock file would hold every job's first write here for Optuna's grace period (10 s, counted
    from the first try). Nobody else writes now (it gave up before its lease ran out), so the
    locks are stale: remove them."""
    for lock in study_dir.rglob("*.journal.lock"):
        log.warning("leader election: removing %s, left by the previous leader", lock)
        lock.unlink(missing_ok=True)


def _lost(why: str) -> None:
    """The Lease is lost: exit now, mid-pass if need be (a pass is safe to cut at any line), before
    a standby can take over, so that no job is ever driven by two replicas (controller-runtime
    does the same). The kubelet restarts the container, which then stands by."""
    telemetry.LEADER.set(0)
    log.error("leader election lost (%s): exiting", why)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(1)


def _drained(timeout: float) -> bool:
    """Whether every pass of this replica has ended (waiting up to ``timeout`` seconds)."""
    pools = [*_DRAINING, *_POOL.values()]

    def drain() -> None:
        for pool in pools:
            pool.shutdown(wait=True)

    waiter = threading.Thread(target=drain, daemon=True)
    waiter.start()
    waiter.join(timeout)
    return not waiter.is_alive()

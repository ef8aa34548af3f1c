"""Drives one TuningJob in the cluster: its study, its KubernetesBackend, its reconcile passes.

The kopf handlers (operator.py) only call into this module. State kept here is a cache:
after an operator restart it is rebuilt from the study (in the cluster's storage) and the
pods, which together are the source of truth.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

from openautoglm import settings as settings_mod
from openautoglm.k8s.backend import KubernetesBackend
from openautoglm.k8s import builders, telemetry
from openautoglm.k8s.api import Api
from openautoglm.engine.metrics import build_metric_source
from openautoglm.engine.reconcile import Outcome, Reconciler
from openautoglm.spec import TuningJob
from openautoglm.engine.storage import describe
from openautoglm.engine.study import open_study
from openautoglm.validation import InvalidTuningJob, validate_document

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def job_document(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a TuningJob object the model validates (status is the operator's own)."""
    meta = body.get("metadata") or {}
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
            "spec": body.get("spec")}


def storage_url(job: TuningJob, body: dict[str, Any], api: Api, cfg: settings_mod.Settings) -> str:
    """Where this job's study lives: PostgreSQL from the spec, else a journal on the volume.

    The journal's name carries the object's uid, so a TuningJob deleted and created
    again with the same name starts a new study.
    """
    pg = job.spec.storage.postgres
    ns = body["metadata"]["namespace"]
    if pg is not None:
        if pg.url:
            return pg.url
        assert pg.secret_ref is not None
        return api.read_secret_key(ns, pg.secret_ref.name, pg.secret_ref.key)
    if job.spec.storage.journal is not None and job.spec.storage.journal.path:
        return job.spec.storage.journal.path
    uid = body["metadata"]["uid"]
    return str(Path(cfg.study_dir) / ns / f"{job.name}-{uid[:8]}.journal")


@dataclasses.dataclass
class PassResult:
    outcome: Outcome | None
    status: dict[str, Any]
    done: bool
    seconds: float


class JobController:
    def __init__(self, body: dict[str, Any], api: Api, cfg: settings_mod.Settings | None = None):
        self.cfg = cfg or settings_mod.load()
        self.api = api
        self.body = body
        meta = body["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.generation = meta.get("generation")
        self.previous: dict[str, Any] = dict(body.get("status") or {})
        self.lock = threading.Lock()   # the daemon and pod events may both ask for a pass
        self.wakeup = threading.Event()
        self.job: TuningJob | None = None
        self.problems: list[str] = []
        try:
            self.job = validate_document(job_document(body), f"TuningJob {self.namespace}/{self.name}")
        except InvalidTuningJob as err:
            self.problems = [str(p) for p in err.problems]
            return
        self.url = storage_url(self.job, body, api, self.cfg)
        self.study = open_study(self.job, self.url)
        self.backend = KubernetesBackend(self.job, body, api, self.namespace)
        self.reconciler = Reconciler(self.job, self.study, self.backend, build_metric_source(self.job))
        self.start_time = self.previous.get("startTime") or builders._timestamp(_now())

    @property
    def valid(self) -> bool:
        return self.job is not None

    @property
    def interval(self) -> float:
        assert self.job is not None
        return min(self.job.spec.metrics.interval_seconds, self.cfg.operator_max_interval_seconds)

    def invalid_status(self) -> dict[str, Any]:
        status = builders.build_invalid_status(self.problems, previous=self.previous, generation=self.generation,
                                               now=_now())
        self.api.patch_status(self.namespace, self.name, status)
        self.previous = status
        return status

    def reconcile(self) -> PassResult:
        """One pass: reconcile, then write the status. Safe to call at any time, repeatedly."""
        assert self.job is not None
        with self.lock:
            t0 = time.perf_counter()
            now = _now()
            started = _parse_time(self.start_time) or now
            # Optuna's trial times are naive local times: the reconciler compares with its own clock.
            outcome = self.reconciler.reconcile(elapsed=(now - started).total_seconds())
            status = builders.build_status(outcome.status, previous=self.previous, generation=self.generation,
                                           start_time=self.start_time, now=now, storage=describe(self.url))
            if status != self.previous:
                self.api.patch_status(self.namespace, self.name, status)
                self.previous = status
            seconds = time.perf_counter() - t0
            telemetry.record(self.namespace, self.name, outcome, seconds)
            done = outcome.status.terminal and not self.backend.observe()
            return PassResult(outcome, status, done, seconds)

    def delete_all(self) -> None:
        """The TuningJob is being deleted: stop and remove every trial (no GC needed)."""
        if self.job is not None:
            self.backend.delete_all()


class Controllers:
    """One JobController per TuningJob uid, created on first use."""

    def __init__(self) -> None:
        self._by_uid: dict[str, JobController] = {}
        self._lock = threading.Lock()

    def get(self, body: dict[str, Any], api: Api) -> JobController:
        uid = body["metadata"]["uid"]
        with self._lock:
            ctl = self._by_uid.get(uid)
            if ctl is None:
                ctl = self._by_uid[uid] = JobController(body, api)
            return ctl

    def find(self, namespace: str, name: str) -> JobController | None:
        with self._lock:
            return next((c for c in self._by_uid.values() if (c.namespace, c.name) == (namespace, name)), None)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)

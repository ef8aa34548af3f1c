"""One TuningJob in the cluster: the engine's driver with a KubernetesBackend.

The kopf handlers (handlers.py) only call into this module, and this module is a thin
shell over engine/driver.py, as local/runner.py is on a laptop: what is Kubernetes here is
the storage URL, the object's generation, and writing the status. State kept here is a
cache: after an operator restart it is rebuilt from the study (in the cluster's storage)
and the pods, which together are the source of truth.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from openautoglm import config
from openautoglm.engine.driver import Driver, SpecChangeRefused
from openautoglm.engine.reconcile import Event, Outcome
from openautoglm.engine.storage import (
    MAX_DATABASE_URL_LENGTH,
    JournalWriteError,
    check_room,
    describe,
    fault_message,
    is_rdb_url,
    outage_errors,
    parse_database_url,
)
from openautoglm.engine.study import StudyMismatch
from openautoglm.k8s import builders, connections, leader, telemetry
from openautoglm.k8s.api import Api, ApiUnavailable
from openautoglm.k8s.backend import KubernetesBackend
from openautoglm.spec import TuningJob
from openautoglm.validation import InvalidTuningJob, Problem, validate_document

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def job_document(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a TuningJob object the model validates (status is the operator's own)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": body.get("spec"),
    }


def storage_url(job: TuningJob, body: dict[str, Any], api: Api, cfg: config.Settings) -> str:
    """Where this job's study lives: the spec's storage, else the operator's default
    (``OPENAUTOGLM_STORAGE``, e.g. PostgreSQL from a Secret: deploy/postgres), else a journal
    on the volume.

    The journal's name carries the object's uid, so a TuningJob deleted and created
    again with the same name starts a new study. What the spec names is the tenant's: a database
    URL (given, or the value of its Secret) is used only if it parses as one and its host is on
    the operator's allow-list, a journal only inside ``<studyDir>/<namespace>/``; otherwise the job
    cannot start (:class:`JobCannotStart`, a Stalled reason) and nothing is created.
    """
    pg = job.spec.storage.postgres
    ns = body["metadata"]["namespace"]
    if pg is not None:
        if pg.url:
            where, text = "spec.storage.postgres.url", pg.url
        else:
            assert pg.secret_ref is not None
            ref = pg.secret_ref
            where, text = f"the storage Secret {ns}/{ref.name} (key {ref.key!r})", _secret_value(api, ns, ref)
        try:
            parsed = parse_database_url(text)
        except ValueError as err:
            raise StorageSecretInvalid(
                f"{where} does not hold a PostgreSQL URL: {err}. The value is not shown; put "
                "postgresql://user:password@host:port/database there (spec.storage.postgres.secretRef)"
            ) from None
        try:
            connections.check_database(parsed, cfg, where)
        except connections.ConnectionNotAllowed as err:
            raise ConnectionRefusedByPolicy(str(err)) from None
        return text.strip()
    if job.spec.storage.journal is not None and job.spec.storage.journal.path:
        return journal_in_namespace(cfg.study_dir, ns, job.spec.storage.journal.path)
    if cfg.storage:
        return cfg.storage
    uid = body["metadata"]["uid"]
    return str(Path(cfg.study_dir) / ns / f"{job.name}-{uid[:8]}.journal")


def _secret_value(api: Api, ns: str, ref: Any) -> str:
    """The value of the job's storage Secret key (at most MAX_DATABASE_URL_LENGTH characters read)."""
    try:
        value = api.read_secret_key(ns, ref.name, ref.key)
    except KeyError as err:
        raise StorageSecretMissing(
            f"the storage Secret {ns}/{ref.name} has no key {ref.key!r} "
            "(spec.storage.postgres.secretRef): add it; the job starts when it is there"
        ) from err
    except UnicodeDecodeError:
        raise StorageSecretInvalid(
            f"the storage Secret {ns}/{ref.name} (key {ref.key!r}) is not text, so not a PostgreSQL URL "
            "(the value is not shown)"
        ) from None
    except ApiException as err:
        if err.status not in (403, 404):
            raise
        what = "does not exist" if err.status == 404 else "cannot be read by the operator (RBAC)"
        raise StorageSecretMissing(
            f"the storage Secret {ns}/{ref.name} {what} (spec.storage.postgres.secretRef): "
            "the job starts when it can be read"
        ) from err
    return value[: MAX_DATABASE_URL_LENGTH + 1]  # parse_database_url refuses what is longer


def secrets_of(url: str) -> tuple[str, ...]:
    """The parts of a storage URL that must never be shown: the URL itself and its password."""
    if not is_rdb_url(url):
        return ()
    try:
        parsed = parse_database_url(url)
    except ValueError:
        return (url,)
    password = parsed.password or parsed.query.get("password")
    passwords = password if isinstance(password, tuple) else (password,)
    return tuple(sorted({url, *(p for p in passwords if p and len(p) >= 4)}, key=len, reverse=True))


def journal_in_namespace(study_dir: str, namespace: str, name: str) -> str:
    """``<studyDir>/<namespace>/<name>``, checked after resolving links: a job's journal never lies
    outside its namespace's directory (another namespace's journals, /tmp, the volume's root).
    The model admits only plain file names; this holds even if a link was planted there."""
    base = os.path.realpath(Path(study_dir) / namespace)
    path = os.path.realpath(Path(base) / name)
    if "/" in name or name in ("", ".", "..") or os.path.dirname(path) != base:
        raise ConnectionRefusedByPolicy(
            f"spec.storage.journal.path must name a file inside this namespace's studies directory "
            f"({Path(study_dir) / namespace}); {name[:128]!r} does not"
        )
    return path


def _outage_reason(err: BaseException) -> str:
    """Stalled's reason for a storage fault: the journal's volume is full, or the storage is unreachable."""
    full = isinstance(err, JournalWriteError) and err.no_room
    return builders.STORAGE_FULL if full else builders.STORAGE_UNAVAILABLE


class JobCannotStart(Exception):
    """What the job names cannot be used (yet): a Stalled condition with ``reason``, not a failure;
    the daemon says so and tries again with backoff (a Secret may be created, a setting changed)."""

    reason = builders.STORAGE_SECRET_MISSING


class StorageSecretMissing(JobCannotStart):
    """The job's storage Secret (or its key) is not there yet, or the operator may not read it."""


class StorageSecretInvalid(JobCannotStart):
    """The storage Secret's value is no PostgreSQL URL (the message never holds the value)."""

    reason = builders.STORAGE_SECRET_INVALID


class ConnectionRefusedByPolicy(JobCannotStart):
    """The job names a server or a journal outside what the operator's settings allow."""

    reason = builders.CONNECTION_NOT_ALLOWED


@dataclasses.dataclass
class PassResult:
    outcome: Outcome | None
    status: dict[str, Any]
    done: bool
    seconds: float
    #: Seconds until a status change held back by the write interval may be written (None: none held).
    write_in: float | None = None


def generation_of(body: dict[str, Any]) -> int | None:
    return (body.get("metadata") or {}).get("generation")


class JobController:
    def __init__(self, body: dict[str, Any], api: Api, cfg: config.Settings | None = None):
        self.cfg = cfg or config.load()
        self.api = api
        meta = body["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str | None = meta.get("uid")
        self.generation = generation_of(body)
        self.previous: dict[str, Any] = dict(body.get("status") or {})
        self.lock = threading.Lock()  # passes run on a thread pool; one pass of a job at a time
        #: Set on the operator's event loop (pod and spec events) to end the loop's wait early.
        self.woken = asyncio.Event()
        self.job: TuningJob | None = None
        self.driver: Driver | None = None
        self.problems: list[str] = []
        #: Why the newest spec edit was not applied (the job goes on with the one before).
        self.refused: str | None = None
        #: (reason, message) while the job cannot start: its storage Secret is missing or its
        #: study storage does not answer. The daemon says so (Stalled) and builds it again later.
        self.waiting: tuple[str, str] | None = None
        self.url = ""
        #: The API server refused the last status write as invalid (422): said once in the log.
        self.status_refused = False
        #: Texts never to show (the storage URL as given, its password): scrubbed from messages.
        self.hidden: tuple[str, ...] = ()
        try:
            self.job = validate_document(job_document(body), f"TuningJob {self.namespace}/{self.name}")
            if self.job.spec.trial.checkpoint is not None and not self.job.spec.trial.checkpoint.claim:
                # The CRD refuses it too; a job admitted before that rule existed ends here, not at a trial.
                raise InvalidTuningJob(
                    [
                        Problem(
                            "spec.trial.checkpoint.claim",
                            "a PersistentVolumeClaim in the job's namespace is needed in a cluster: checkpoints "
                            "must outlive the trial's pods",
                        )
                    ]
                )
            self.url = storage_url(self.job, body, api, self.cfg)
            self.hidden = secrets_of(self.url)
            try:
                connections.check_prometheus(self.job, self.cfg)
            except connections.ConnectionNotAllowed as err:
                raise ConnectionRefusedByPolicy(str(err)) from None
            self.backend = KubernetesBackend(self.job, body, api, self.namespace, self.cfg)
            self.driver = Driver.open(
                self.job, self.url, self.backend, generation=self.generation, save_every=self.cfg.elapsed_save_seconds
            )
        except InvalidTuningJob as err:
            self.problems = [str(p) for p in err.problems]
        except StudyMismatch as err:  # e.g. a PostgreSQL study of another job with this name
            self.problems = [str(err)]
        except JobCannotStart as err:
            self.waiting = (err.reason, str(err))
        except outage_errors() as err:  # the database is down, or the journal's volume full
            self.waiting = (
                _outage_reason(err),
                fault_message(err, self.url),
            )
        self.start_time = self.previous.get("startTime") or builders._timestamp(_now())
        self.written_at = -math.inf  # time.monotonic() of the last status write

    def wake(self) -> None:
        """End the job loop's wait (called on the operator's event loop, by pod and spec events)."""
        self.woken.set()

    @property
    def valid(self) -> bool:
        return self.driver is not None

    @property
    def interval(self) -> float:
        assert self.job is not None
        return min(self.job.spec.metrics.interval_seconds, self.cfg.operator_max_interval_seconds)

    def storage_outage(self, err: BaseException) -> None:
        """The study storage failed a pass: say so in the status (Stalled, StorageUnavailable; or
        StorageFull: the journal's volume is full). The status goes to the API server, not there."""
        message = fault_message(err, self.url)
        log.warning("TuningJob %s/%s: %s", self.namespace, self.name, message)
        status = builders.build_stalled_status(
            self.previous,
            generation=self.generation,
            now=_now(),
            message=message,
            reason=_outage_reason(err),
        )
        if status != self.previous:
            self._write(status)

    def pass_failed(self, err: BaseException) -> None:
        """A pass raised what is not a storage outage: Stalled (PassFailed) naming the error, so that
        ``kubectl get``/GitOps show it; the handler logs the traceback and retries with backoff."""
        text = self.redact(f"{type(err).__name__}: {err}")
        message = f"a reconcile pass failed: {text[:800]}; retrying with backoff (the operator's log has the traceback)"
        status = builders.build_stalled_status(
            self.previous, generation=self.generation, now=_now(), message=message, reason=builders.PASS_FAILED
        )
        if status != self.previous:
            self._write(status)

    def redact(self, text: str) -> str:
        """``text`` with the job's storage secrets (URL, password) replaced by ``***``: an exception
        may quote what it was given, and the status, events and log are read by people who may not
        read Secrets."""
        for secret in self.hidden:
            text = text.replace(secret, "***")
        return text

    def waiting_status(self) -> None:
        """The job cannot start yet (see ``waiting``): Stalled with the reason, nothing else changed."""
        assert self.waiting is not None
        reason, message = self.waiting
        log.warning("TuningJob %s/%s: waiting: %s", self.namespace, self.name, message)
        status = builders.build_stalled_status(
            self.previous, generation=self.generation, now=_now(), message=message, reason=reason
        )
        if status != self.previous:
            self._write(status)

    def _write(self, status: dict[str, Any]) -> bool:
        """Write the status; one the API server refused after its retries is not recorded as
        written (``previous`` stays what the object holds), so the next attempt writes it."""
        try:
            self.api.patch_status(self.namespace, self.name, status)
        except ApiUnavailable as err:
            log.warning("TuningJob %s/%s: status not written: %s", self.namespace, self.name, err)
            return False
        except ApiException as err:
            if err.status != 422:
                raise
            # The object fails the CRD's rules as they are now (admitted by an older CRD, on an API
            # server without validation ratcheting): no status can be written until it is edited.
            # Said once; the job is not driven further into a state nobody can see.
            if not self.status_refused:
                log.warning(
                    "TuningJob %s/%s: the API server refuses its status (422), the object no longer passes the "
                    "CRD's validation: %s",
                    self.namespace,
                    self.name,
                    self.redact(str(err.body or err.reason))[:1000],
                )
            self.status_refused = True
            return False
        self.previous, self.written_at = status, time.monotonic()
        self.status_refused = False
        return True

    def reopen(self) -> None:
        """Read the study again after a storage outage (raises while it still cannot be reached, or
        while a journal's volume has no room: opening only reads, the next pass would fail again)."""
        check_room(self.url)
        with self.lock:
            self._reopen()

    def _reopen(self) -> None:
        """The driver built again from the study, as after a crash (call under the job's lock)."""
        assert self.job is not None
        self.driver = Driver.open(
            self.job,
            self.url,
            self.backend,
            generation=self.generation,
            save_every=self.cfg.elapsed_save_seconds,
            elapsed=self.driver.elapsed() if self.driver is not None else None,
        )

    def invalid_status(self) -> dict[str, Any]:
        status = builders.build_invalid_status(
            self.problems, previous=self.previous, generation=self.generation, now=_now()
        )
        self._write(status)
        return status

    def apply(self, body: dict[str, Any]) -> None:
        """Drive the live object's spec if it is newer than the one applied (kubectl apply, GitOps)."""
        assert self.driver is not None
        generation = generation_of(body)
        if generation is None or generation == self.generation:
            return
        with self.lock:
            self.generation = generation
            try:
                job = validate_document(job_document(body), f"TuningJob {self.namespace}/{self.name}")
                self.driver.apply(job, generation)
            except InvalidTuningJob as err:
                # The CRD refuses almost everything validate does; what slips through stalls the
                # edit, not the job.
                self.refused = "the edited spec is invalid: " + "; ".join(str(p) for p in err.problems)
            except SpecChangeRefused as err:
                self.refused = str(err)
            else:
                self.job, self.refused = job, None

    def reconcile(self, body: dict[str, Any] | None = None) -> PassResult:
        """One pass over the live object ``body`` (its spec edits first), then write the status.
        Safe to call at any time, repeatedly."""
        assert self.driver is not None
        if body is not None:
            self.apply(body)
        with self.lock:
            now = _now()
            try:
                step = self.driver.step()
            except ApiUnavailable as err:
                # The API server failed a call of the pass, retries spent. The study and the pods
                # are the truth and a pass is safe to cut short at any line (the driver state
                # machine test), so drop the driver's cache as after a crash and let the next pass
                # start over, instead of failing the daemon (which kopf restarts a minute later).
                log.warning("TuningJob %s/%s: pass cut short: %s", self.namespace, self.name, err)
                self._reopen()
                return PassResult(None, self.previous, False, 0.0)
            # What the backend noticed on the pass thread (look-alike pods), posted by the daemon.
            step.outcome.events.extend(Event(r, m, warning=True) for r, m in self.backend.take_notices())
            status = builders.build_resource_status(
                step.status,
                previous=self.previous,
                generation=self.generation,
                start_time=self.start_time,
                now=now,
                storage=describe(self.url),
                refused=self.refused,
            )
            if (lead := leader.current()) is not None:  # several replicas: which one drives it, since when
                status["operator"] = lead.status()
            since = time.monotonic() - self.written_at
            write_in = None
            if builders.status_worth_writing(
                self.previous,
                status,
                self.cfg.elapsed_save_seconds,
                since_written=since,
                min_interval=self.cfg.status_min_interval_seconds,
            ):
                if not self._write(status):
                    write_in = self.interval  # not written: the next pass, due soon, writes it
            elif builders.status_worth_writing(self.previous, status, math.inf):
                write_in = max(0.0, self.cfg.status_min_interval_seconds - since)  # held back: due soon
            objectives = [o.metric for o in self.job.spec.objective.objectives] if self.job else []
            telemetry.record(self.namespace, self.name, step.outcome, step.seconds, objectives, self.uid)
            return PassResult(step.outcome, status, step.done, step.seconds, write_in)

    def close(self) -> None:
        if self.driver is not None:
            try:
                self.driver.save_clock()
            except outage_errors() as err:  # the clock goes on from its last save
                log.warning(
                    "TuningJob %s/%s: clock not saved: %s", self.namespace, self.name, fault_message(err, self.url)
                )

    def delete_all(self) -> None:
        """The TuningJob is being deleted: stop and remove every trial (no GC needed)."""
        if self.driver is not None:
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
            if ctl is None or ctl.waiting or (not ctl.valid and ctl.generation != generation_of(body)):
                # New, waiting for its storage, or invalid before and edited since: (re)build it
                # from the live object.
                ctl = self._by_uid[uid] = JobController(body, api)
            return ctl

    def find_uid(self, uid: str) -> JobController | None:
        with self._lock:
            return self._by_uid.get(uid)

    def find(self, namespace: str, name: str) -> JobController | None:
        with self._lock:
            return next((c for c in self._by_uid.values() if (c.namespace, c.name) == (namespace, name)), None)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)

"""One settings object, read from ``OPENAUTOGLM_*`` environment variables."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any


def _env(name: str, default: str) -> str:
    return os.environ.get(f"OPENAUTOGLM_{name}", default)


# Each setting is a dataclass field read when a Settings is made (not at import), so a test or a
# restarted operator sees the environment of that moment; a malformed value names its variable.
def _text(name: str, default: str) -> Any:
    return dataclasses.field(default_factory=lambda: _env(name, default))


def _int(name: str, default: int) -> Any:
    return dataclasses.field(default_factory=lambda: _parse(int, name, default))


def _float(name: str, default: float) -> Any:
    return dataclasses.field(default_factory=lambda: _parse(float, name, default))


def _flag(name: str, default: str) -> Any:
    """An on/off setting (on, true, 1, yes: on)."""
    return dataclasses.field(default_factory=lambda: _env(name, default).lower() in ("on", "true", "1", "yes"))


def _parse(kind: type[int] | type[float], name: str, default: float) -> Any:
    text = _env(name, str(default))
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"OPENAUTOGLM_{name}={text!r}: not {'an integer' if kind is int else 'a number'}") from None


@dataclasses.dataclass(frozen=True)
class Settings:
    #: Where local runs keep studies and trial directories, unless --workdir is given
    #: (default: ``.openautoglm/`` next to the TuningJob file).
    workdir: str | None = dataclasses.field(default_factory=lambda: _env("WORKDIR", "") or None)
    #: Default study storage (a journal path or a postgresql:// URL): of local runs, and of the
    #: operator's jobs that name none in spec.storage. OPENAUTOGLM_STORAGE_FILE names a file
    #: holding it instead (deploy/postgres mounts a Secret there: a password stays out of the
    #: process environment).
    storage: str | None = dataclasses.field(default_factory=lambda: _storage())
    #: Seconds between two reconcile passes of a local run.
    local_tick_seconds: float = _float("LOCAL_TICK_SECONDS", 0.5)
    #: Seconds between two writes of the elapsed time to the study.
    elapsed_save_seconds: float = _float("ELAPSED_SAVE_SECONDS", 10)
    #: Operator: directory (a PersistentVolume) holding one journal file per TuningJob.
    study_dir: str = _text("STUDY_DIR", "/var/lib/openautoglm/studies")
    #: Operator: port of /healthz (kopf's liveness endpoint).
    operator_health_port: int = _int("OPERATOR_HEALTH_PORT", 8080)
    #: Operator: port of its own Prometheus /metrics (0 disables).
    operator_metrics_port: int = _int("OPERATOR_METRICS_PORT", 8000)
    #: Operator: threads doing study and API work (reconcile passes) for all TuningJobs together.
    #: Jobs wait on the event loop, not in a thread: any number of jobs share these.
    operator_workers: int = _int("OPERATOR_WORKERS", 4)
    #: Operator: least seconds between two status writes of a job that only change counts, best and
    #: recent trials (phase, conditions and observedGeneration are written at once).
    status_min_interval_seconds: float = _float("STATUS_MIN_INTERVAL_SECONDS", 1)
    #: Operator: upper bound of seconds between two passes of a job (spec.metrics.intervalSeconds is used if lower).
    operator_max_interval_seconds: float = _float("OPERATOR_MAX_INTERVAL_SECONDS", 10)
    #: Operator: elect one leader among the operator's replicas on a coordination.k8s.io/v1 Lease
    #: (on/off); only the leader drives TuningJobs, a standby takes over when it dies. Off for a
    #: lone ``openautoglm operator``; deploy/ turns it on for its two replicas.
    leader_election: bool = _flag("LEADER_ELECTION", "off")
    #: Operator: the Lease's name and namespace (deploy/: the operator's own, from the downward API).
    leader_election_lease: str = _text("LEADER_ELECTION_LEASE", "openautoglm-operator")
    leader_election_namespace: str = _text("LEADER_ELECTION_NAMESPACE", "default")
    #: Operator: seconds a standby waits after the Lease last changed before it takes it over
    #: (client-go's default 15; the hand-over time after a leader dies is at most this + retry).
    leader_election_lease_seconds: int = _int("LEADER_ELECTION_LEASE_SECONDS", 15)
    #: Operator: seconds the leader goes on without a successful renewal before it exits (< lease).
    leader_election_renew_seconds: float = _float("LEADER_ELECTION_RENEW_SECONDS", 10)
    #: Operator: seconds between two renewals by the leader, or two polls by a standby.
    leader_election_retry_seconds: float = _float("LEADER_ELECTION_RETRY_SECONDS", 2)
    #: Operator: give every TuningJob NetworkPolicies for its trial pods (on/off): a trial's ranks
    #: reach each other on every port (Horovod's rendezvous and Gloo), its /metrics is reachable
    #: only from the operator's pods and the monitoring namespaces, and nothing else gets in.
    #: Isolation needs a CNI that enforces NetworkPolicy; egress is left to the user's own policies.
    trial_network_policy: bool = _flag("TRIAL_NETWORK_POLICY", "on")
    #: Operator: its own namespace, from which it scrapes the trials' /metrics (deploy/: the
    #: downward API's metadata.namespace).
    operator_namespace: str = _text("OPERATOR_NAMESPACE", "openautoglm-system")
    #: Operator: a label selector (``k=v,k2=v2``) matching the operator's own pods, the only pods of
    #: its namespace let in to the trials' /metrics.
    operator_pod_labels: str = _text("OPERATOR_POD_LABELS", "app.kubernetes.io/name=openautoglm-operator")
    #: Operator: a label selector of the namespaces whose pods may scrape the trials' /metrics
    #: (Prometheus); empty: none but the operator.
    monitoring_namespace_selector: str = _text(
        "MONITORING_NAMESPACE_SELECTOR", "kubernetes.io/metadata.name=monitoring"
    )
    #: Prometheus server of ``metrics.source: prometheus`` jobs that name no
    #: ``metrics.prometheus.url`` (the operator's, or a local run's).
    prometheus_url: str | None = dataclasses.field(default_factory=lambda: _env("PROMETHEUS_URL", "") or None)
    #: Operator: the Prometheus URLs a job may name (comma-separated; ``*``: any) besides
    #: OPENAUTOGLM_PROMETHEUS_URL, which is always allowed. A job naming another is Stalled
    #: (ConnectionNotAllowed): the operator connects only where its administrator said.
    allowed_prometheus_urls: tuple[str, ...] = dataclasses.field(
        default_factory=lambda: _list(_env("ALLOWED_PROMETHEUS_URLS", ""))
    )
    #: Operator: the PostgreSQL hosts (``host`` or ``host:port``, comma-separated; ``*``: any) a
    #: job's ``storage.postgres`` URL (given or from its Secret) may name. Default: the host of the
    #: operator's own OPENAUTOGLM_STORAGE, if that is a database.
    allowed_postgres_hosts: tuple[str, ...] = dataclasses.field(
        default_factory=lambda: _list(_env("ALLOWED_POSTGRES_HOSTS", "")) or _own_postgres_host()
    )
    #: The largest answer of a trial's /metrics (or of Prometheus) the engine reads, in bytes; a
    #: larger one is refused unread and recorded as the trial's metrics problem.
    scrape_limit_bytes: int = _int("SCRAPE_LIMIT_BYTES", 1048576)
    #: Seconds one read of a trial's /metrics may take in all (connecting, headers, body); a pass
    #: waits for its readings this long plus a margin, then goes on without those not done.
    scrape_deadline_seconds: float = _float("SCRAPE_DEADLINE_SECONDS", 2)
    #: Log level of the engine and operator.
    log_level: str = _text("LOG_LEVEL", "WARNING")

    def default_workdir(self, job_file: Path | None, job_name: str) -> Path:
        if self.workdir:
            return Path(self.workdir) / job_name
        base = job_file.parent if job_file is not None else Path.cwd()
        return base / ".openautoglm" / job_name


def load() -> Settings:
    return Settings()


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _own_postgres_host() -> tuple[str, ...]:
    """``host:port`` of the operator's own study database (OPENAUTOGLM_STORAGE[_FILE]), if it is one."""
    try:
        url = _storage()
    except ValueError:
        return ()
    if not url or not url.startswith("postgresql"):
        return ()
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return (f"{parts.hostname or 'localhost'}:{parts.port or 5432}",)
    except ValueError:
        return ()


def _storage() -> str | None:
    if url := _env("STORAGE", ""):
        return url
    path = _env("STORAGE_FILE", "")
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as err:
        raise ValueError(f"OPENAUTOGLM_STORAGE_FILE={path}: {err.strerror}") from err

"""Where the operator may connect on a TuningJob's behalf: the allow-lists of its settings.

A TuningJob names a Prometheus URL (``metrics.prometheus.url``) and a PostgreSQL URL (given, or
in a Secret). Followed blindly, that makes the operator -- with its network position and its
service account -- connect wherever a tenant says: an internal service probed, a database on
another team's host. So in the cluster both are checked against the operator's settings
(OPENAUTOGLM_ALLOWED_PROMETHEUS_URLS, OPENAUTOGLM_ALLOWED_POSTGRES_HOSTS; default: the operator's
own Prometheus and database); a refused one stalls the job with the reason. ``openautoglm tune``
on a laptop connects where its user says: there is no other tenant.

Pure functions: they raise :class:`ConnectionNotAllowed` with a message that names the setting
and never quotes a password.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from sqlalchemy.engine import URL

from openautoglm.config import Settings
from openautoglm.spec import TuningJob

ANY: Final = "*"
#: libpq connection parameters a job's database URL may carry. Others change where or how the
#: operator connects, or make it read files of its own container: ``hostaddr`` (connect to this
#: address whatever the host says), ``service``/``servicefile``, ``passfile``, ``sslkey``,
#: ``sslcert``, ``sslrootcert``, ``sslcrl`` ...
SAFE_DATABASE_PARAMETERS: Final = frozenset(
    {"user", "password", "sslmode", "connect_timeout", "application_name", "target_session_attrs", "options"}
)


class ConnectionNotAllowed(Exception):
    """The job names a server the operator's settings do not let it connect to."""


def effective_prometheus_url(job: TuningJob, cfg: Settings) -> str | None:
    """The Prometheus a ``metrics.source: prometheus`` job reads: its own, else the operator's."""
    own = job.spec.metrics.prometheus.url if job.spec.metrics.prometheus else None
    return own or cfg.prometheus_url


def check_prometheus(job: TuningJob, cfg: Settings) -> None:
    """Raise unless the job's metric source may be read from where it says."""
    if job.spec.metrics.source != "prometheus":
        return
    url = effective_prometheus_url(job, cfg)
    if url is None:
        raise ConnectionNotAllowed(
            "metrics.source is prometheus but the job names no metrics.prometheus.url and the operator "
            "has no OPENAUTOGLM_PROMETHEUS_URL"
        )
    allowed = {
        _origin(u) for u in (*cfg.allowed_prometheus_urls, *([cfg.prometheus_url] if cfg.prometheus_url else []))
    }
    if ANY in cfg.allowed_prometheus_urls or _origin(url) in allowed:
        return  # the operator's own is always allowed
    listed = ", ".join(cfg.allowed_prometheus_urls) or "none"
    raise ConnectionNotAllowed(
        f"metrics.prometheus.url {_origin(url)} is not one the operator may query "
        f"(OPENAUTOGLM_ALLOWED_PROMETHEUS_URLS: {listed}); leave it out to use the operator's own"
    )


def _origin(url: str) -> str:
    """scheme://host:port/path, lower-cased where URLs are case-blind, without credentials."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    except ValueError:
        return url
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/')}"


def check_database(url: URL, cfg: Settings, where: str) -> None:
    """Raise unless a job's database URL (``where`` says whence, for the message) names an allowed
    host and only harmless connection parameters."""
    if odd := sorted(set(url.query) - SAFE_DATABASE_PARAMETERS):
        raise ConnectionNotAllowed(
            f"{where}: connection parameter(s) {', '.join(odd)} are not allowed in a TuningJob's database URL "
            f"(allowed: {', '.join(sorted(SAFE_DATABASE_PARAMETERS))})"
        )
    host = url.host or "localhost"
    if "," in host:
        raise ConnectionNotAllowed(f"{where}: one host per database URL (libpq host lists are not allowed)")
    allowed = cfg.allowed_postgres_hosts
    if ANY in allowed or host in allowed or f"{host}:{url.port or 5432}" in allowed:
        return
    raise ConnectionNotAllowed(
        f"{where}: database host {host}:{url.port or 5432} is not one the operator may connect to "
        f"(OPENAUTOGLM_ALLOWED_POSTGRES_HOSTS: {', '.join(allowed) or 'none'})"
    )

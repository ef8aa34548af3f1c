"""Study storage: where the Optuna study of a TuningJob lives.

Only the engine (the local runner or the operator) talks to the study; trials never do.
A journal file is the default (one append-only file: survives a SIGKILL mid-write and
needs no server); PostgreSQL through Optuna's RDBStorage for scale or HA.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

#: Seconds after which a journal lock left by a killed writer is broken.
LOCK_GRACE_SECONDS = 10
RDB_SCHEMES = ("postgresql://", "postgresql+", "sqlite://", "mysql://", "mysql+")


def is_rdb_url(url: str) -> bool:
    return url.startswith(RDB_SCHEMES)


def open_storage(url: str) -> BaseStorage:
    """Open a storage from a URL (``postgresql://...``) or a journal file path.

    ``journal://`` prefixes are accepted for symmetry with the URL form.
    """
    if is_rdb_url(url):
        if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is not None:
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2(-binary).
            url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
        # pool_pre_ping: a PostgreSQL restart must not poison the pool of a long-running operator.
        return RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=None)
    path = Path(url.removeprefix("journal://")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    # The open()-based lock works on network file systems (a PersistentVolume), where
    # the default symlink lock is not guaranteed to. A writer killed while holding it
    # leaves the lock file behind: it is broken after the grace period (writes take ms).
    lock = JournalFileOpenLock(str(path), grace_period=LOCK_GRACE_SECONDS)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


def describe(url: str) -> str:
    """A printable location that hides a password in a database URL."""
    if is_rdb_url(url) and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user, has_password = creds.split(":", 1)[0], ":" in creds
        return f"{scheme}://{user}{':***' if has_password else ''}@{host}"
    return str(Path(url.removeprefix("journal://")).expanduser().resolve())


def study_exists(storage: BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def delete_study(storage: BaseStorage, name: str) -> None:
    if study_exists(storage, name):
        optuna.delete_study(study_name=name, storage=storage)


def outage_errors() -> tuple[type[BaseException], ...]:
    """What a study storage raises while it cannot be reached (a PostgreSQL restart, a network
    cut): Optuna's wrapper of a failed commit and SQLAlchemy's database errors. Not OSError: a
    journal that cannot be written (a full volume) is another fault with its own handling."""
    errors: list[type[BaseException]] = [optuna.exceptions.StorageInternalError]
    if importlib.util.find_spec("sqlalchemy") is not None:
        from sqlalchemy.exc import DBAPIError

        errors.append(DBAPIError)
    return tuple(errors)

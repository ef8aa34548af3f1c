"""Study storage: where the Optuna study of a TuningJob lives.

Only the engine (the local runner or the operator) talks to the study; trials never do.
A journal file is the default (one append-only file, each record appended whole or not
at all: it survives a SIGKILL mid-write and a full volume, and needs no server);
PostgreSQL through Optuna's RDBStorage for scale or HA.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any, Final

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from sqlalchemy.engine import URL, make_url

#: Seconds after which a journal lock left by a killed writer is broken.
LOCK_GRACE_SECONDS = 10
RDB_SCHEMES = ("postgresql://", "postgresql+", "sqlite://", "mysql://", "mysql+")
#: A journal write refused for want of room (the job is StorageFull until there is room again).
NO_ROOM: Final = (errno.ENOSPC, errno.EDQUOT)
#: Free bytes a stalled job's journal volume must take before the job writes again: many passes'
#: records. Less, and the next pass would fill it at once (Stalled on, off, on again).
ROOM_NEEDED_BYTES: Final = 64 * 1024
#: A database URL is short; a Secret value longer than this is something else.
MAX_DATABASE_URL_LENGTH: Final = 4096


class JournalWriteError(OSError):
    """The file system refused a journal append (no space, over quota, read-only, I/O error).

    Nothing of that append is left in the file: the journal reads as it did before it."""

    @property
    def no_room(self) -> bool:
        return self.errno in NO_ROOM


def _refused(err: OSError, path: str) -> JournalWriteError:
    return JournalWriteError(err.errno, err.strerror or "I/O error", path)


class WholeRecordJournalFileBackend(JournalFileBackend):
    """Optuna's journal file, where a record is appended whole or not at all.

    Optuna appends a record with one buffered write: on a full volume the kernel takes the part
    that fits, the rest is refused, and the record stays cut short at the end of the file.
    Readers skip such a tail, but the next append glues onto it: a line no reader can parse,
    and every record after it fails to load, for good. Here a failed append cuts the file back
    to its size before it, and an append first drops a cut-short tail left by someone else (a
    writer killed between the two, or an older version). Both hold the writers' lock."""

    def __init__(self, file_path: str, lock_obj: JournalFileOpenLock) -> None:
        super().__init__(file_path, lock_obj=lock_obj)
        self._path = file_path
        self._write_lock = lock_obj

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        try:
            self._write_lock.acquire()  # creates a lock file: fails on a volume with no inode left
        except OSError as err:
            raise _refused(err, self._path) from err
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_APPEND)
            try:
                self._append(fd, data)
            finally:
                os.close(fd)
        finally:
            self._write_lock.release()

    def _append(self, fd: int, data: bytes) -> None:
        size = _drop_cut_short_tail(fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # A network file system may report a full volume only here (or at close).
            os.fsync(fd)
        except OSError as err:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass  # the next append drops the cut-short tail before writing
            raise _refused(err, self._path) from err


def _drop_cut_short_tail(fd: int) -> int:
    """Cut the file after its last newline (what follows it never was a record) and return its size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    os.ftruncate(fd, end)
    return end


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
    path = journal_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The open()-based lock works on network file systems (a PersistentVolume), where
    # the default symlink lock is not guaranteed to. A writer killed while holding it
    # leaves the lock file behind: it is broken after the grace period (writes take ms).
    lock = JournalFileOpenLock(str(path), grace_period=LOCK_GRACE_SECONDS)
    return JournalStorage(WholeRecordJournalFileBackend(str(path), lock_obj=lock))


def journal_path(url: str) -> Path:
    return Path(url.removeprefix("journal://")).expanduser()


def check_room(url: str) -> None:
    """Raise JournalWriteError unless a journal's volume takes ROOM_NEEDED_BYTES now: written to a
    scratch file beside the journal and removed (free-space counts miss quotas and read-only
    mounts). Nothing to check for a database."""
    if is_rdb_url(url):
        return
    path = journal_path(url)
    try:
        fd, scratch = tempfile.mkstemp(prefix=".room-check-", dir=path.parent)
    except OSError as err:
        raise _refused(err, str(path)) from err
    try:
        view = memoryview(bytes(ROOM_NEEDED_BYTES))
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as err:
        raise _refused(err, str(path)) from err
    finally:
        os.close(fd)
        os.unlink(scratch)


def fault_message(err: BaseException, url: str) -> str:
    """What a storage fault means for the job, in a sentence (a warning, a Stalled condition)."""
    if isinstance(err, JournalWriteError):
        code = errno.errorcode.get(err.errno or 0, str(err.errno))
        until = "the volume has room again" if err.no_room else "it can be written again"
        return (
            f"study journal {describe(url)} cannot be written: {(err.strerror or '').lower()} ({code}); "
            f"nothing half-written was kept. The running trials go on; the job resumes when {until}"
        )
    return (
        f"study storage {describe(url)} unreachable ({type(err).__name__}): the running trials go on; "
        "the job resumes when it answers"
    )


def describe(url: str) -> str:
    """A printable location: a journal's absolute path, or a database URL with its password hidden
    and its query parameters dropped (libpq also takes ``?password=...``). This is the only form
    in which a storage URL is shown: status, events, logs, the CLI."""
    if not is_rdb_url(url):
        return str(journal_path(url).resolve())
    scheme, _, rest = url.partition("://")
    location, _, query = rest.partition("?")
    params = urllib.parse.parse_qs(query)
    # The credentials end at the *last* '@': an unescaped '@' in a password must not leak its tail.
    creds, at, where = location.rpartition("@")
    user = creds.split(":", 1)[0] if at else (params.get("user") or [""])[0]
    hidden = (at and ":" in creds) or "password" in params
    userinfo = f"{user}{':***' if hidden else ''}"
    return f"{scheme}://{userinfo + '@' if userinfo else ''}{where}"


def parse_database_url(text: str) -> URL:
    """A PostgreSQL URL read from where its author may have put anything (a Secret's value).

    Raises:
        ValueError: not a postgresql:// URL; the message never quotes the text (it may be a
            password that was meant for another key of the Secret).
    """
    if len(text) > MAX_DATABASE_URL_LENGTH:
        raise ValueError(f"longer than {MAX_DATABASE_URL_LENGTH} characters: not a database URL")
    try:
        parsed = make_url(text.strip())
    except Exception:  # noqa: BLE001 - SQLAlchemy's ArgumentError, or anything a bad text causes
        raise ValueError("not a database URL (postgresql://user@host:port/database)") from None
    if parsed.drivername.split("+", 1)[0] != "postgresql":
        raise ValueError("not a postgresql:// URL")
    return parsed


def study_exists(storage: BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def delete_study(storage: BaseStorage, name: str) -> None:
    if study_exists(storage, name):
        optuna.delete_study(study_name=name, storage=storage)


def outage_errors() -> tuple[type[BaseException], ...]:
    """What a study storage raises while it cannot be written (a PostgreSQL restart, a network
    cut, a full journal volume): Optuna's wrapper of a failed commit, SQLAlchemy's database errors
    and JournalWriteError (not any OSError: a bug reading a trial's files is not an outage)."""
    errors: list[type[BaseException]] = [optuna.exceptions.StorageInternalError, JournalWriteError]
    if importlib.util.find_spec("sqlalchemy") is not None:
        from sqlalchemy.exc import DBAPIError

        errors.append(DBAPIError)
    return tuple(errors)

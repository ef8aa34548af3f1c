"""Where the operator keeps a job's study: the spec's storage, else OPENAUTOGLM_STORAGE
(deploy/postgres), else a journal named with the object's uid on the studies volume -- and what a
tenant may not make it do: use a Secret value that is no database URL (or show it), connect to a
database host the operator's settings do not list, or keep a journal outside its namespace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import digits_job

from openautoglm.config import Settings
from openautoglm.engine.storage import describe
from openautoglm.k8s import builders
from openautoglm.k8s.controller import (
    ConnectionRefusedByPolicy,
    StorageSecretInvalid,
    StorageSecretMissing,
    journal_in_namespace,
    storage_url,
)
from openautoglm.spec import TuningJob

BODY = {"metadata": {"name": "digits", "namespace": "team-a", "uid": "0123456789abcdef"}}
PASSWORD = "S3cret-do-not-show"


class _Secrets:
    def __init__(self, value: str | None = None, data: dict[str, str] | None = None) -> None:
        self.value, self.data = value, data

    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        if self.data is not None:
            if key not in self.data:
                raise KeyError(key)
            return self.data[key]
        return self.value or f"postgresql://from-secret/{namespace}-{name}-{key}"


def _job(**storage: Any) -> TuningJob:
    return TuningJob.model_validate(digits_job(name="digits", storage=storage))


def _cfg(**kw: Any) -> Settings:
    kw.setdefault("study_dir", "/studies")
    kw.setdefault("storage", None)
    kw.setdefault("allowed_postgres_hosts", ("*",))
    return Settings(**kw)


def test_a_job_without_storage_gets_a_journal_on_the_volume() -> None:
    url = storage_url(_job(), BODY, _Secrets(), _cfg())  # type: ignore[arg-type]
    assert url == "/studies/team-a/digits-01234567.journal"


def test_the_operators_default_storage_comes_before_the_volume() -> None:
    cfg = _cfg(storage="postgresql://db/studies")
    assert storage_url(_job(), BODY, _Secrets(), cfg) == "postgresql://db/studies"  # type: ignore[arg-type]


def test_the_jobs_own_storage_comes_first(tmp_path: Path) -> None:
    cfg = _cfg(study_dir=str(tmp_path), storage="postgresql://db/studies")
    job = _job(postgres={"secretRef": {"name": "pg", "key": "url"}})
    assert storage_url(job, BODY, _Secrets(), cfg) == "postgresql://from-secret/team-a-pg-url"  # type: ignore[arg-type]
    job = _job(journal={"path": "mine.journal"})
    assert storage_url(job, BODY, _Secrets(), cfg) == str(tmp_path / "team-a" / "mine.journal")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- Secrets
def test_a_secret_that_is_not_a_url_stalls_naming_the_secret_and_key_never_the_value() -> None:
    # Issue 21, case 4: `key: password` made the password a journal file name and showed it in the status.
    job = _job(postgres={"secretRef": {"name": "db", "key": "password"}})
    secrets = _Secrets(data={"url": "postgresql://u@db/x", "password": PASSWORD})
    with pytest.raises(StorageSecretInvalid) as err:
        storage_url(job, BODY, secrets, _cfg())  # type: ignore[arg-type]
    message = str(err.value)
    assert "team-a/db" in message and "'password'" in message
    assert PASSWORD not in message and PASSWORD not in repr(err.value.__cause__)
    assert err.value.reason == builders.STORAGE_SECRET_INVALID


@pytest.mark.parametrize(
    "value",
    [PASSWORD, "x" * 10_000, "mysql://u:" + PASSWORD + "@db/x", "db.example:5432 " + PASSWORD, "", "\n"],
    ids=["password", "huge", "other-database", "no-scheme", "empty", "blank"],
)
def test_no_secret_value_but_a_postgresql_url_is_used(value: str) -> None:
    job = _job(postgres={"secretRef": {"name": "db"}})
    with pytest.raises(StorageSecretInvalid) as err:
        storage_url(job, BODY, _Secrets(data={"url": value}), _cfg())  # type: ignore[arg-type]
    assert PASSWORD not in str(err.value)


def test_a_missing_key_is_missing_not_invalid() -> None:
    job = _job(postgres={"secretRef": {"name": "db", "key": "url"}})
    with pytest.raises(StorageSecretMissing):
        storage_url(job, BODY, _Secrets(data={}), _cfg())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://db:5432/optuna?user=u&password={PASSWORD}", "postgresql://u:***@db:5432/optuna"),
        (f"postgresql://u:{PASSWORD}@db/optuna?sslmode=require", "postgresql://u:***@db/optuna"),
        ("postgresql+psycopg2://u@db:6543/optuna", "postgresql+psycopg2://u@db:6543/optuna"),
    ],
)
def test_a_database_url_is_shown_without_password_or_query(url: str, shown: str) -> None:
    assert describe(url) == shown


# ----------------------------------------------------------------------------- allow-lists
@pytest.mark.parametrize(
    ("allowed", "url", "ok"),
    [
        (("db",), "postgresql://u@db/x", True),
        (("db:5432",), "postgresql://u@db/x", True),
        (("db:5432",), "postgresql://u@db:6543/x", False),
        (("db",), "postgresql://u@evil.example/x", False),
        ((), "postgresql://u@db/x", False),
        (("*",), "postgresql://u@anywhere:1/x", True),
        # Parameters that send the connection elsewhere, or read the operator's own files.
        (("db",), "postgresql://u@db/x?hostaddr=10.0.0.9", False),
        (("db",), "postgresql://u@db/x?sslkey=/var/run/secrets/kubernetes.io/serviceaccount/token", False),
        (("db",), "postgresql://u@db,evil/x", False),
    ],
)
def test_a_database_host_must_be_on_the_allow_list(allowed: tuple[str, ...], url: str, ok: bool) -> None:
    job = _job(postgres={"secretRef": {"name": "db"}})
    cfg = _cfg(allowed_postgres_hosts=allowed)
    if ok:
        assert storage_url(job, BODY, _Secrets(url), cfg) == url  # type: ignore[arg-type]
    else:
        with pytest.raises(ConnectionRefusedByPolicy) as err:
            storage_url(job, BODY, _Secrets(url), cfg)  # type: ignore[arg-type]
        assert "OPENAUTOGLM_ALLOWED_POSTGRES_HOSTS" in str(err.value) or "not allowed" in str(err.value)


def test_the_default_allow_list_is_the_operators_own_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAUTOGLM_STORAGE", f"postgresql://tuner:{PASSWORD}@pg.openautoglm-system:5432/optuna")
    monkeypatch.delenv("OPENAUTOGLM_ALLOWED_POSTGRES_HOSTS", raising=False)
    assert Settings().allowed_postgres_hosts == ("pg.openautoglm-system:5432",)


# ----------------------------------------------------------------------------- journals
def test_a_journal_stays_inside_its_namespaces_directory(tmp_path: Path) -> None:
    (tmp_path / "team-a").mkdir()
    (tmp_path / "team-b").mkdir()
    assert journal_in_namespace(str(tmp_path), "team-a", "x.journal") == str(tmp_path / "team-a" / "x.journal")
    for name in ("../team-b/x.journal", "/tmp/fill.journal", "..", ""):
        with pytest.raises(ConnectionRefusedByPolicy):
            journal_in_namespace(str(tmp_path), "team-a", name)
    # A link planted in the namespace's directory does not lead out of it.
    os.symlink(tmp_path / "team-b" / "theirs.journal", tmp_path / "team-a" / "link.journal")
    with pytest.raises(ConnectionRefusedByPolicy):
        journal_in_namespace(str(tmp_path), "team-a", "link.journal")

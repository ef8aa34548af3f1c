"""Where the operator keeps a job's study: the spec's storage, else OPENAUTOGLM_STORAGE
(deploy/postgres), else a journal named with the object's uid on the studies volume."""

from __future__ import annotations

from typing import Any

from helpers import digits_job

from openautoglm.k8s.controller import storage_url
from openautoglm.settings import Settings
from openautoglm.spec import TuningJob

BODY = {"metadata": {"name": "digits", "namespace": "team-a", "uid": "0123456789abcdef"}}


class _Secrets:
    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        return f"postgresql://from-secret/{namespace}/{name}/{key}"


def _job(**storage: Any) -> TuningJob:
    return TuningJob.model_validate(digits_job(name="digits", storage=storage))


def test_a_job_without_storage_gets_a_journal_on_the_volume() -> None:
    url = storage_url(_job(), BODY, _Secrets(), Settings(study_dir="/studies", storage=None))  # type: ignore[arg-type]
    assert url == "/studies/team-a/digits-01234567.journal"


def test_the_operators_default_storage_comes_before_the_volume() -> None:
    cfg = Settings(study_dir="/studies", storage="postgresql://db/studies")
    assert storage_url(_job(), BODY, _Secrets(), cfg) == "postgresql://db/studies"  # type: ignore[arg-type]


def test_the_jobs_own_storage_comes_first() -> None:
    cfg = Settings(study_dir="/studies", storage="postgresql://db/studies")
    job = _job(postgres={"secretRef": {"name": "pg", "key": "url"}})
    assert storage_url(job, BODY, _Secrets(), cfg) == "postgresql://from-secret/team-a/pg/url"  # type: ignore[arg-type]
    job = _job(journal={"path": "/data/mine.journal"})
    assert storage_url(job, BODY, _Secrets(), cfg) == "/data/mine.journal"  # type: ignore[arg-type]

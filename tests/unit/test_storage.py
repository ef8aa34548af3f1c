"""Study storage: a journal file or PostgreSQL keeps a job's study across restarts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import optuna
import pytest
from helpers import digits_job

from openautoglm import space
from openautoglm.engine import storage
from openautoglm.engine.study import StudyMismatch, open_study
from openautoglm.spec import TuningJob

optuna.logging.set_verbosity(optuna.logging.WARNING)

STORAGES = ["journal", pytest.param("postgres", marks=pytest.mark.postgres)]


def _job(name: str = "storage-test", **overrides: Any) -> TuningJob:
    overrides.setdefault("algorithm", {"sampler": "random", "seed": 1})
    return TuningJob.model_validate(digits_job(name=name, **overrides))


@pytest.fixture(params=STORAGES)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "journal":
        return str(tmp_path / "studies" / "journal.log")
    url = request.getfixturevalue("postgres_url")
    # One session-wide database: remove what an earlier test left under the names used here.
    st = storage.open_storage(url)
    for s in st.get_all_studies():
        optuna.delete_study(study_name=s.study_name, storage=st)
    return url


def _ask_tell(study: optuna.Study, job: TuningJob, n: int) -> None:
    for _ in range(n):
        trial = study.ask()
        params = space.suggest(trial, job.spec)
        trial.report(0.5, 1)
        study.tell(trial, 0.9 if params["optimizer"] == "adam" else 0.8)


def _summary(study: optuna.Study) -> list[tuple]:
    return [(t.number, t.state, t.params, t.values, t.intermediate_values) for t in study.get_trials()]


def test_study_survives_reopening(storage_url: str) -> None:
    job = _job()
    study = open_study(job, storage_url)
    _ask_tell(study, job, 3)
    running = study.ask()
    space.suggest(running, job.spec)
    before = _summary(study)

    again = open_study(job, storage_url)  # a new storage object, as after an operator restart
    assert again is not study
    assert _summary(again) == before
    assert [t.state for t in again.trials] == [optuna.trial.TrialState.COMPLETE] * 3 + [optuna.trial.TrialState.RUNNING]
    assert again.best_value == max(t.value for t in again.trials[:3])
    assert again.study_name == job.name

    # The reopened study continues the numbering.
    _ask_tell(again, job, 1)
    assert [t.number for t in again.trials] == [0, 1, 2, 3, 4]


def test_journal_file_is_created_with_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "digits.log"
    study = open_study(_job(), str(path))
    _ask_tell(study, _job(), 1)
    assert path.exists() and path.stat().st_size > 0
    assert storage.study_exists(storage.open_storage(f"journal://{path}"), "storage-test")


def test_namespaced_jobs_get_separate_studies(tmp_path: Path) -> None:
    url = str(tmp_path / "journal.log")
    a = digits_job(name="same")
    b = digits_job(name="same")
    a["metadata"]["namespace"] = "team-a"
    b["metadata"]["namespace"] = "team-b"
    sa = open_study(TuningJob.model_validate(a), url)
    sb = open_study(TuningJob.model_validate(b), url)
    _ask_tell(sa, TuningJob.model_validate(a), 2)
    assert sa.study_name != sb.study_name
    # team-b's study holds only its own defaults trial, still waiting: nothing of team-a's.
    assert [t.state for t in sb.trials] == [optuna.trial.TrialState.WAITING]


def test_changed_search_space_is_a_mismatch(storage_url: str) -> None:
    job = _job()
    _ask_tell(open_study(job, storage_url), job, 1)

    doc = digits_job(name="storage-test", algorithm={"sampler": "random", "seed": 1})
    doc["spec"]["parameters"][0]["high"] = 0.5
    with pytest.raises(StudyMismatch, match=r"another spec\.parameters: .*--fresh"):
        open_study(TuningJob.model_validate(doc), storage_url)

    flipped = digits_job(name="storage-test", objective={"metric": "accuracy", "direction": "minimize"})
    with pytest.raises(StudyMismatch):
        open_study(TuningJob.model_validate(flipped), storage_url)


def test_raised_budget_or_other_pruner_is_not_a_mismatch_but_other_sampler_is(storage_url: str) -> None:
    job = _job()
    _ask_tell(open_study(job, storage_url), job, 2)
    bigger = _job(
        budget={"maxTrials": 40, "parallelism": 4},
        earlyStopping={"pruner": "median"},
        algorithm={**job.spec.algorithm.model_dump(exclude_none=True), "seed": 3},
    )
    study = open_study(bigger, storage_url)
    assert len(study.trials) == 2
    # The sampler is part of what the study's trials mean (its settings, its start-up trials).
    other = _job(algorithm={"sampler": "tpe", "seed": 3})
    with pytest.raises(StudyMismatch, match=r"another spec\.algorithm: .*--fresh"):
        open_study(other, storage_url)


def test_study_made_when_unset_meant_tpe_opens_with_auto(storage_url: str) -> None:
    # Before "auto", an unset sampler meant tpe: such a study must keep running after an
    # upgrade (auto reads the same trials), but naming another sampler is still a mismatch.
    job = _job(algorithm={"sampler": "tpe", "seed": 1})
    _ask_tell(open_study(job, storage_url), job, 2)
    unset = _job(algorithm={"seed": 1})
    assert unset.spec.algorithm.sampler is None
    assert len(open_study(unset, storage_url).trials) == 2
    assert len(open_study(unset, storage_url).trials) == 2  # the fingerprint now says auto
    with pytest.raises(StudyMismatch, match=r"another spec\.algorithm"):
        open_study(_job(algorithm={"sampler": "random", "seed": 1}), storage_url)


def test_warm_start_is_enqueued_exactly_once(storage_url: str) -> None:
    warm = [
        {"params": {"lr": 0.01, "optimizer": "sgd", "momentum": 0.9}},
        {"params": {"lr": 0.05, "optimizer": "adam", "beta1": 0.9}},
    ]
    job = _job(warmStart=warm, algorithm={"sampler": "random", "seed": 1, "startFromDefaults": False})
    first = open_study(job, storage_url)
    second = open_study(job, storage_url)
    assert [t.state for t in second.trials] == [optuna.trial.TrialState.WAITING] * 2

    trial = first.ask()
    params = space.suggest(trial, job.spec)
    assert params["lr"] == 0.01 and params["optimizer"] == "sgd" and params["momentum"] == pytest.approx(0.9)
    assert "beta1" not in params
    first.tell(trial, 0.5)

    # Reopening after the warm-start trials ran must not enqueue them again.
    third = open_study(job, storage_url)
    assert len(third.trials) == 2
    trial = third.ask()
    assert space.suggest(trial, job.spec)["lr"] == 0.05
    third.tell(trial, 0.6)
    assert len(open_study(job, storage_url).trials) == 2


def test_a_built_in_task_starts_from_its_defaults_then_the_warm_start(storage_url: str) -> None:
    warm = [{"params": {"lr": 0.05, "optimizer": "sgd", "momentum": 0.5}}]
    job = _job(warmStart=warm)  # startFromDefaults unset: on for a built-in task
    study = open_study(job, storage_url)
    first, second = study.ask(), study.ask()
    defaults = space.trial_params(job.spec, space.suggest(first, job.spec))
    # digits' defaults, as this search space admits them: hidden's default 128 is above its
    # range (16-64), so the sampler picks hidden; beta1 applies (adam), momentum does not.
    assert defaults["lr"] == 0.001 and defaults["optimizer"] == "adam" and defaults["batch_size"] == 64
    assert defaults["beta1"] == 0.9 and "momentum" not in defaults and 16 <= defaults["hidden"] <= 64
    assert set(first.params) == {"lr", "batch_size", "optimizer", "beta1", "hidden"}
    assert first.user_attrs["origin"] == "defaults"
    assert space.suggest(second, job.spec)["lr"] == 0.05 and second.user_attrs["origin"] == "warmStart"
    # Enqueued once, when the study is created: a restart does not add them again.
    assert len(open_study(job, storage_url).trials) == 2


def test_no_defaults_trial_when_switched_off_or_for_a_grid(storage_url: str) -> None:
    off = _job(name="off", algorithm={"sampler": "random", "seed": 1, "startFromDefaults": False})
    assert open_study(off, storage_url).trials == []
    grid = _job(name="grid", algorithm={"sampler": "grid", "seed": 1})
    assert open_study(grid, storage_url).trials == []


def test_describe_hides_the_password(tmp_path: Path) -> None:
    shown = storage.describe("postgresql://tuner:s3cr3t@db.example:5432/studies")
    assert "s3cr3t" not in shown
    assert "tuner" in shown and "db.example:5432/studies" in shown
    # An unescaped '@' in the password must not leak its tail either.
    assert (
        storage.describe("postgresql+psycopg2://tuner:p@ss@word@db/studies")
        == "postgresql+psycopg2://tuner:***@db/studies"
    )
    journal = tmp_path / "j.log"
    assert storage.describe(f"journal://{journal}") == str(journal.resolve())


def test_storage_url_schemes() -> None:
    assert storage.is_rdb_url("postgresql://u@h/db")
    assert storage.is_rdb_url("postgresql+psycopg2://u@h/db")
    assert not storage.is_rdb_url("/var/lib/openautoglm/studies.log")
    assert not storage.is_rdb_url("journal:///var/lib/openautoglm/studies.log")


_ASKER = textwrap.dedent("""
    import json, sys
    from openautoglm import space
    from openautoglm.spec import TuningJob
    from openautoglm.engine.study import open_study

    url, doc, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    job = TuningJob.model_validate(doc)
    study = open_study(job, url)
    print("ready", flush=True)
    sys.stdin.readline()  # both engines start asking at the same moment
    numbers = []
    for _ in range(n):
        trial = study.ask()
        space.suggest(trial, job.spec)
        numbers.append(trial.number)
        study.tell(trial, 0.5)
    print(json.dumps(numbers))
""")


@pytest.mark.postgres
def test_concurrent_engines_get_distinct_trial_numbers(postgres_url: str) -> None:
    st = storage.open_storage(postgres_url)
    storage.delete_study(st, "concurrent")
    doc = digits_job(name="concurrent", algorithm={"sampler": "random", "seed": 1})
    open_study(TuningJob.model_validate(doc), postgres_url)  # create once: both then load it
    n = 20
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ASKER, postgres_url, json.dumps(doc), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.communicate()[1]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    a, b = (json.loads(out.strip().splitlines()[-1]) for out, _ in outs)
    assert len(a) == len(b) == n
    assert not set(a) & set(b), f"both engines got trial numbers {sorted(set(a) & set(b))}"
    assert sorted(a + b) == list(range(2 * n))
    study = open_study(TuningJob.model_validate(doc), postgres_url)
    assert len(study.trials) == 2 * n
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

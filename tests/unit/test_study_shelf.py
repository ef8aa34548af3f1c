"""`openautoglm dashboard`'s storage: every study of a folder of journals (the operator's volume)
as one read-only storage, new files included; no write reaches a file."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from openautoglm.dashboard import ReadOnlyStorageError, StudyShelf
from openautoglm.engine.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(path: Path, name: str, values: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=open_storage(str(path)), direction="maximize")
    for v in values:
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        study.tell(trial, v)


def test_a_folder_of_journals_is_one_storage(tmp_path: Path) -> None:
    _study(tmp_path / "team-a" / "digits-0123abcd.journal", "team-a/digits", [0.9, 0.95])
    _study(tmp_path / "team-b" / "text-lm-89abcdef.journal", "team-b/text-lm", [0.5, 0.7, 0.6])
    shelf = StudyShelf(str(tmp_path))
    studies = {s.study_name: s for s in shelf.get_all_studies()}
    assert set(studies) == {"team-a/digits", "team-b/text-lm"}
    assert len({s._study_id for s in studies.values()}) == 2  # the files' own ids are both 0

    b = studies["team-b/text-lm"]._study_id
    assert shelf.get_study_id_from_name("team-b/text-lm") == b
    assert shelf.get_study_name_from_id(b) == "team-b/text-lm"
    trials = shelf.get_all_trials(b)
    assert [t.value for t in trials] == [0.5, 0.7, 0.6]
    assert shelf.get_best_trial(b).value == 0.7
    assert shelf.get_trial(trials[1]._trial_id).value == 0.7
    assert shelf.get_trial_id_from_study_id_trial_number(b, 2) == trials[2]._trial_id
    assert shelf.get_study_directions(b) == [optuna.study.StudyDirection.MAXIMIZE]
    # optuna's own Study works over it too (the dashboard's analysis plots use it)
    assert optuna.load_study(study_name="team-a/digits", storage=shelf).best_value == 0.95
    with pytest.raises(KeyError):
        shelf.get_study_id_from_name("team-c/none")

    # A job created later: its journal appears on the next listing.
    _study(tmp_path / "team-a" / "late-77777777.journal", "team-a/late", [0.1])
    assert {s.study_name for s in shelf.get_all_studies()} == {"team-a/digits", "team-b/text-lm", "team-a/late"}
    assert shelf.get_study_id_from_name("team-b/text-lm") == b  # ids stay put


def test_every_write_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    journal = tmp_path / "ns" / "job-00000000.journal"
    _study(journal, "ns/job", [0.9])
    before = journal.read_bytes()
    shelf = StudyShelf(str(tmp_path))
    study_id = shelf.get_study_id_from_name("ns/job")
    trial_id = shelf.get_all_trials(study_id)[0]._trial_id
    writes = [
        lambda: shelf.create_new_study([optuna.study.StudyDirection.MINIMIZE], "ns/new"),
        lambda: shelf.delete_study(study_id),
        lambda: shelf.set_study_user_attr(study_id, "k", 1),
        lambda: shelf.set_study_system_attr(study_id, "dashboard:note", "x"),
        lambda: shelf.create_new_trial(study_id),
        lambda: shelf.set_trial_user_attr(trial_id, "k", 1),
        lambda: shelf.set_trial_system_attr(trial_id, "k", 1),
        lambda: shelf.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL),
        lambda: shelf.set_trial_intermediate_value(trial_id, 1, 0.5),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyStorageError, match="read-only"):
            write()
    assert journal.read_bytes() == before


def test_one_journal_file_or_nothing(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    _study(journal, "local-job", [1.0])
    assert [s.study_name for s in StudyShelf(str(journal)).get_all_studies()] == ["local-job"]
    with pytest.raises(FileNotFoundError, match="no study storage at"):
        StudyShelf(str(tmp_path / "missing"))


def test_a_name_in_two_files_is_told_apart(tmp_path: Path) -> None:
    # A TuningJob deleted and created again: two journals, one study name.
    _study(tmp_path / "ns" / "digits-aaaaaaaa.journal", "ns/digits", [0.1])
    _study(tmp_path / "ns" / "digits-bbbbbbbb.journal", "ns/digits", [0.2, 0.3])
    shelf = StudyShelf(str(tmp_path))
    names = sorted(s.study_name for s in shelf.get_all_studies())
    assert names == ["ns/digits [digits-aaaaaaaa.journal]", "ns/digits [digits-bbbbbbbb.journal]"]
    for name, values in zip(names, ([0.1], [0.2, 0.3]), strict=True):
        study_id = shelf.get_study_id_from_name(name)
        assert shelf.get_study_name_from_id(study_id) == name
        assert [t.value for t in shelf.get_all_trials(study_id)] == values
        # what optuna-dashboard does for plots and importances: a Study by name
        assert [t.value for t in optuna.load_study(study_name=name, storage=shelf).trials] == values


def test_an_unreadable_journal_is_left_out_not_the_listing(tmp_path: Path) -> None:
    _study(tmp_path / "ns" / "good-00000000.journal", "ns/good", [0.5])
    (tmp_path / "ns" / "broken-11111111.journal").write_text('{"op_code": 0, "worker_id": "x"\nnot json\n')
    assert [s.study_name for s in StudyShelf(str(tmp_path)).get_all_studies()] == ["ns/good"]

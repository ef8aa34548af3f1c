"""What stays of the trials' checkpoints (trial.checkpoint.keep) and how it is removed (issue 24).

`kept` is a function of the study (a real Optuna study and the engine's ledger here);
`openautoglm_trial.prune` is what the janitor pod runs in a cluster (run here as that command, on
a real directory); the LocalBackend removes the same locally. The end-to-end check, through
`openautoglm tune` and the operator, is in tests/engine/test_checkpoints.py and
tests/k8s/test_checkpoints_cluster.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from helpers import digits_job
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from openautoglm.engine.checkpoints import kept
from openautoglm.engine.ledger import TrialLedger
from openautoglm.local.backend import LocalBackend
from openautoglm.validation import validate_document


def job(keep: str | None):
    doc = digits_job()
    if keep is not None:
        doc["spec"]["trial"]["checkpoint"] = {"keep": keep}
    return validate_document(doc)


def study_with(*outcomes: float | str) -> optuna.Study:
    """Trials in order: a float completes with that value, 'pruned'/'fail'/'running' as said."""
    study = optuna.create_study(storage=InMemoryStorage(), direction="maximize")
    for outcome in outcomes:
        t = study.ask()
        if isinstance(outcome, float):
            study.tell(t, outcome)
        elif outcome == "pruned":
            study.tell(t, state=TrialState.PRUNED)
        elif outcome == "fail":
            study.tell(t, state=TrialState.FAIL)
    return study


def ledger_of(study: optuna.Study) -> TrialLedger:
    ledger = TrialLedger(study, ["maximize"])
    ledger.refresh()
    return ledger


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        ("best", {2, 5}),  # the best completed (trial 2) and the running one
        ("none", {5}),  # only what a live run resumes from
        ("all", None),  # nothing is removed
        (None, None),  # no trial.checkpoint
    ],
)
def test_what_each_keep_policy_keeps(keep, expected):
    study = study_with(0.5, "pruned", 0.9, "fail", 0.7, "running")
    assert kept(job(keep), ledger_of(study)) == expected


def test_a_new_best_lets_the_old_ones_checkpoint_go():
    study = study_with(0.5)
    assert kept(job("best"), ledger_of(study)) == {0}
    study.tell(study.ask(), 0.8)
    assert kept(job("best"), ledger_of(study)) == {1}


def tree(root, *numbers):
    for n in numbers:
        d = root / f"trial-{n}"
        d.mkdir(parents=True)
        (d / "model.pt").write_bytes(b"weights")


def test_the_janitor_command_removes_only_finished_trials_not_kept(tmp_path):
    tree(tmp_path, 0, 1, 2, 3, 7)
    (tmp_path / "notes.txt").write_text("not a trial's")
    (tmp_path / "trial-x").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    os.symlink(outside, tmp_path / "trial-4")  # a link is removed as a link, never followed
    done = subprocess.run(
        [sys.executable, "-m", "openautoglm_trial.prune", str(tmp_path), "--below", "5", "--keep", "2,3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "trial-2", "trial-3", "trial-7", "trial-x"]
    assert (outside / "precious").exists()
    assert done.stdout.split("\n")[:3] == ["removed trial-0", "removed trial-1", "removed trial-4"]
    again = subprocess.run(
        [sys.executable, "-m", "openautoglm_trial.prune", str(tmp_path / "gone"), "--below", "5"],
        capture_output=True,
        timeout=60,
    )
    assert again.returncode == 0, "a directory that is not there yet is nothing to remove"


def test_the_local_backend_keeps_checkpoints_under_the_work_dir_and_tidies_them(tmp_path):
    backend = LocalBackend(job("best"), tmp_path)
    assert backend.checkpoint_location(3) == {"path": str(tmp_path / "checkpoints" / "trial-3")}
    tree(tmp_path / "checkpoints", 0, 1, 2, 3)
    assert backend.tidy_checkpoints({1, 3}, 3) is True
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["trial-1", "trial-3"]
    assert LocalBackend(job(None), tmp_path / "plain").checkpoint_location(3) is None

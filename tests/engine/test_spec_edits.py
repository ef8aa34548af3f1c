"""Spec edits of a job on this machine, as GitOps edits a TuningJob in a cluster
(tests/k8s/test_spec_edits_cluster.py runs the same edits through kubectl and the operator).

Each edit is made to the job *file*, and `openautoglm tune` (the real CLI) is run on it, or
the file is saved while the job runs: the local runner applies it at its next pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from openautoglm.engine.storage import open_storage

FAST_ENV = {"OPENAUTOGLM_LOCAL_TICK_SECONDS": "0.1", "OPENAUTOGLM_ELAPSED_SAVE_SECONDS": "1"}


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _tune(path: Path, workdir: Path, *extra: str, timeout: float = 180) -> tuple[int, dict[str, Any], str]:
    out = workdir / "status.json"
    out.unlink(missing_ok=True)
    import os

    env = {**os.environ, **FAST_ENV}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openautoglm.cli",
            "tune",
            str(path),
            "--workdir",
            str(workdir),
            "--json",
            str(out),
            "--quiet",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    status = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, status, proc.stdout + proc.stderr


def _trials(workdir: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(str(workdir / name / "study.journal"))
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def test_raised_max_trials_runs_exactly_that_many_more_and_bumps_the_generation(tmp_path, toy):
    path = tmp_path / "job.yaml"
    doc = toy("edits", max_trials=3, parallelism=2, epochs=2)
    _write(path, doc)
    rc, status, out = _tune(path, tmp_path)
    assert rc == 0, out
    assert status["phase"] == "Succeeded" and status["counts"]["finished"] == 3 and status["generation"] == 1
    first = {t.number: (t.params, t.value) for t in _trials(tmp_path, "edits")}

    # The same file again: nothing runs, nothing changes.
    rc, status, out = _tune(path, tmp_path)
    assert rc == 0 and status["counts"]["finished"] == 3 and status["generation"] == 1, out

    doc["spec"]["budget"]["maxTrials"] = 5
    _write(path, doc)
    rc, status, out = _tune(path, tmp_path)
    assert rc == 0, out
    assert status["phase"] == "Succeeded" and status["reason"] == "MaxTrialsReached"
    assert status["counts"]["finished"] == 5 and status["generation"] == 2
    trials = _trials(tmp_path, "edits")
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.number: (t.params, t.value) for t in trials if t.number < 3} == first


def test_changed_search_space_is_refused_and_names_the_field_and_fresh(tmp_path, toy):
    path = tmp_path / "job.yaml"
    doc = toy("refused", max_trials=2, parallelism=2, epochs=2)
    _write(path, doc)
    assert _tune(path, tmp_path)[0] == 0
    doc["spec"]["parameters"][0]["high"] = 0.5
    _write(path, doc)
    rc, status, out = _tune(path, tmp_path)
    assert rc == 2
    assert "spec.parameters" in out and "--fresh" in out
    assert len(_trials(tmp_path, "refused")) == 2  # the study is untouched
    # --fresh starts a new study with the new range.
    rc, status, out = _tune(path, tmp_path, "--fresh")
    assert rc == 0 and status["counts"]["finished"] == 2, out
    assert all(t.params["x"] <= 0.5 for t in _trials(tmp_path, "refused"))


def test_raised_max_failed_trials_continues_a_failed_job(tmp_path, toy):
    path = tmp_path / "job.yaml"
    params = [
        {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
        {"name": "mode", "type": "categorical", "choices": ["fail"]},
    ]
    doc = toy("failing", max_trials=4, parallelism=1, epochs=2, max_failed=0, parameters=params)
    _write(path, doc)
    rc, status, _ = _tune(path, tmp_path)
    assert rc == 1 and status["reason"] == "MaxFailedTrialsReached" and status["counts"]["failed"] == 1
    doc["spec"]["budget"]["maxFailedTrials"] = 2
    _write(path, doc)
    rc, status, out = _tune(path, tmp_path)
    # It continued: two more failures were allowed, the third ended it again.
    assert rc == 1 and status["reason"] == "MaxFailedTrialsReached", out
    assert status["counts"]["failed"] == 3 and status["generation"] == 2


def test_raised_timeout_continues_a_timed_out_job(tmp_path, toy):
    path = tmp_path / "job.yaml"
    doc = toy("clock", max_trials=50, parallelism=1, epochs=2)
    doc["spec"]["budget"]["timeoutSeconds"] = 3
    _write(path, doc)
    rc, status, _ = _tune(path, tmp_path)
    assert rc == 0 and status["reason"] == "Timeout"
    done_before = status["counts"]["finished"]
    elapsed_before = status["elapsed_seconds"]
    assert 3 <= elapsed_before < 10
    doc["spec"]["budget"]["timeoutSeconds"] = 7
    _write(path, doc)
    rc, status, out = _tune(path, tmp_path)
    assert rc == 0 and status["reason"] == "Timeout", out
    # The clock went on from where it stopped (it is kept in the study), not from zero.
    assert 7 <= status["elapsed_seconds"] < 14
    assert status["counts"]["finished"] > done_before and status["generation"] == 2


def test_edit_saved_while_the_job_runs_applies_at_the_next_pass(tmp_path, toy):
    path = tmp_path / "job.yaml"
    doc = toy("live", max_trials=3, parallelism=1, epochs=4)
    _write(path, doc)
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(zip(("rc", "status", "out"), _tune(path, tmp_path))))
    runner.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "live" / "trials" / "t0").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    edited = json.loads(json.dumps(doc))
    edited["spec"]["budget"]["maxTrials"] = 5
    edited["spec"]["budget"]["parallelism"] = 2
    edited["spec"]["parameters"][0]["high"] = 0.9  # refused: the job keeps its range...
    _write(path, edited)
    time.sleep(1.0)
    edited["spec"]["parameters"][0]["high"] = 1.0  # ...until the edit only touches the budget
    _write(path, edited)
    runner.join(180)
    assert result["rc"] == 0, result["out"]
    assert "edit not applied" in result["out"] and "spec.parameters" in result["out"]
    assert "edit applied (generation 2)" in result["out"]
    status = result["status"]
    assert status["counts"]["finished"] == 5 and status["generation"] == 2
    trials = _trials(tmp_path, "live")
    assert len(trials) == 5 and len({t.number for t in trials}) == 5
    # parallelism 2 after the edit: some two trials overlapped in time
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))

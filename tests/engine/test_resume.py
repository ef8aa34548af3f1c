"""Kill `openautoglm tune` mid-study and run it again: nothing repeated, nothing lost."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from conftest import toy_job
from optuna.trial import TrialState

from openautoglm.engine.storage import open_storage


def tune_cmd(job_file, workdir):
    return [sys.executable, "-m", "openautoglm.cli", "tune", str(job_file), "--workdir", str(workdir), "--quiet"]


def finished_trials(journal):
    if not journal.exists():
        return []
    try:
        study = optuna.load_study(study_name="resume", storage=open_storage(str(journal)))
    except KeyError:
        return []
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def digits_job():
    doc = toy_job("resume")
    doc["spec"]["trial"] = {"task": "digits", "epochs": 3, "workers": 2}
    doc["spec"]["parameters"] = [
        {"name": "lr", "type": "float", "low": 1e-3, "high": 0.1, "log": True},
        {"name": "hidden", "type": "int", "low": 32, "high": 64, "step": 32},
    ]
    doc["spec"]["objective"] = {"metric": "accuracy", "direction": "maximize"}
    doc["spec"]["budget"] = {"maxTrials": 4, "parallelism": 1}
    doc["spec"]["metrics"].pop("collector")  # the toy's native collector: a built-in task has none
    return doc


@pytest.mark.parametrize(
    "kind,sig,after",
    [
        ("toy", signal.SIGKILL, 2),
        ("toy", signal.SIGKILL, 0),  # killed before any trial finished
        ("toy", signal.SIGINT, 2),  # Ctrl-C
        ("digits", signal.SIGKILL, 1),  # real Horovod trials keep running and are adopted
    ],
)
def test_killed_tune_resumes_without_repeating(tmp_path, kind, sig, after):
    doc = toy_job("resume", max_trials=6, parallelism=2, epochs=6) if kind == "toy" else digits_job()
    max_trials = doc["spec"]["budget"]["maxTrials"]
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(doc))
    workdir = tmp_path / "work"
    journal = workdir / "resume" / "study.journal"

    proc = subprocess.Popen(tune_cmd(job_file, workdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if after:
        wait_for(lambda: len(finished_trials(journal)) >= after, 180, f"{after} finished trials")
    else:
        wait_for(lambda: (workdir / "resume" / "trials" / "t0" / "w0" / "pid").exists(), 60, "a started worker")
    before = {t.number: (t.state, t.values, t.datetime_complete) for t in finished_trials(journal)}
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0].decode()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, out
        assert "Interrupted" in out

    rerun = subprocess.run(tune_cmd(job_file, workdir), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    study = optuna.load_study(study_name="resume", storage=open_storage(str(journal)))
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(max_trials)), numbers  # exactly maxTrials, no duplicates
    assert all(t.state.is_finished() for t in trials)
    # interrupted or adopted trials are not failures
    bad = [(t.number, t.state.name, t.user_attrs) for t in trials if t.state != TrialState.COMPLETE]
    assert not bad, bad
    # trials finished before the kill are exactly as they were
    for n, (state, values, done) in before.items():
        assert (trials[n].state, trials[n].values, trials[n].datetime_complete) == (state, values, done)
    # no worker process is left behind
    for pidfile in (workdir / "resume" / "trials").glob("t*/w*/pid"):
        pid = int(pidfile.read_text())
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z"

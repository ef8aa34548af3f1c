"""Trial checkpoints through `openautoglm tune` (issue 24, "Resume, not restart" and "Kept"), locally.

Real processes throughout: the CLI or the local runner, real 2-rank Horovod trials of the built-in
digits task (or the own-script example), a real SIGKILL of rank 1 once the trial's checkpoint
holds epoch 6. The same cases through the operator are in tests/k8s/test_checkpoints_cluster.py;
the pieces (what each keep policy keeps, the janitor command) in tests/unit/test_checkpoint_retention.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from openautoglm.config import Settings
from openautoglm.engine.attrs import STUDY_BEST_CHECKPOINT
from openautoglm.engine.storage import open_storage
from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document

REPO = Path(__file__).resolve().parents[2]
OWN_SCRIPT = REPO / "examples" / "own-script"
FAST = Settings(workdir=None, storage=None, local_tick_seconds=0.1, elapsed_save_seconds=1, log_level="WARNING")
#: What the built-in tasks and the own-script example save in the trial's directory.
FILE = "checkpoint.pt"
#: The optuna journal's op code of Trial.report (JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE).
SET_INTERMEDIATE = 7
#: dropout on, so only per-epoch reseeding makes a resumed run equal an uninterrupted one;
#: batch 16: ~45 steps per rank and epoch, long enough to kill rank 1 between two epochs.
RESUME_PARAMS = {"lr": 0.003, "batch_size": 16, "dropout": 0.2, "hidden": 64, "optimizer": "adam"}
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) \(")


def digits_doc(name: str, *, epochs: int, workers: int, params: list[dict], retries: int = 0, keep="best") -> dict:
    """Real digits trials of the given parameter sets, run in order one at a time, no pruning."""
    names = sorted({k for p in params for k in p})
    return {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "direction": "maximize"},
            "budget": {"maxTrials": len(params), "parallelism": 1, "maxFailedTrials": 0},
            "algorithm": {"sampler": "random", "seed": 11, "startFromDefaults": False},
            "earlyStopping": {"pruner": "none"},
            "parameters": [
                {"name": n, "type": "categorical", "choices": sorted({p[n] for p in params if n in p}, key=str)}
                for n in names
            ],
            "warmStart": [{"params": p} for p in params],
            "trial": {
                "task": "digits",
                "epochs": epochs,
                "workers": workers,
                "retries": retries,
                "checkpoint": {"keep": keep},
            },
            "metrics": {"intervalSeconds": 0.5},
        },
    }


def checkpoint_epoch(directory: Path) -> int:
    """The epoch the trial's checkpoint holds (0: none yet)."""
    try:
        return int(torch.load(directory / FILE, weights_only=True)["epoch"])
    except (OSError, EOFError, RuntimeError, KeyError):
        return 0


def kill_rank_1_once_saved(job_dir: Path, epoch: int) -> threading.Thread:
    """SIGKILL rank 1 of trial 0's first run as soon as its checkpoint holds ``epoch``; the thread's
    ``saved`` is the epoch the checkpoint held right after the kill."""

    def kill() -> None:
        ckpt = job_dir / "checkpoints" / "trial-0"
        deadline = time.monotonic() + 180
        while checkpoint_epoch(ckpt) < epoch and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(int((job_dir / "trials" / "t0" / "w1" / "pid").read_text()), signal.SIGKILL)
        thread.saved = checkpoint_epoch(ckpt)  # type: ignore[attr-defined]

    thread = threading.Thread(target=kill, daemon=True)
    thread.saved = None  # type: ignore[attr-defined]
    thread.start()
    return thread


def tune(job_file: Path, workdir: Path, status: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "openautoglm.cli", "tune", str(job_file), "--workdir", str(workdir)]
    return subprocess.Popen([*cmd, "--json", str(status)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def reports_per_step(journal: Path, trial_id: int) -> dict[int, int]:
    """How often each step was reported for the trial (Optuna keeps one value per step: this
    reads what was written)."""
    counts: dict[int, int] = {}
    for line in journal.read_text().splitlines():
        op = json.loads(line)
        if op.get("op_code") == SET_INTERMEDIATE and op.get("trial_id") == trial_id:
            counts[op["step"]] = counts.get(op["step"], 0) + 1
    return counts


def same_curve(t: optuna.trial.FrozenTrial, w: optuna.trial.FrozenTrial) -> None:
    """The two trials' curves are the same: an epoch the engine read from /metrics is recorded to
    the 6 digits /metrics carries, one it filled from the final result in full, and which epoch
    comes from where depends on timing, so epochs compare to 1e-6 (the final values exactly)."""
    assert sorted(t.intermediate_values) == sorted(w.intermediate_values)
    assert t.intermediate_values == pytest.approx(w.intermediate_values, abs=1e-6, rel=0)


def load(job_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=job_dir.name, storage=open_storage(str(job_dir / "study.journal")))


@pytest.mark.slow
@pytest.mark.horovod
def test_a_retried_trial_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path):
    """10 epochs on 2 ranks, retries: 1; rank 1 SIGKILLed once epoch 6 is saved. The retry starts
    at the epoch after the checkpoint, the study holds epochs 1-10 once each, and the trial's
    numbers equal those of the same trial run whole (a second job, run at the same time)."""
    epochs, after = 10, 6
    jobs = {}
    for name in ("resumed", "whole"):
        doc = digits_doc(name, epochs=epochs, workers=2, params=[RESUME_PARAMS], retries=1)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
        jobs[name] = tune(tmp_path / f"{name}.yaml", tmp_path / "work", tmp_path / f"{name}.json")
    resumed_dir, whole_dir = tmp_path / "work" / "resumed", tmp_path / "work" / "whole"
    killer = kill_rank_1_once_saved(resumed_dir, after)
    out = {name: proc.communicate(timeout=300)[0] for name, proc in jobs.items()}
    killer.join(5)
    for name, proc in jobs.items():
        assert proc.returncode == 0, out[name]
    saved = killer.saved  # type: ignore[attr-defined]
    assert saved is not None and after <= saved < epochs, f"killed after epoch {saved}: kill it earlier"

    study, whole = load(resumed_dir), load(whole_dir)
    (t,), (w,) = study.get_trials(), whole.get_trials()
    assert t.state == w.state == TrialState.COMPLETE
    assert len(t.user_attrs["retried_because"]) == 1 and t.user_attrs["retried_because"][0].startswith("worker 1:")
    launch = json.loads((resumed_dir / "trials" / "t0" / "launch.json").read_text())
    assert launch["attempt"] == 1, "the trial ran a second time"

    # The retry resumed from the checkpoint: it trained (and reported) from the epoch after it.
    result = json.loads((resumed_dir / "trials" / "t0" / "w0" / "termination-log").read_text())
    assert result["info"]["resumed_from_epoch"] == saved, result["info"]
    log = (resumed_dir / "trials" / "t0" / "w0" / "output.log").read_text()
    assert f"resuming from the checkpoint of epoch {saved} in {resumed_dir / 'checkpoints' / 'trial-0'}" in log
    retry_log = log[log.index(f"from epoch {saved + 1} (run 1)") :]
    assert [int(m.group(1)) for m in EPOCH_LINE.finditer(retry_log)] == list(range(saved + 1, epochs + 1))

    # One curve: epochs 1-10, each written once, and the same curve and value as the whole run's.
    assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
    assert reports_per_step(resumed_dir / "study.journal", t._trial_id) == {e: 1 for e in range(1, epochs + 1)}
    same_curve(t, w)
    assert t.value == w.value and t.user_attrs["metrics"] == w.user_attrs["metrics"]

    # The best model is named: status, the CLI's summary; the file holds the last epoch.
    status = json.loads((tmp_path / "resumed.json").read_text())
    where = str(resumed_dir / "checkpoints" / "trial-0")
    assert status["best"]["checkpoint"] == {"path": where}
    assert f"Best checkpoint: {where}" in out["resumed"].replace("\n", "")
    assert checkpoint_epoch(Path(where)) == epochs


def watch_checkpoints(root: Path, stop: threading.Event, seen: list) -> threading.Thread:
    """Record (time, trials with a checkpoint file) whenever what is under ``root`` changes."""

    def watch() -> None:
        last = None
        while True:
            done = stop.is_set()  # one more look after the job: its final state
            now = sorted(int(p.parent.name.removeprefix("trial-")) for p in root.glob(f"trial-*/{FILE}"))
            if now != last:
                seen.append((dt.datetime.now(), now))
                last = now
            if done:
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.horovod
def test_keep_best_leaves_only_the_best_trials_checkpoint_and_a_new_best_replaces_the_old(tmp_path):
    """Four short trials in order, keep: best: trial 0 learns little (the best when it ends, kept),
    trial 1 learns well (the new best: trial 0's files go), trial 2 diverges (stopped early,
    PRUNED: its files go), trial 3 is completed but not the best (its files go)."""
    weak = {"lr": 0.0003, "optimizer": "sgd", "batch_size": 64, "hidden": 32}
    good = {"lr": 0.01, "optimizer": "adam", "batch_size": 32, "hidden": 64}
    diverging = {"lr": 80.0, "optimizer": "sgd", "batch_size": 64, "hidden": 32}
    middling = {"lr": 0.001, "optimizer": "sgd", "batch_size": 64, "hidden": 32}
    job = validate_document(digits_doc("kept", epochs=3, workers=1, params=[weak, good, diverging, middling]))
    root = tmp_path / "kept" / "checkpoints"
    stop, seen = threading.Event(), []
    watcher = watch_checkpoints(root, stop, seen)
    try:
        result = run_local(job, workdir=tmp_path / "kept", settings=FAST)
    finally:
        stop.set()
        watcher.join(5)

    trials = result.study.get_trials()
    assert result.status.phase == "Succeeded", (result.status.reason, result.status.message)
    states = [x.state for x in trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE], states
    best = max((x for x in trials if x.state == TrialState.COMPLETE), key=lambda x: x.value)
    assert trials[0].value < trials[1].value, "trial 1 must be a new best for this test"
    assert best.number == result.status.best["number"] != 0

    # After the job: exactly one directory, the best trial's, holding its model (named everywhere: below).
    where = root / f"trial-{best.number}"
    assert sorted(p.name for p in root.iterdir()) == [where.name]
    assert (where / FILE).is_file() and checkpoint_epoch(where) == 3

    # During the job: trial 0's checkpoint stayed while it was the best (after it ended), and
    # went once trial 1 beat it; no finished trial other than the best of its moment kept one.
    ended = {x.number: x.datetime_complete for x in trials}
    kept_after_0 = [files for when, files in seen if ended[0] < when < ended[1]]
    assert any(0 in files for files in kept_after_0), seen
    for gone, since in ((0, ended[1]), (2, ended[2]), (3, ended[3])):  # replaced, PRUNED, not the best
        assert all(gone not in files for when, files in seen if when > since + dt.timedelta(seconds=2)), seen
    assert 0 not in seen[-1][1] and seen[-1][1] == [best.number], seen
    assert result.study.user_attrs[STUDY_BEST_CHECKPOINT] == {"number": best.number, "path": str(where)}
    assert result.status.best["checkpoint"] == {"path": str(where)} == result.best_checkpoint


def own_script_doc(job_dir: Path, name: str, epochs: int) -> Path:
    """The own-script example's job (its unchanged script on 2 ranks), one trial, retries: 1,
    trial.checkpoint: the script finds its directory in OPENAUTOGLM_CHECKPOINT_DIR."""
    doc = yaml.safe_load((OWN_SCRIPT / "tuningjob.yaml").read_text())
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["budget"] = {"maxTrials": 1, "parallelism": 1, "maxFailedTrials": 0}
    spec["earlyStopping"] = {"pruner": "none"}
    # small batches: each epoch lasts long enough to kill rank 1 between two of them
    spec["warmStart"] = [{"params": {"lr": 0.05, "momentum": 0.9, "batch-size": 16, "hidden": 64}}]
    spec["trial"]["command"] = [
        a if not a.startswith("--epochs=") else f"--epochs={epochs}" for a in spec["trial"]["command"]
    ]
    spec["trial"]["retries"] = 1
    spec["trial"]["checkpoint"] = {}
    spec["metrics"]["intervalSeconds"] = 0.5
    job_dir.mkdir()
    (job_dir / "train.py").symlink_to(OWN_SCRIPT / "train.py")
    (job_dir / "data").symlink_to(OWN_SCRIPT / "data")
    (job_dir / "tuningjob.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return job_dir / "tuningjob.yaml"


@pytest.mark.slow
@pytest.mark.horovod
def test_an_own_program_using_the_checkpoint_dir_resumes_after_a_lost_rank(tmp_path):
    """examples/own-script under `openautoglm tune` with trial.checkpoint: rank 1 SIGKILLed once
    epoch 3 of 6 is saved; the retry prints from the epoch after its checkpoint, the study holds
    epochs 1-6 once, and the trial equals the same trial run whole (a second job, at once)."""
    epochs, after = 6, 3
    jobs = {}
    for name in ("own-resumed", "own-whole"):
        job_file = own_script_doc(tmp_path / name, name, epochs)
        jobs[name] = tune(job_file, tmp_path / "work", tmp_path / f"{name}.json")
    resumed_dir = tmp_path / "work" / "own-resumed"
    killer = kill_rank_1_once_saved(resumed_dir, after)
    out = {name: proc.communicate(timeout=300)[0] for name, proc in jobs.items()}
    killer.join(5)
    for name, proc in jobs.items():
        assert proc.returncode == 0, out[name]
    saved = killer.saved  # type: ignore[attr-defined]
    assert saved is not None and after <= saved < epochs, f"killed after epoch {saved}: kill it earlier"

    (t,), (w,) = load(resumed_dir).get_trials(), load(tmp_path / "work" / "own-whole").get_trials()
    assert t.state == w.state == TrialState.COMPLETE and t.user_attrs["retried_because"]
    log = (resumed_dir / "trials" / "t0" / "w0" / "output.log").read_text()
    assert f"resuming after epoch {saved}" in log
    retry_log = log[log.index(f"resuming after epoch {saved}") :]
    assert [int(e) for e in re.findall(r"^epoch=(\d+) ", retry_log, re.M)] == list(range(saved + 1, epochs + 1))
    assert reports_per_step(resumed_dir / "study.journal", t._trial_id) == {e: 1 for e in range(1, epochs + 1)}
    same_curve(t, w)
    # The trial's value is its curve's best epoch (strategy max), as the uninterrupted run's.
    assert t.value == w.value == max(t.intermediate_values.values())
    assert t.user_attrs["metrics"] == w.user_attrs["metrics"]

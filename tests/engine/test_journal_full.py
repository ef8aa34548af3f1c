"""Issue 13, case 7: the volume of the study journal fills up in the middle of `openautoglm tune`.
The run says so and why, keeps its trials running, leaves the journal readable, goes on when
space is freed, and ends with every trial started and told exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from conftest import TOY, toy_job

from openautoglm.engine.storage import open_storage

TRIALS = 8
#: Seconds the volume stays full after the run noticed: the two running trials (4 s each) end
#: meanwhile and must be told once, after.
FULL_SECONDS = 6


def _wait(what: str, predicate, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; run log tail:\n{log.read_text()[-3000:]}")


def _trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="journal-full", storage=open_storage(str(journal))).get_trials()
    except KeyError:  # not created yet
        return []


def _our_processes(marker: str) -> list[int]:
    """Live processes whose environment mentions ``marker`` (this test's directory)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(pid))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return pids


def test_tune_stalls_on_a_full_journal_volume_and_resumes_when_space_is_freed(tmp_path: Path, small_volume) -> None:
    journal = small_volume.path / "study.journal"
    starts = tmp_path / "starts.log"
    doc = toy_job("journal-full", max_trials=TRIALS, parallelism=2, epochs=4)
    doc["spec"]["parameters"].append({"name": "epoch_seconds", "type": "fixed", "value": 1.0})
    # Every worker start is recorded outside the full volume: a trial started twice shows here.
    doc["spec"]["trial"]["command"] = ["/bin/sh", "-c", 'echo "$OPENAUTOGLM_TRIAL" >> "$0"; exec "$@"', str(starts)]
    doc["spec"]["trial"]["command"] += [sys.executable, TOY]
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(doc))
    log = tmp_path / "tune.log"
    cmd = [sys.executable, "-m", "openautoglm.cli", "tune", str(job_file), "--storage", str(journal), "--quiet"]
    with open(log, "wb") as out:
        # The work directory (trial logs, results) is not on the small volume: only the journal is.
        tune = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            _wait("a finished trial", lambda: any(t.state.is_finished() for t in _trials(journal)), 60, log)
            small_volume.fill()
            filled = time.monotonic()
            _wait("the warning", lambda: "cannot be written" in log.read_text(), 30, log)
            noticed = time.monotonic() - filled
            text = log.read_text()
            assert f"study journal {journal} cannot be written: no space left on device (ENOSPC)" in text, text
            assert "The running trials go on; the job resumes when the volume has room again" in text
            # The journal is whole while the volume is full: every line a record, and it loads.
            records = journal.read_bytes()
            assert records.endswith(b"\n") and all(json.loads(line) for line in records.splitlines())
            stalled_at = _trials(journal)
            assert 0 < len(stalled_at) < TRIALS
            time.sleep(FULL_SECONDS)
            assert tune.poll() is None, log.read_text()[-3000:]
            assert len(_trials(journal)) == len(stalled_at)  # nothing written while full
            small_volume.free()
            freed = time.monotonic()
            _wait("the run to write again", lambda: "writable again after" in log.read_text(), 30, log)
            resumed = time.monotonic() - freed
            rc = tune.wait(120)
            done = time.monotonic() - freed
        finally:
            if tune.poll() is None:
                tune.kill()
                tune.wait()
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    # Once each: it waits for room instead of reopening, failing and warning again every retry.
    assert text.count("cannot be written") == 1 and text.count("writable again after") == 1, text[-3000:]
    trials = _trials(journal)
    assert sorted(t.number for t in trials) == list(range(TRIALS)), [t.number for t in trials]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [t.state for t in trials]
    study = optuna.load_study(study_name="journal-full", storage=open_storage(str(journal)))
    assert study.user_attrs.get("openautoglm:phase") == "Succeeded"
    started = sorted(int(n) for n in starts.read_text().split())
    assert started == list(range(TRIALS)), f"worker starts per trial: {started}"
    assert not _our_processes(str(tmp_path)), "a trial worker outlived the run"
    print(
        f"\nfull volume: noticed {noticed:.1f} s after it filled, {len(stalled_at)} trials in the study then; "
        f"{TRIALS} expected, {len(trials)} finished, 0 duplicates; writing again {resumed:.1f} s and "
        f"done {done:.1f} s after space was freed"
    )

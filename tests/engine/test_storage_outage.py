"""Issue 13, case 6: the study's PostgreSQL stops for 30 s in the middle of `openautoglm tune`.
The run says so while it is down, goes on when it is back, and loses or tells twice no trial."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import toy_job

from openautoglm.engine.storage import open_storage

pytestmark = pytest.mark.postgres

DOWN_SECONDS = 30


def test_tune_rides_out_a_postgres_outage(tmp_path: Path, postgres_server: dict) -> None:
    url = postgres_server["url"]
    doc = toy_job("pg-outage", max_trials=8, parallelism=2, epochs=4)
    doc["spec"]["parameters"].append({"name": "epoch_seconds", "type": "fixed", "value": 1.0})
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(doc))
    log = tmp_path / "tune.log"
    with open(log, "wb") as out:
        tune = subprocess.Popen(
            [sys.executable, "-m", "openautoglm.cli", "tune", str(job_file), "--storage", url, "--quiet"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        study_seen = time.monotonic() + 60
        while time.monotonic() < study_seen:  # a trial or two under way
            try:
                study = optuna.load_study(study_name="pg-outage", storage=open_storage(url))
                if len(study.trials) >= 2:
                    break
            except KeyError:
                pass
            time.sleep(0.3)
        postgres_server["stop"]()
        down_at = time.monotonic()
        # The run outlives the outage: it is still there when the database comes back.
        outage = threading.Event()
        outage.wait(DOWN_SECONDS)
        assert tune.poll() is None, log.read_text()[-3000:]
        postgres_server["start"]()
        rc = tune.wait(180)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "unreachable" in text and "the running trials go on" in text, text[-3000:]
    assert "reachable again after" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    study = optuna.load_study(study_name="pg-outage", storage=open_storage(url))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(8))  # none lost, none added
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert study.user_attrs.get("openautoglm:phase") == "Succeeded"
    print(f"\noutage of {DOWN_SECONDS} s from {down_at:.0f}; run log tail:\n{text[-1200:]}")

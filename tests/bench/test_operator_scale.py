"""bench/operator_scale.py --quick: the scale benchmark runs end to end and writes its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_writes_every_case_and_checks_its_aims(tmp_path: Path) -> None:
    script = str(REPO / "bench" / "operator_scale.py")
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "operator_scale.json").read_text())
    assert [r["parallelism"] for r in doc["local"]] == [1, 8]
    # Accounting, not speed (a timing comparison in a 10-trial smoke run is noise on a busy machine).
    assert all(r["engine_median"] > 0 and r["spawn_median"] > 0 for r in doc["local"])
    assert all(abs(r["ratio"] - r["engine_median"] / r["spawn_median"]) < 1e-9 for r in doc["local"])
    assert [r["finished"] for r in doc["idle_pass"]] == [0, 10, 1000]
    assert {a["aim"].split(" <=")[0] for a in doc["aims"]} >= {"local engine at parallelism 1"}
    table = (tmp_path / "operator_scale.md").read_text()
    assert "## Idle pass against the number of finished trials" in table and "| 1,000 |" in table
    # The operator's cases, in the emulated cluster: every trial accounted for.
    one = doc["one_job"]
    assert abs(one["ratio"] - one["operator_median"] / one["bare_median"]) < 1e-9
    assert one["operator_cpu_ms_per_trial"] > 0 and one["bare_cpu_ms_per_trial"] > 0
    many = doc["many_jobs"]
    assert many["all_succeeded"] and many["trials_completed"] == many["jobs"] * many["trials_per_job"]
    assert len(many["per_job"]) == many["jobs"] and all(j["max_wait_s"] >= 0 for j in many["per_job"])
    large = doc["large_study"]
    assert large["completed"] == large["finished_before"] + large["trials_run"]
    assert "## Many jobs on one operator" in table and "## A study of 1,000 finished trials" in table


def test_the_committed_results_are_a_full_run_with_a_before() -> None:
    doc = json.loads((REPO / "bench" / "results" / "operator_scale.json").read_text())
    assert not doc["quick"] and doc["before"]["idle_pass"]
    assert [r["finished"] for r in doc["idle_pass"]] == [0, 10, 1000, 10_000]
    assert (doc["many_jobs"]["jobs"], doc["many_jobs"]["parallelism"]) == (100, 5)
    assert doc["large_study"]["finished_before"] == 10_000
    assert doc["before"]["many_jobs"] and doc["before"]["local"]

"""bench/checkpoint_resume.py --quick: a retried digits trial resumes, and its cost is measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.horovod
def test_quick_run_resumes_and_measures_the_checkpoint_cost(tmp_path: Path) -> None:
    script = str(REPO / "bench" / "checkpoint_resume.py")
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "checkpoint_resume.json").read_text())
    (digits,) = doc["tasks"]
    (run,) = digits["runs"]
    # The retry resumed after the epoch its checkpoint held and ended as the from-scratch run did.
    assert 2 <= run["killed_after_epoch"] < 4 and run["resumed_from_epoch"] == run["killed_after_epoch"]
    assert run["equal"] and run["resumed_value"] == run["scratch_value"]
    cost = run["cost"]
    assert cost["epochs"] == 4 and cost["bytes"] > 0 and 0 < cost["save_seconds_median"] <= cost["save_seconds_max"]
    assert "| digits |" in (tmp_path / "checkpoint_resume.md").read_text()


def test_the_committed_results_hold_both_tasks_and_the_aims() -> None:
    doc = json.loads((REPO / "bench" / "results" / "checkpoint_resume.json").read_text())
    assert not doc["quick"] and [t["task"] for t in doc["tasks"]] == ["digits", "text-lm"] and doc["aims"]

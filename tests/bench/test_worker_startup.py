"""bench/worker_startup.py --quick: a built-in worker's start-up is measured end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_reports_the_breakdown(tmp_path: Path) -> None:
    script = str(REPO / "bench" / "worker_startup.py")
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "worker_startup.json").read_text())
    now = doc["now"]
    breakdown = now["startup_seconds_median"]
    # The worker's own marks end at its first step; the outside clock stops at the log line just
    # before it, so the two agree within the log line's and the spawn's slack.
    assert 0 < now["to_training_median"] <= breakdown["total"] + 1.0
    assert breakdown["imports"] > 0 and breakdown["total"] >= breakdown["imports"]
    assert "| interpreter | imports |" in (tmp_path / "worker_startup.md").read_text()


def test_the_committed_results_compare_against_before() -> None:
    doc = json.loads((REPO / "bench" / "results" / "worker_startup.json").read_text())
    assert not doc["quick"] and doc["before"]["to_training"] and doc["aims"]

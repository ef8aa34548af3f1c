"""bench/ddp_zero.py --quick: both launchers' epoch times and ZeRO's per-rank state, in one run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.horovod
def test_quick_run_times_both_launchers_and_measures_zeros_share(tmp_path: Path) -> None:
    script = str(REPO / "bench" / "ddp_zero.py")
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "ddp_zero.json").read_text())
    (digits,) = doc["tasks"]
    runs = digits["runs"]
    assert [run["distributed"] for config in ("horovod", "ddp", "ddp+zero") for run in runs[config]] == [
        "horovod",
        "ddp",
        "ddp",
    ]
    for rows in runs.values():
        assert len(rows[0]["epoch_s"]) == 2 and all(t > 0 for t in rows[0]["epoch_s"])
    # Without ZeRO both ranks hold the whole state; with it, about half each and all together.
    assert digits["summary"]["horovod"]["optimizer_state_bytes"] == digits["summary"]["ddp"]["optimizer_state_bytes"]
    assert digits["zero_shares_sum_equals_whole"] and 0.4 < digits["zero_share_max"] < 0.6
    assert digits["zero_value_relative_difference"] <= 1e-6
    assert "| digits | ddp+zero |" in (tmp_path / "ddp_zero.md").read_text()


def test_the_committed_results_hold_both_tasks_and_the_aims() -> None:
    doc = json.loads((REPO / "bench" / "results" / "ddp_zero.json").read_text())
    assert not doc["quick"] and [t["task"] for t in doc["tasks"]] == ["text-lm", "digits"] and doc["aims"]

"""`openautoglm tune`'s closing table of trials shows the recorded additional metrics.

Issue 22: the README says ``objective.additionalMetrics`` are recorded "for every trial (the study's
``metrics`` user attribute, ``openautoglm tune``'s summary, ...)", but the summary table had no
column for them although each row carried them (engine.status.trial_summary).
"""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from openautoglm.local.progress import summary_table


def table_text(trials: list[dict[str, Any]], best: int | None = None) -> str:
    status = SimpleNamespace(best={"number": best} if best is not None else None)
    console = Console(width=200, file=io.StringIO())
    console.print(summary_table(status, trials))  # type: ignore[arg-type]
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_the_summary_shows_additional_metrics() -> None:
    trials = [
        {"number": 0, "state": "Completed", "value": 0.91, "params": {"lr": 0.1}, "metrics": {"loss": 0.3, "f1": 0.8}},
        {"number": 1, "state": "Failed", "params": {"lr": 0.2}, "reason": "exit 1"},
    ]
    text = table_text(trials, best=0)
    header = next(line for line in text.splitlines() if "state" in line)
    assert "metrics" in header
    row = next(line for line in text.splitlines() if "★ 0" in line)
    assert "loss=0.3" in row and "f1=0.8" in row


def test_no_metrics_column_without_additional_metrics() -> None:
    text = table_text([{"number": 0, "state": "Completed", "value": 1.0, "params": {"lr": 0.1}}])
    assert "metrics" not in text

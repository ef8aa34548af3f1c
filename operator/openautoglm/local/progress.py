"""What `openautoglm tune` shows while it runs and when it ends."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from openautoglm.engine.reconcile import Event, Outcome
from openautoglm.engine.status import JobStatus

_STYLE = {
    "TrialPruned": "yellow",
    "TrialStopped": "yellow",
    "TrialFailed": "red",
    "TrialMetricsUnreadable": "yellow",
    "NewBest": "bold green",
    "JobSucceeded": "bold green",
    "JobFailed": "bold red",
    "TrialCompleted": "cyan",
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "∞"
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


def status_line(status: JobStatus) -> str:
    c = status.counts
    best = f"best {_fmt(status.best['value'])} (trial {status.best['number']})" if status.best else "best —"
    if status.pareto:
        best = f"pareto front: {len(status.pareto)} trials"
    return (
        f"trials {c['finished']}/{c['max']} done · {c['running']} running · {c['completed']} completed · "
        f"{c['pruned']} pruned · {c['failed']} failed"
        + (f" · {c['retried']} retried" if c.get("retried") else "")
        + f" · {best} · elapsed {_clock(status.elapsed_seconds)}"
        f" · remaining {_clock(status.remaining_seconds)}"
    )


class ConsoleProgress:
    """Prints each event as it happens, and a status line (live on a terminal)."""

    def __init__(self, console: Console | None = None, quiet: bool = False, every: float = 10.0):
        self.console = console or Console(file=sys.stderr)
        self.quiet = quiet
        self.every = every
        self._last = 0.0
        self._last_line = ""
        self._status = None
        if self.console.is_terminal and not quiet:
            self._status = self.console.status("starting…")
            self._status.start()

    def __call__(self, outcome: Outcome) -> None:
        if self.quiet:
            return
        for e in outcome.events:
            self.event(e)
        line = status_line(outcome.status)
        if self._status is not None:
            self._status.update(line)
        elif time.monotonic() - self._last > self.every or outcome.events and line != self._last_line:
            # Without a terminal: a line per change, at most one per `every` seconds otherwise.
            self.console.print(line, highlight=False)
            self._last = time.monotonic()
            self._last_line = line

    def event(self, e: Event) -> None:
        style = _STYLE.get(e.reason, "")
        self.console.print(
            f"[{style}]{e.reason:>14}[/] {e.message}" if style else f"{e.reason:>14} {e.message}", highlight=False
        )

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def summary_table(status: JobStatus, trials: list[dict[str, Any]], limit: int = 25) -> Table:
    """All trials (best first), capped at ``limit`` rows; a metrics column when trials recorded
    objective.additionalMetrics."""
    table = Table(title="Trials", show_lines=False)
    shown = trials[:limit]
    metrics = any(t.get("metrics") for t in shown)
    columns = ("#", "state", "value", *(("metrics",) if metrics else ()), "epochs/seconds", "parameters", "note")
    for col in columns:
        table.add_column(col, overflow="fold")
    best = status.best["number"] if status.best else None
    for t in shown:
        mark = "★ " if t["number"] == best else ""
        value = t.get("value", t.get("lastIntermediate", {}).get("value"))
        recorded = (" ".join(f"{k}={_fmt(v)}" for k, v in (t.get("metrics") or {}).items()),) if metrics else ()
        table.add_row(
            f"{mark}{t['number']}",
            t["state"],
            _fmt(value) if value is not None else "—",
            *recorded,
            _fmt(t.get("seconds", "—")),
            " ".join(f"{k}={_fmt(v)}" for k, v in t["params"].items()),
            t.get("reason", ""),
        )
    if len(trials) > limit:
        table.caption = f"{len(trials) - limit} more trials not shown"
    return table

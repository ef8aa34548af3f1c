"""The curves of a supervised program: reports grouped into steps, watched, and summarised.

Collectors turn whatever the program emits into :class:`Report` objects (one printed line, one
JSON record, one scrape, one ``report()`` call). The recorder groups them into steps:

* a report carrying the step metric (``epoch`` by default) or an explicit step belongs to the
  step of that value: a new value opens a new step; values reported before the first step value
  (batch losses before ``epoch=1 ...``) join the step that value names;
* a report without a step joins the current step until that step has a value of the first
  objective metric, which completes it; the next such report opens a new step. So
  ``accuracy=0.5`` printed once per epoch counts epochs, and the batch losses printed before it
  belong to its epoch. Within a step the latest value of a metric wins.

Steps are numbered 1, 2, ... in the order they appear (after those of the trial's earlier runs,
see below), whatever the step metric's values are (``epoch=0`` is step 1): that number is the
pruning step the engine sees on ``/metrics`` (``openautoglm_trial_epoch``) and the index of the
termination message's history, so the two always agree. ``openautoglm_trial_epoch`` only
advances once the first objective metric of a step is known, so a scraper never pairs a step
with the previous step's value.

A trial with a checkpoint directory spans runs (a retry, a requeue), and a program resumed from
its own checkpoint reports from the epoch after it. So the steps of earlier runs are kept in
that directory (:mod:`.stepfile`: rank 0 writes it after every completed step, every rank reads
it at start) and this run's steps are numbered after them; the result's curve, its min/max and
patience cover the whole trial. A kill between a program's save of an epoch and our reading of
its line leaves the program's checkpoint and the recorded steps apart by an epoch or more; the
step metric's value (the step's *key*) repairs it:

* the program resumed from an older checkpoint and reports a key an earlier run's step has: that
  step and the ones after it are dropped and the step opens again, so each epoch is in the curve
  once (with this run's values, which the program's checkpoint matches);
* the program resumed from a newer one: when the earlier runs numbered their epochs exactly as
  their keys (``epoch=1, 2, ...`` or ``epoch=0, 1, ...``) and this run's first key skips some,
  the skipped epochs stay as empty steps, so the step number still equals the epoch.

Without a key (``accuracy=`` lines only), this run's steps simply follow the earlier ones: such a
program must resume from the directory, not start over (one that starts over and prints its
``epoch=`` restarts the curve at its first key, by the first rule).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from .. import contract
from ..environment import ObjectiveMetric, Stopping
from ..result import TrialResult
from ..watch import Patience
from .stepfile import Step, StepFile

if TYPE_CHECKING:
    from ..server import TrialMetrics

STRATEGIES: Final = ("min", "max", "latest")
#: metrics judged against maxGradNorm
GRAD_NORM_NAMES: Final = ("grad_norm", "gradient_norm")
#: at most this many distinct names are exported on /metrics (a chatty log must not blow up
#: the scrape); the termination message holds the objectives and additional metrics anyway
MAX_EXPORTED: Final = 64
#: at most this many epochs an earlier run recorded too late are left empty (see the docstring)
MAX_GAP: Final = 1000


@dataclass
class Report:
    """What a program reported at one moment."""

    #: metric name -> value, in the order reported (the step metric included, if present)
    values: dict[str, float]
    #: explicit step (push client); None: taken from the step metric, if reported
    step: float | None = None


@dataclass(frozen=True)
class Decision:
    """The recorder's verdict that the program must be stopped."""

    #: ``stopped`` (diverged) or ``completed`` (patience), as the built-in tasks end
    status: str
    reason: str


@dataclass
class _Step:
    key: float | None
    values: dict[str, float] = field(default_factory=dict)


def default_strategies(objectives: Sequence[ObjectiveMetric], additional: Sequence[str]) -> dict[str, str]:
    """The strategies used when none are given: objectives by direction, others latest."""
    strategies = {o.metric: "max" if o.direction == "maximize" else "min" for o in objectives}
    for name in additional:
        strategies.setdefault(name, "latest")
    return strategies


class Recorder:
    """Groups reports into steps, exports them, watches them and builds the result.

    Thread-safe: collectors add reports from their own threads.
    """

    def __init__(
        self,
        objectives: Sequence[ObjectiveMetric],
        strategies: Mapping[str, str],
        stopping: Stopping,
        metrics: TrialMetrics,
        step_metric: str = contract.DEFAULT_STEP_METRIC,
        steps_file: StepFile | None = None,
    ) -> None:
        """Create the recorder.

        Args:
            objectives: objective metrics; the first one counts steps and feeds patience.
            strategies: metric -> min | max | latest for every metric of the result.
            stopping: divergence and patience settings.
            metrics: gauges served on /metrics.
            step_metric: the metric whose value is the step of the values reported with it.
            steps_file: the trial's steps of earlier runs, continued and kept up to date;
                None: the trial has no checkpoint directory (every run starts at step 1).
        """
        self.objectives = tuple(objectives)
        self.strategies = dict(strategies)
        self.step_metric = step_metric
        self.stopping = stopping
        self._metrics = metrics
        self._first = self.objectives[0].metric
        self._patience = Patience(self.objectives[0], stopping.patience, stopping.min_delta)
        self._lock = threading.Lock()
        self._steps: list[_Step] = []
        self._published = 0
        self._seen: dict[str, None] = {}  # insertion-ordered set of every name reported
        self._exported: set[str] = set()
        self.decision: Decision | None = None
        # Only what the result summarises is kept for the next run (the file stays small).
        self._kept = {o.metric for o in self.objectives} | set(self.strategies)
        self._file = steps_file
        #: the first this many steps are earlier runs' (this run never adds to them, see _rewind)
        self._earlier = 0
        self._gap_checked = False
        if steps_file is not None:
            self._steps = [_Step(key, values) for key, values in steps_file.load()]
            # Published by the earlier runs: the gauge, as a built-in task's, reads 0 until this
            # run's first step, which is then numbered after them.
            self._earlier = self._published = len(self._steps)
            self._replay_patience()

    # ------------------------------------------------------------------ input
    def add(self, report: Report) -> tuple[Decision | None, int | None]:
        """Record one report.

        Args:
            report: the values and, for the push client, the step.

        Returns:
            (the decision to stop the program if this report triggered it, else None;
            the step number just published on /metrics if it advanced, else None).
        """
        with self._lock:
            values = dict(report.values)
            key = report.step if report.step is not None else values.get(self.step_metric)
            values.pop(self.step_metric, None)
            for name in report.values:
                self._seen.setdefault(name, None)
            if not values and key is None:
                return None, None
            step, first_in_step = self._place(key, values)
            if self._file is not None and self._first in step.values:
                self._file.save(self._completed())
            self._export(values)
            published = None
            if self._first in values and len(self._steps) > self._published:
                # Metrics before the step number: a scraper seeing step n sees its values.
                self._published = len(self._steps)
                self._metrics.epoch.set(self._published)
                published = self._published
            decision = self._judge(values, first_in_step)
            if decision is not None and self.decision is None:
                self.decision = decision
                return decision, published
            return None, published

    def _place(self, key: float | None, values: Mapping[str, float]) -> tuple[_Step, bool]:
        """Put values into their step; returns it, and True if they bring its first objective value."""
        if key is not None and (len(self._steps) == self._earlier or self._steps[-1].key != key):
            self._rewind(key)
        # Steps of earlier runs are complete: this run's reports start a step of their own.
        current = self._steps[-1] if len(self._steps) > self._earlier else None
        if current is None:
            current = self._open(key)
        elif key is not None:
            if current.key is None and self._first not in current.values:
                current.key = key  # values reported before the first step value join it
            elif current.key != key:
                current = self._open(key)
        elif self._first in current.values:
            # The step is complete: what follows (the next epoch's batch losses) is the next.
            current = self._open(None)
        if current.key is not None and not self._gap_checked:
            self._gap_checked = True
            self._fill_gap(current.key)
        first_in_step = self._first in values and self._first not in current.values
        current.values.update(values)
        return current, first_in_step

    def _open(self, key: float | None) -> _Step:
        step = _Step(key)
        self._steps.append(step)
        return step

    def _rewind(self, key: float) -> None:
        """An earlier run's step has this key: the program resumed from before it. Drop that step
        and the ones after it, so the epoch opens again as this run's (numbered as it was)."""
        match = next((i for i in range(self._earlier) if self._steps[i].key == key), None)
        if match is None:
            return
        # Batch losses this run reported before the key belong to the reopened step.
        pending = self._steps[-1] if len(self._steps) > self._earlier else None
        if pending is not None and (pending.key is not None or self._first in pending.values):
            pending = None
        del self._steps[match:]
        self._earlier = match
        self._published = min(self._published, match)
        self._gap_checked = True  # the keys agree from here on: nothing was skipped
        self._replay_patience()
        self._open(key).values.update(pending.values if pending else {})

    def _fill_gap(self, key: float) -> None:
        """This run's first key skips epochs that earlier runs numbered as their keys (the
        program saved them, then was killed before we read their lines): leave them empty."""
        earlier = self._steps[: self._earlier]
        base = earlier[0].key if earlier else None
        if base is None or base not in (0, 1) or not float(key).is_integer():
            return
        if any(step.key != base + i for i, step in enumerate(earlier)):
            return  # not numbered as their keys: what a key means is unknown
        missing = int(key - base) - len(earlier)
        if 0 < missing <= MAX_GAP:
            first_missing = base + len(earlier)
            self._steps[self._earlier : self._earlier] = [_Step(first_missing + i) for i in range(missing)]
            self._earlier += missing

    def _replay_patience(self) -> None:
        """Patience as it stood after the earlier runs' steps (a resumed program's is its own)."""
        self._patience = Patience(self.objectives[0], self.stopping.patience, self.stopping.min_delta)
        for step in self._steps:
            if self._first in step.values:
                self._patience.update(step.values[self._first])

    def _completed(self) -> list[Step]:
        """The steps to keep for the next run: all but one this run has not completed yet."""
        steps = self._steps if self._first in self._steps[-1].values else self._steps[:-1]
        return [(s.key, {n: v for n, v in s.values.items() if n in self._kept}) for s in steps]

    def _export(self, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            if name not in self._exported:
                if len(self._exported) >= MAX_EXPORTED:
                    continue
                self._exported.add(name)
            self._metrics.metric.labels(metric=name).set(value)

    def _judge(self, values: Mapping[str, float], first_in_step: bool) -> Decision | None:
        step = len(self._steps)
        if self.stopping.divergence_check:
            objective_names = {o.metric for o in self.objectives}
            for name, value in values.items():
                reason = None
                if ("loss" in name.lower() or name in objective_names) and not math.isfinite(value):
                    reason = f"diverged: {name} is {_word(value)} at epoch {step}"
                elif name in GRAD_NORM_NAMES:
                    reason = self._check_grad_norm(name, value, step)
                if reason is not None:
                    return Decision(contract.STATUS_STOPPED, reason)
        if first_in_step:
            reason = self._patience.update(values[self._first])
            if reason is not None:
                return Decision(contract.STATUS_COMPLETED, reason)
        return None

    def _check_grad_norm(self, name: str, value: float, step: int) -> str | None:
        if not math.isfinite(value):
            return f"diverged: gradient norm ({name}) is {_word(value)} at epoch {step}"
        limit = self.stopping.max_grad_norm
        if limit is not None and value > limit:
            return f"diverged: gradient norm ({name}) {value:.4g} exceeds maxGradNorm {limit:g} at epoch {step}"
        return None

    # ------------------------------------------------------------------ output
    @property
    def steps(self) -> int:
        """Number of steps seen so far."""
        with self._lock:
            return len(self._steps)

    def reported(self) -> list[str]:
        """Every metric name reported so far, in order of first appearance."""
        with self._lock:
            return list(self._seen)

    def missing_objectives(self) -> list[str]:
        """Objective metrics never reported."""
        with self._lock:
            present = {name for step in self._steps for name in step.values}
        return [o.metric for o in self.objectives if o.metric not in present]

    def result(
        self, status: str, reason: str | None, seconds: float, info: Mapping[str, object] | None = None
    ) -> TrialResult:
        """The trial result so far.

        Args:
            status: completed | stopped | failed.
            reason: why, if not a plain completion.
            seconds: run time.
            info: extra facts for the message.

        Returns:
            metrics: each recorded metric's value per its strategy; best: the same for the
            objectives; history: per-step values (None where a step lacks the metric, written
            null like a NaN).
        """
        with self._lock:
            history = self._history()
            steps = len(self._steps)
        metrics = {
            name: value
            for name, curve in history.items()
            if (value := _summarise(curve, self.strategies.get(name, "latest"))) is not None
        }
        best = {o.metric: metrics[o.metric] for o in self.objectives if o.metric in metrics}
        return TrialResult(
            status=status,
            reason=reason,
            metrics=metrics,
            best=best,
            history=history,
            epochs=steps,
            seconds=seconds,
            info=dict(info or {}),
        )

    def _history(self) -> dict[str, list[float | None]]:
        names = [o.metric for o in self.objectives] + [
            name for name in self.strategies if name not in {o.metric for o in self.objectives}
        ]
        history = {}
        for name in names:
            if any(name in step.values for step in self._steps):
                history[name] = [step.values.get(name) for step in self._steps]
        return history


def _summarise(curve: list[float | None], strategy: str) -> float | None:
    """One value of a curve: min/max over its finite values, or its last reported value."""
    if strategy == "latest":
        # The last step that reported the metric; a diverged NaN stays NaN (written null).
        reported = [v for v in curve if v is not None]
        return reported[-1] if reported else None
    finite = [v for v in curve if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return min(finite) if strategy == "min" else max(finite)


def _word(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")

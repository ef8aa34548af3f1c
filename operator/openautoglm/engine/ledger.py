"""The study's trials as a pass needs them, kept up to date incrementally.

A pass used to re-read and walk every trial of the study several times (the loop over running
trials, the terminal test, the best value, the status): 0.4 ms at no trial, 43-49 ms at 10,000.
The ledger reads a trial when it appears and re-reads it only while it is live (waiting or
running); a finished trial never changes, so it is read once and then only counted. What the
pass asks of all trials -- counts by state, the best trial, the Pareto front, the latest trials,
whether the target was hit -- is kept as running tallies, so an idle pass costs the same at 10
or 10,000 trials (bench/operator_scale.py measures it).

It is a cache of the study, nothing more: a new driver builds it again with one full read.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

import optuna
from optuna.trial import FrozenTrial, TrialState

from openautoglm.engine import optuna_api
from openautoglm.engine.attrs import TRIAL_RETRIED_BECAUSE

_LIVE: Final = (TrialState.RUNNING, TrialState.WAITING)


def is_better(a: float, b: float | None, direction: str) -> bool:
    if b is None:
        return True
    return a > b if direction == "maximize" else a < b


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    better_or_equal = all((x >= y) if d == "maximize" else (x <= y) for x, y, d in zip(a, b, directions))
    strictly = any((x > y) if d == "maximize" else (x < y) for x, y, d in zip(a, b, directions))
    return better_or_equal and strictly


class TrialLedger:
    """Every trial of a study by number, with tallies of the finished ones."""

    def __init__(self, study: optuna.Study, directions: list[str]):
        self.study = study
        self.directions = directions
        self.trials: list[FrozenTrial] = []
        #: Numbers of the waiting and running trials: the only ones a pass reads again.
        self.live: set[int] = set()
        #: Finished trials by state (COMPLETE, PRUNED, FAIL).
        self.finished: Counter[TrialState] = Counter()
        #: The best completed trial (one objective), or the Pareto front (several).
        self.best: FrozenTrial | None = None
        self.front: list[FrozenTrial] = []
        #: Runs of finished trials that failed and were run again (trial.retries).
        self.finished_retries = 0
        #: The highest number of a finished trial (-1: none yet).
        self.last_finished = -1
        self._loaded = False

    # ------------------------------------------------------------------ reading the study
    def refresh(self) -> list[FrozenTrial]:
        """Read the trials that are new or live since the last call; returns all trials."""
        if not self._loaded:
            for t in self.study.get_trials(deepcopy=False):
                self._add(t)
            self._loaded = True
            return self.trials
        for number in sorted(self.live):
            t = optuna_api.reread(self.study, self.trials[number])
            self.trials[number] = t
            if t.state not in _LIVE:
                self.live.discard(number)
                self._tally(t)
        for t in optuna_api.trials_from(self.study, len(self.trials)):
            self._add(t)
        return self.trials

    def _add(self, t: FrozenTrial) -> None:
        assert t.number == len(self.trials), "trials arrive in number order"
        self.trials.append(t)
        if t.state in _LIVE:
            self.live.add(t.number)
        else:
            self._tally(t)

    def _tally(self, t: FrozenTrial) -> None:
        self.finished[t.state] += 1
        self.last_finished = max(self.last_finished, t.number)
        self.finished_retries += len(t.user_attrs.get(TRIAL_RETRIED_BECAUSE) or [])
        if t.state != TrialState.COMPLETE or t.values is None:
            return
        if len(self.directions) == 1:
            if self.best is None or is_better(t.values[0], self.best.values[0], self.directions[0]):
                self.best = t
        elif not any(dominates(o.values, t.values, self.directions) for o in self.front):
            self.front = [o for o in self.front if not dominates(t.values, o.values, self.directions)] + [t]

    # ------------------------------------------------------------------ what a pass asks
    def running(self) -> list[FrozenTrial]:
        return [self.trials[n] for n in sorted(self.live) if self.trials[n].state == TrialState.RUNNING]

    @property
    def n_running(self) -> int:
        return sum(self.trials[n].state == TrialState.RUNNING for n in self.live)

    @property
    def n_retries(self) -> int:
        """Failed runs that were run again, all trials together (trial.retries)."""
        live = sum(len(self.trials[n].user_attrs.get(TRIAL_RETRIED_BECAUSE) or []) for n in self.live)
        return self.finished_retries + live

    @property
    def n_finished(self) -> int:
        return sum(self.finished.values())

    @property
    def n_started(self) -> int:
        """Finished and running trials (not the waiting ones): what counts against maxTrials."""
        return self.n_finished + self.n_running

    def is_finished(self, number: int) -> bool:
        return number < len(self.trials) and number not in self.live

    def first_reaching(self, target: float, direction: str) -> FrozenTrial | None:
        """The lowest-numbered completed trial at least as good as ``target`` (walks the trials
        only when the best one reaches it, i.e. once, as the job ends)."""
        if self.best is None or is_better(target, self.best.values[0], direction):
            return None
        hits = (
            t
            for t in self.trials
            if t.state == TrialState.COMPLETE and t.values is not None and not is_better(target, t.values[0], direction)
        )
        return next(hits, None)

    def recent(self, n: int) -> list[FrozenTrial]:
        return self.trials[-n:]

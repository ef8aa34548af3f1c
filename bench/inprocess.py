"""Trials of a TuningJob run one after the other in this process, for benchmarks.

A trial here is what a worker pod runs, minus the process: its environment from
``build_worker_env``, parsed by ``TrialSettings.from_env``, the task from the task registry and
the trial runtime's own training loop on real Horovod (a job of size 1, joined once). Samplers
and pruners come from the registries, parameters from ``space.suggest``: what a user gets.
Starting Horovod workers per trial would cost 5-8 s each, longer than a digits trial.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from openautoglm import pruners, samplers, space
from openautoglm.engine.study import enqueue_starting_points, study_name
from openautoglm.engine.worker import build_worker_env
from openautoglm.spec import TuningJob
from openautoglm_trial import contract, tasks
from openautoglm_trial.environment import ObjectiveMetric, TrialSettings
from openautoglm_trial.watch import best_values

#: ``report(epoch, value)`` after each epoch; may raise ``optuna.TrialPruned``.
Report = Callable[[int, float], None]


@dataclasses.dataclass
class TrialRecord:
    """One trial as a benchmark saw it."""

    number: int
    params: dict[str, Any]
    #: complete, pruned (by the pruner, or stopped as diverged) or failed
    state: str
    value: float | None
    epochs: int
    #: wall-clock seconds: sampler (ask and suggest), training, tell
    ask_s: float
    run_s: float
    tell_s: float
    #: CPU seconds of this process over the whole trial (all its threads)
    cpu_s: float

    @property
    def seconds(self) -> float:
        return self.ask_s + self.run_s + self.tell_s


class Worker(Protocol):
    def run(
        self, job: TuningJob, number: int, params: dict[str, Any], report: Report
    ) -> tuple[str, float | None, int]: ...


class InProcessWorker:
    """Rank 0 of a Horovod job of size 1, in this process.

    Each task's data are loaded once and shared by its trials: ``load_data`` depends only on
    the task settings, and repeating it would add the same constant to every trial (1.5 s for
    text-lm's corpus).
    """

    def __init__(self) -> None:
        import horovod.torch as hvd
        import torch

        from openautoglm_trial.builtin import training
        from openautoglm_trial.builtin.distributed import HorovodDistributed

        hvd.init()
        self.ranks, self.torch, self.training = HorovodDistributed(hvd), torch, training
        self._data: dict[str, dict[str, Any]] = {}

    def run(self, job: TuningJob, number: int, params: dict[str, Any], report: Report) -> tuple[str, float | None, int]:
        """Train trial ``number`` of ``job`` with ``params``.

        Returns:
            (state, the trial's objective value or None, epochs trained).
        """
        from openautoglm_trial.server import Health, TrialMetrics

        env = build_worker_env(job, number, 0, params, ["localhost"], bind_address="127.0.0.1")
        # This process joined Horovod once, alone: no placement, no rendezvous.
        env = {k: v for k, v in env.items() if k not in contract.HOROVOD_ENV and k != contract.WORKER_HOSTS}
        settings = TrialSettings.from_env(env)
        objectives = settings.objectives or (tasks.get(settings.task).objective,)
        task = tasks.create(
            settings.task,
            settings.params,
            settings.task_settings,
            tasks.TaskContext(rank=0, size=1, seed=settings.seed, epochs=settings.epochs, cache_dir=settings.cache_dir),
        )
        self._share_data(task, settings)
        self.torch.set_num_threads(settings.torch_threads)
        epochs = 0

        def on_epoch(outcome: Any) -> None:
            nonlocal epochs
            epochs = outcome.epochs
            report(outcome.epochs, outcome.metrics[objectives[0].metric])

        try:
            outcome = self.training.train(
                task, settings, self.ranks, objectives, TrialMetrics(), Health(settings.stall_seconds), on_epoch
            )
        except optuna.TrialPruned:
            return "pruned", None, epochs
        if outcome.status == contract.STATUS_STOPPED:
            return "pruned", None, outcome.epochs  # diverged: the engine records it as pruned
        value = objective_value(job, outcome.history, outcome.metrics, objectives)
        return ("complete" if value is not None else "failed"), value, outcome.epochs

    def validation_size(self, task: str) -> int:
        """Validation examples of a task whose data are loaded."""
        return next(len(d["val_dataset"]) for k, d in self._data.items() if k.startswith(f"{task}:"))

    def _share_data(self, task: tasks.Task, settings: TrialSettings) -> None:
        key = f"{settings.task}:{json.dumps(dict(settings.task_settings), sort_keys=True)}"
        if key not in self._data:
            before = dict(vars(task))
            task.load_data()
            self._data[key] = {k: v for k, v in vars(task).items() if k not in before or before[k] is not v}
        vars(task).update(self._data[key])


def objective_value(
    job: TuningJob, history: dict[str, list[float]], metrics: dict[str, float], objectives: tuple[ObjectiveMetric, ...]
) -> float | None:
    """A finished trial's value as the engine computes it (``objective.strategy``)."""
    source = best_values(history, objectives) if job.spec.objective.strategy == "best" else metrics
    value = source.get(objectives[0].metric)
    return float(value) if value is not None and math.isfinite(value) else None


def run_sampler(worker: Worker, job: TuningJob) -> list[TrialRecord]:
    """Ask/tell over the job's trial budget with its registry sampler and pruner.

    After the last epoch the value is reported but the pruner is not asked: the trial has
    finished, and in the engine its worker has exited before a prune could stop it.
    """
    spec = job.spec
    # The engine's study name: Hyperband assigns trials to brackets by a hash of it.
    study = optuna.create_study(
        study_name=study_name(job),
        sampler=samplers.build_sampler(spec),
        pruner=pruners.build_pruner(spec),
        direction=spec.objective.objectives[0].direction,
    )
    enqueue_starting_points(study, spec)  # the task's defaults first, as the engine does (startFromDefaults)
    records = []
    for _ in range(spec.budget.max_trials):
        cpu, started = time.process_time(), time.perf_counter()
        trial = study.ask()
        params = space.trial_params(spec, space.suggest(trial, spec))
        asked = time.perf_counter()

        def report(epoch: int, value: float, trial: optuna.Trial = trial) -> None:
            trial.report(value, epoch)
            if epoch < spec.trial.epochs and trial.should_prune():
                raise optuna.TrialPruned()

        state, value, epochs = worker.run(job, trial.number, params, report)
        ran = time.perf_counter()
        if state == "complete":
            study.tell(trial, value)
        else:
            study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        told = time.perf_counter()
        records.append(
            TrialRecord(
                trial.number,
                params,
                state,
                value,
                epochs,
                asked - started,
                ran - asked,
                told - ran,
                time.process_time() - cpu,
            )
        )
    return records


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Values a person tries for one hyperparameter, the others at the best so far."""

    name: str
    values: tuple[Any, ...]
    #: the values are factors of the current value (a learning rate "x0.3, x3 ...")
    relative: bool = False


def run_manual(worker: Worker, job: TuningJob, sweeps: tuple[Sweep, ...], passes: int) -> list[TrialRecord]:
    """A person's tuning: one parameter at a time from the task's defaults, best kept.

    Round 1 trains the defaults. Then each sweep, in order, tries its values with every other
    parameter at the best configuration so far, and ``passes`` times over. A configuration
    already trained is not trained again (and is no round); values outside the job's search
    space are skipped, so the person and the samplers search the same ranges. All epochs,
    no pruning; ties keep the earlier configuration.
    """
    direction = job.spec.objective.objectives[0].direction
    assert job.spec.trial.task is not None
    defaults = {hp.name: hp.default for hp in tasks.get(job.spec.trial.task).hyperparameters}
    ranges = {p.name: p for p in job.spec.parameters}
    current = {s.name: defaults[s.name] for s in sweeps}
    tried: set[str] = set()
    records: list[TrialRecord] = []
    best: float | None = None

    def train(params: dict[str, Any]) -> None:
        nonlocal best, current
        key = json.dumps(params, sort_keys=True)
        if key in tried:
            return
        tried.add(key)
        cpu, started = time.process_time(), time.perf_counter()
        state, value, epochs = worker.run(job, len(records), params, lambda epoch, value: None)
        records.append(
            TrialRecord(
                len(records),
                dict(params),
                state,
                value,
                epochs,
                0.0,
                time.perf_counter() - started,
                0.0,
                time.process_time() - cpu,
            )
        )
        if value is not None and (best is None or improves(value, best, direction)):
            best, current = value, dict(params)

    train(current)
    for _ in range(passes):
        for sweep in sweeps:
            base = current[sweep.name]
            for v in sweep.values:
                value = float(f"{base * v:.3g}") if sweep.relative else v  # as a person writes it
                p = ranges.get(sweep.name)
                if p is not None and p.low is not None and not p.low <= value <= p.high:
                    continue
                train({**current, sweep.name: value})
    return records


def improves(value: float, than: float, direction: str) -> bool:
    return value > than if direction == "maximize" else value < than

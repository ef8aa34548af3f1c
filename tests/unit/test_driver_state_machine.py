"""The driver's pass, driven through randomised scenarios in milliseconds: a fake backend (the
workers), an in-memory Optuna study, a fake metric source and a fake clock.

Hypothesis picks what happens between passes (trials report epochs, complete, stop themselves,
fail, lose a worker or all of them and are run again once (trial.retries: 1), time passes, the
budget is raised) and may crash a pass before
any write to the study or the backend, as a SIGKILL of the engine or the operator would: the next
driver is then built from the study and the backend alone. After every pass it checks what users
rely on: no trial launched twice (a retry is a new run of the same number and parameters) or
under the wrong parameters, no trial run more often than its retries allow, none lost, none left running
without workers, the budget respected, a finished job launching nothing, and a second pass right
after changing nothing.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import optuna
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from openautoglm import pruners, samplers
from openautoglm.engine import attrs
from openautoglm.engine.driver import Driver
from openautoglm.engine.metrics import Reading
from openautoglm.engine.reconcile import _launched, attempt_of
from openautoglm.engine.trials import FAILED, RUNNING, SUCCEEDED, TrialObservation, WorkerObservation
from openautoglm.validation import validate_document

WORKERS = 2
RETRIES = 1


def job(max_trials: int = 6, parallelism: int = 2, max_failed: int = 3, timeout: float = 900.0):
    return validate_document(
        {
            "apiVersion": "openautoglm.io/v1alpha1",
            "kind": "TuningJob",
            "metadata": {"name": "sm"},
            "spec": {
                "objective": {"metric": "score", "direction": "maximize"},
                "budget": {
                    "maxTrials": max_trials,
                    "parallelism": parallelism,
                    "maxFailedTrials": max_failed,
                    "timeoutSeconds": timeout,
                },
                "algorithm": {"sampler": "random", "seed": 3},
                "earlyStopping": {"pruner": "median", "settings": {"n_startup_trials": 1, "n_warmup_steps": 0}},
                "parameters": [
                    {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
                    {"name": "mode", "type": "categorical", "choices": ["a", "b"]},
                ],
                "trial": {"command": ["train"], "epochs": 5, "workers": WORKERS, "retries": RETRIES},
                "metrics": {"collector": {"kind": "native"}},
            },
        }
    )


class Crash(BaseException):
    """The engine killed between two lines of a pass (BaseException: nothing may swallow it)."""


class Fuse:
    """Blows (raises Crash) at the n-th write to the study or the backend, if armed."""

    def __init__(self) -> None:
        self.left: int | None = None

    def write(self) -> None:
        if self.left is not None:
            self.left -= 1
            if self.left <= 0:
                self.left = None
                raise Crash


STUDY_WRITES = (
    "create_new_trial",
    "set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "set_study_user_attr",
    "set_study_system_attr",
)


def fused_storage(fuse: Fuse) -> InMemoryStorage:
    storage = InMemoryStorage()
    for name in STUDY_WRITES:
        original = getattr(storage, name)

        def write(*args: Any, _original=original, **kwargs: Any) -> Any:
            fuse.write()
            return _original(*args, **kwargs)

        setattr(storage, name, write)
    return storage


@dataclasses.dataclass
class Run:
    """The workers of one trial as a cluster holds them (they outlive a crash of the engine)."""

    params: dict[str, Any]
    ranks: dict[int, str]  # rank -> phase
    epoch: int = 0
    message: str | None = None  # rank 0's termination message
    attempt: int = 0  # which run of the trial (trial.retries)


class FakeBackend:
    def __init__(self, fuse: Fuse, study_state) -> None:
        self.fuse = fuse
        self.study_state = study_state  # number -> TrialState, to catch launches of finished trials
        self.runs: dict[int, Run] = {}
        self.launched: dict[int, dict[str, Any]] = {}  # every number ever launched -> its params
        self.released: set[int] = set()
        self.runs_started: dict[int, set[int]] = {}  # number -> the runs (attempts) launched

    def observe(self) -> dict[int, TrialObservation]:
        out = {}
        for number, run in self.runs.items():
            workers = [
                WorkerObservation(
                    rank,
                    phase,
                    endpoint=f"10.0.0.{number}:9090",
                    exit_code=None if phase == RUNNING else (0 if phase == SUCCEEDED else 1),
                    termination_message=run.message if rank == 0 else None,
                    attempt=run.attempt,
                )
                for rank, phase in sorted(run.ranks.items())
            ]
            out[number] = TrialObservation(number, workers, WORKERS)
        return out

    def launch(self, number: int, params: dict[str, Any], attempt: int = 0) -> None:
        self.fuse.write()
        state = self.study_state(number)
        assert state == TrialState.RUNNING, f"trial {number} launched while {state}"
        assert number not in self.released, f"trial {number} launched again after its workers were released"
        assert 0 <= attempt <= RETRIES, f"trial {number} run {attempt + 1} times, retries={RETRIES}"
        if number in self.launched:
            assert self.launched[number] == params, f"trial {number} relaunched with other parameters"
        self.launched[number] = dict(params)
        self.runs_started.setdefault(number, set()).add(attempt)
        run = self.runs.get(number)
        if run is None or run.attempt != attempt:
            assert run is None or run.attempt < attempt, f"trial {number}: run {attempt} after run {run.attempt}"
            # A new run: the failed one's workers are gone (a cluster: other pod names).
            run = self.runs[number] = Run(dict(params), {}, attempt=attempt)
        for rank in range(WORKERS):
            run.ranks.setdefault(rank, RUNNING)  # a worker that exists is kept

    def tidy_checkpoints(self, keep: set[int], below: int) -> bool:
        return True  # no trial.checkpoint here

    def checkpoint_location(self, number: int) -> dict[str, str] | None:
        return None

    def retire(self, number: int, attempt: int, reason: str) -> None:
        self.fuse.write()
        run = self.runs.get(number)
        if run is not None and run.attempt == attempt:
            del self.runs[number]

    def stop(self, number: int, reason: str) -> None:
        self.fuse.write()
        if number in self.runs:
            self.runs[number].ranks = {r: FAILED for r in self.runs[number].ranks}

    def release(self, number: int) -> None:
        self.fuse.write()
        if self.runs.pop(number, None) is not None:
            self.released.add(number)

    def update(self, job) -> None:
        pass

    def close(self) -> None:
        pass


class FakeMetrics:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    def read(self, trial: TrialObservation) -> Reading | None:
        run = self.backend.runs.get(trial.number)
        if run is None or run.epoch < 1:
            return None
        return Reading(run.epoch, {"score": score(run.params, run.epoch)})


def score(params: dict[str, Any], epoch: int) -> float:
    return round(params["x"] * epoch + (0.5 if params["mode"] == "a" else 0.0), 6)


_SEEN_MARKS = (attrs.TRIAL_LAUNCHED, attrs.TRIAL_LAUNCHED_ATTEMPT, attrs.TRIAL_RUNNING_SINCE, attrs.TRIAL_WAITING)


def snapshot(study: optuna.Study, backend: FakeBackend) -> Any:
    """Everything a pass may change, but the mark that a launched trial's workers were seen: a
    pass launches, the next one marks (a cluster's pod list may lag behind the create)."""
    trials = [
        (
            t.number,
            t.state,
            t.values,
            t.params,
            {k: v for k, v in t.user_attrs.items() if k not in _SEEN_MARKS},
            t.intermediate_values,
        )
        for t in study.get_trials(deepcopy=True)
    ]
    return (
        trials,
        dict(study.user_attrs),
        json.dumps({n: dataclasses.asdict(r) for n, r in backend.runs.items()}, sort_keys=True),
        sorted(backend.released),
    )


class DriverMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fuse = Fuse()
        self.storage = fused_storage(self.fuse)
        self.job = job()
        self.now = 0.0
        self.study = self._load(create=True)
        self.backend = FakeBackend(self.fuse, lambda n: self.study.get_trials(deepcopy=False)[n].state)
        self.driver = self._driver()
        self.crashes = 0
        #: rank 0 wrote a value and exited 0: that value must reach the study.
        self.told: dict[int, float] = {}

    # ------------------------------------------------------------------ engine lifecycle
    def _load(self, create: bool = False) -> optuna.Study:
        make = optuna.create_study if create else optuna.load_study
        kwargs = {"direction": "maximize"} if create else {}
        return make(
            study_name="sm",
            storage=self.storage,
            sampler=samplers.build_sampler(self.job.spec),
            pruner=pruners.build_pruner(self.job.spec),
            **kwargs,
        )

    def _driver(self) -> Driver:
        return Driver(
            self.job,
            self.study,
            self.backend,
            metrics=FakeMetrics(self.backend),
            clock=lambda: self.now,
            save_every=30.0,
        )

    def _restart(self) -> None:
        """What a restarted engine has: the study and the backend's workers, nothing else."""
        self.crashes += 1
        self.study = self._load()
        self.driver = self._driver()

    # ------------------------------------------------------------------ passes
    @rule(crash_at=st.none() | st.integers(1, 25))
    def step(self, crash_at: int | None) -> None:
        running_before = {t.number for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING}
        self.fuse.left = crash_at
        try:
            self.driver.step()
        except Crash:
            self._restart()
        self.fuse.left = None
        result = self.driver.step()  # the pass after a crash (or simply the next one) completes
        self._check_after_pass(result, running_before)
        before = snapshot(self.study, self.backend)
        again = self.driver.step()
        assert snapshot(self.study, self.backend) == before, "a second pass right after changed something"
        assert again.done == result.done
        assert all(
            _launched(t, attempt_of(t)) for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING
        ), "running trials whose workers were seen are marked launched"

    def _check_after_pass(self, result, running_before: set[int]) -> None:
        trials = self.study.get_trials(deepcopy=False)
        spec = self.job.spec
        assert [t.number for t in trials] == list(range(len(trials)))
        running = {t.number for t in trials if t.state == TrialState.RUNNING}
        # None lost, none orphaned: exactly the running trials have workers.
        assert running == set(self.backend.runs), (running, set(self.backend.runs))
        for t in trials:
            if t.number in self.backend.launched:
                assert self.backend.launched[t.number] == t.user_attrs[attrs.TRIAL_PARAMS]
            assert t.state != TrialState.WAITING or not self.backend.launched.get(t.number)
        # The budget. A lowered parallelism drains: running trials are not stopped for it, but
        # no trial starts while as many run.
        assert len(running) <= max(spec.budget.parallelism, len(running_before))
        if running - running_before:
            assert len(running) <= spec.budget.parallelism
        assert sum(t.state != TrialState.WAITING for t in trials) <= spec.budget.max_trials
        # What rank 0 reported reaches the study.
        for number, value in self.told.items():
            if number in running_before:
                assert trials[number].state == TrialState.COMPLETE and trials[number].value == value
        # The status (tallied incrementally, engine/ledger.py) is what a full walk of the study says.
        counts = result.status.counts
        by_state = {s: sum(t.state == s for t in trials) for s in TrialState}
        assert (counts["running"], counts["completed"], counts["pruned"], counts["failed"]) == (
            by_state[TrialState.RUNNING],
            by_state[TrialState.COMPLETE],
            by_state[TrialState.PRUNED],
            by_state[TrialState.FAIL],
        )
        # A retried trial keeps its number and parameters, runs at most 1 + retries times, and the
        # runs it took are counted.
        for t in trials:
            runs = attempt_of(t)
            assert runs <= RETRIES
            if t.state == TrialState.RUNNING:
                assert self.backend.runs[t.number].attempt == runs
        assert counts["retried"] == sum(attempt_of(t) for t in trials)
        values = [t.value for t in trials if t.state == TrialState.COMPLETE]
        assert (result.status.best or {}).get("value") == (max(values) if values else None)
        assert [r["number"] for r in result.status.recent] == [t.number for t in trials][-10:]
        # A finished job holds no workers and says so.
        if self.driver.terminal:
            assert not running and not self.backend.runs and result.done
            assert result.status.phase in ("Succeeded", "Failed") and result.status.reason, result.status

    # ------------------------------------------------------------------ the world between passes
    def _live(self, data, rank0_running: bool = True) -> int | None:
        live = sorted(n for n, r in self.backend.runs.items() if not rank0_running or r.ranks.get(0) == RUNNING)
        return data.draw(st.sampled_from(live)) if live else None

    @precondition(lambda self: self.backend.runs)
    @rule(data=st.data())
    def epoch_passes(self, data) -> None:
        number = self._live(data)
        if number is not None:
            self.backend.runs[number].epoch += 1

    @precondition(lambda self: self.backend.runs)
    @rule(data=st.data(), how=st.sampled_from(["completed", "stopped", "failed", "no-value"]))
    def trial_ends(self, data, how: str) -> None:
        number = self._live(data)
        if number is None:
            return
        run = self.backend.runs[number]
        epochs = max(run.epoch, 1)
        value = score(run.params, epochs)
        if how == "failed":
            run.ranks[0] = FAILED
            run.message = json.dumps({"status": "failed", "reason": "CUDA out of memory"})
            return
        run.ranks = {r: SUCCEEDED for r in run.ranks}
        if how == "completed":
            run.message = json.dumps(
                {
                    "status": "completed",
                    "metrics": {"score": value},
                    "best": {"score": value},
                    "history": {"score": [score(run.params, e) for e in range(1, epochs + 1)]},
                    "epochs": epochs,
                }
            )
            self.told[number] = value
        elif how == "stopped":
            run.message = json.dumps({"status": "stopped", "reason": "diverged: loss is nan"})
        else:
            run.message = json.dumps({"status": "completed", "metrics": {}})

    @precondition(lambda self: self.backend.runs)
    @rule(data=st.data(), all_of_them=st.booleans())
    def workers_vanish(self, data, all_of_them: bool) -> None:
        number = self._live(data, rank0_running=False)
        if number is None:
            return
        if all_of_them:
            del self.backend.runs[number]  # a node's pods evicted: results gone too
            self.told.pop(number, None)
        else:
            self.backend.runs[number].ranks.pop(WORKERS - 1, None)

    @rule(seconds=st.sampled_from([1.0, 40.0, 400.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(more=st.integers(1, 3), parallelism=st.integers(1, 3))
    def budget_raised(self, more: int, parallelism: int) -> None:
        b = self.job.spec.budget
        edited = job(
            max_trials=b.max_trials + more,
            parallelism=parallelism,
            max_failed=b.max_failed_trials + 1,
            timeout=b.timeout_seconds + 600,
        )
        self.driver.apply(edited)
        self.job = edited

    @invariant()
    def trials_are_never_launched_beyond_the_budget(self) -> None:
        assert len(self.backend.launched) <= self.job.spec.budget.max_trials


DriverMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestDriverStateMachine = DriverMachine.TestCase


def test_a_study_read_again_after_an_outage_keeps_the_time_the_outage_took() -> None:
    """The shells re-open the study after a storage outage with the old driver's elapsed time:
    the outage (which no save could record) still counts against timeoutSeconds."""
    now = [0.0]
    storage = InMemoryStorage()
    study = optuna.create_study(study_name="sm", storage=storage, direction="maximize")
    backend = FakeBackend(Fuse(), lambda n: study.get_trials(deepcopy=False)[n].state)
    first = Driver(job(), study, backend, metrics=FakeMetrics(backend), clock=lambda: now[0], save_every=30.0)
    first.step()
    now[0] = 25.0  # the last save was at 0 s; the storage failed, 25 s passed
    again = optuna.load_study(study_name="sm", storage=storage)
    reopened = Driver(
        job(), again, backend, metrics=FakeMetrics(backend), clock=lambda: now[0], elapsed=first.elapsed()
    )
    assert first.elapsed() == reopened.elapsed() == 25.0
    now[0] = 30.0
    assert reopened.elapsed() == 30.0
    plain = Driver(job(), again, backend, metrics=FakeMetrics(backend), clock=lambda: now[0])
    assert plain.elapsed() == 0.0  # what the shells had before: the outage lost

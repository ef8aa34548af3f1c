"""The reconcile step: one level-triggered pass over a TuningJob.

    Reconciler(job, study, backend, metrics).reconcile(elapsed, now) -> Outcome

It reads what the backend sees, reports intermediate values to Optuna and prunes what
Optuna says to prune, tells finished trials, asks new ones while the budget allows,
launches them and computes the status. It holds no state of its own: running it twice,
or after a crash at any line, creates no duplicate trial and loses none, because

* a trial is asked (RUNNING in the study) *before* it is launched, and launching is
  idempotent, so a RUNNING trial without workers is simply launched (again);
* a trial is told (finished in the study) *before* its workers are released, so a
  crash in between only leaves workers that the next pass releases.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

import optuna
from optuna.trial import FrozenTrial, TrialState

from openautoglm import space
from openautoglm.engine import optuna_api
from openautoglm.engine.attrs import (
    STUDY_BEST_CHECKPOINT,
    STUDY_MESSAGE,
    STUDY_PHASE,
    STUDY_REASON,
    TRIAL_FAIL_REASON,
    TRIAL_LAUNCHED,
    TRIAL_LAUNCHED_ATTEMPT,
    TRIAL_METRICS,
    TRIAL_METRICS_PROBLEM,
    TRIAL_PARAMS,
    TRIAL_REQUEUE_AFTER,
    TRIAL_REQUEUED_BECAUSE,
    TRIAL_RETRIED_BECAUSE,
    TRIAL_RUNNING_SINCE,
    TRIAL_SECONDS,
    TRIAL_STOP_REASON,
    TRIAL_WAITING,
)
from openautoglm.engine.checkpoints import best_kept, kept
from openautoglm.engine.ledger import TrialLedger
from openautoglm.engine.metrics import SCRAPE_DEADLINE_SECONDS, MetricSource, Reading
from openautoglm.engine.queueing import PendingClock, requeue_delay, waiting_kind
from openautoglm.engine.status import JobStatus, build_status
from openautoglm.engine.trials import (
    FAILED,
    PENDING,
    SUCCEEDED,
    Backend,
    LaunchRefused,
    TrialObservation,
    TrialResult,
)
from openautoglm.spec import TuningJob
from openautoglm_trial import contract as c

log = logging.getLogger(__name__)
#: Metric reads in flight at once, all jobs of the process together (each bounded by its
#: timeout); one pool, so that 100 jobs do not make 100 pools of threads.
READERS = 16
_READERS: dict[str, ThreadPoolExecutor] = {}
_READERS_LOCK = threading.Lock()
#: Seconds a pass waits for its readings beyond one read's deadline (counted from when they
#: were asked for): a reading still queued or running then is no reading this pass.
READ_MARGIN_SECONDS: Final = 0.5


def _readers() -> ThreadPoolExecutor:
    with _READERS_LOCK:
        if "pool" not in _READERS:
            _READERS["pool"] = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="scrape")
        return _READERS["pool"]


@dataclasses.dataclass(frozen=True)
class Event:
    """Something a person watching the job wants to know (printed locally, a Kubernetes Event in a cluster)."""

    #: TrialStarted | TrialCompleted | TrialPruned | TrialStopped | TrialFailed | NewBest | JobSucceeded | JobFailed
    #: | TrialMetricsUnreadable (a Warning: a trial's /metrics or termination message is malformed)
    reason: str
    message: str
    trial: int | None = None
    warning: bool = False
    #: A finished trial's wall time and last reported epoch (for the operator's histograms).
    seconds: float | None = None
    epochs: int | None = None


def _ran(t: FrozenTrial, epochs: int | None = None) -> dict[str, Any]:
    """How long a trial ran (start to now, when it is told) and its last epoch: ``epochs`` where
    the caller knows it (the epoch a pruner stopped, the result's count), else the last reported."""
    seconds = (dt.datetime.now() - t.datetime_start).total_seconds() if t.datetime_start else None
    if epochs is None and t.intermediate_values:
        epochs = max(t.intermediate_values)
    return {"seconds": seconds, "epochs": epochs}


@dataclasses.dataclass
class Outcome:
    status: JobStatus
    events: list[Event]
    #: Seconds spent in Optuna calls during the pass, by operation ("ask", "tell", "report").
    latencies: dict[str, list[float]] = dataclasses.field(default_factory=dict)


def _objective_value(job: TuningJob, result: TrialResult) -> list[float] | None:
    """The values a finished trial contributes, per each objective metric's strategy.

    ``best`` in a result is the best epoch by the objective's direction and ``metrics`` the
    final values (the supervisor writes them per metric strategy); a min/max strategy against
    the direction is taken from the history.
    """
    values = []
    strategies = job.spec.objective.strategies()
    metrics = result.metrics
    for obj in job.spec.objective.objectives:
        strategy = strategies[obj.metric]
        by_direction = "max" if obj.direction == "maximize" else "min"
        if strategy == "latest":
            v = metrics.get(obj.metric)
        elif strategy == by_direction:
            v = result.best.get(obj.metric, metrics.get(obj.metric))
        else:
            curve = [
                x for x in result.history.get(obj.metric) or [] if isinstance(x, (int, float)) and math.isfinite(x)
            ]
            v = (max if strategy == "max" else min)(curve) if curve else metrics.get(obj.metric)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        values.append(float(v))
    return values


class Reconciler:
    """Drives one TuningJob. Keeps only caches that can be rebuilt from the study."""

    def __init__(
        self,
        job: TuningJob,
        study: optuna.Study,
        backend: Backend,
        metrics: MetricSource,
        ledger: TrialLedger | None = None,
    ):
        self.job = job
        self.study = study
        self.backend = backend
        self.metrics = metrics
        #: The study's trials, read incrementally (engine/ledger.py): a pass costs the same at
        #: 10 or 10,000 trials.
        self.ledger = ledger or TrialLedger(study, [o.direction for o in job.spec.objective.objectives])
        self._latencies: dict[str, list[float]] = {}
        #: This pass's metric readings, fetched side by side (see _read_running).
        self._readings: dict[int, Future[Reading | None]] = {}
        #: When this pass stops waiting for them (time.monotonic()).
        self._readings_due = 0.0
        #: Reads that outlived their pass (started late on the shared pool, or slow to the end):
        #: the next pass takes each as its reading instead of starting another, so a trickling
        #: endpoint holds at most one reader and what it answered in the end is not lost.
        self._inflight: dict[int, Future[Reading | None]] = {}
        #: When each run's pending stretch began (trial.pendingTimeoutSeconds; engine/queueing.py).
        self._pending = PendingClock()
        #: Whether the checkpoints outside trial.checkpoint.keep are gone (the backend says so):
        #: the job is done only then.
        self.tidy = True
        #: Trials whose checkpoints the backend has removed (this process): a change of what is
        #: kept that removes nothing new costs no janitor pod.
        self._removed: set[int] = set()

    def _timed(self, op: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self._latencies.setdefault(op, []).append(time.perf_counter() - t0)

    # ------------------------------------------------------------------ the step
    def reconcile(self, elapsed: float, now: dt.datetime | None = None) -> Outcome:
        now = now or dt.datetime.now()
        self._latencies = {}
        events: list[Event] = []
        observed = self.backend.observe()
        ledger = self.ledger
        ledger.refresh()
        best_before = self._best_value()

        terminal = self.study.user_attrs.get(STUDY_PHASE)
        running = ledger.running()
        self._readings = self._read_running(running, observed)
        for t in running:
            self._drive_running(t, observed.get(t.number), events, now)
        for number, pending in self._readings.items():
            # Not taken this pass: a queued read need not run; a running one is the next pass's.
            if not pending.done() and not pending.cancel():
                self._inflight[number] = pending
        self._readings = {}
        still = {t.number for t in ledger.running()}
        self._inflight = {n: f for n, f in self._inflight.items() if n in still}
        ledger.refresh()
        # Workers of trials the study had finished before this pass (a crash between tell and
        # release); those finished just now were released as they were told.
        driven = {t.number for t in running}
        for number in observed:
            if number not in driven and ledger.is_finished(number):
                self.backend.release(number)

        best_after = self._best_value()
        if best_after is not None and (best_before is None or best_after[1] != best_before[1]):
            events.append(
                Event("NewBest", f"trial {best_after[0]} is the new best: {_fmt(best_after[1])}", best_after[0])
            )
            where = self.backend.checkpoint_location(best_after[0]) if best_kept(self.job, best_after[0]) else None
            if where:
                self.study.set_user_attr(STUDY_BEST_CHECKPOINT, {"number": best_after[0], **where})
        if terminal is None:
            terminal = self._check_terminal(elapsed, events)
        if terminal is None:
            self._ask_and_launch(events)
        ledger.refresh()
        a = self.study.user_attrs
        ended = a.get(STUDY_PHASE)  # a reason without a phase is from a pass cut short: not the job's
        status = build_status(
            self.job,
            ledger,
            elapsed=elapsed,
            phase=ended,
            reason=a.get(STUDY_REASON) if ended else None,
            message=a.get(STUDY_MESSAGE) if ended else None,
            checkpoint_of=self.backend.checkpoint_location,
        )
        self._tidy_checkpoints()
        status.checkpoints_pending = not self.tidy
        return Outcome(status, events, self._latencies)

    def _tidy_checkpoints(self) -> None:
        """Let the backend remove the checkpoints trial.checkpoint.keep lets go. What it is asked
        changes only when a trial finishes or the best changes (in a cluster each change costs a pod)."""
        keep = kept(self.job, ledger := self.ledger)
        below = ledger.last_finished + 1  # trials from here on are live or not finished yet
        if keep is None or below == 0:
            self.tidy = True
            return
        gone = set(range(below)) - keep
        if gone <= self._removed:
            self.tidy = True
            return
        try:
            keep = {n for n in keep if n < below}
            self.tidy = self._timed("tidy", self.backend.tidy_checkpoints, keep, below)
            if self.tidy:
                self._removed |= gone
        except Exception:  # a failed removal costs disk, never the pass
            log.warning("removing checkpoints failed", exc_info=True)
            self.tidy = False

    # ------------------------------------------------------------------ running trials
    def _drive_running(
        self, t: FrozenTrial, obs: TrialObservation | None, events: list[Event], now: dt.datetime
    ) -> None:
        attempt = attempt_of(t)
        if obs is not None and any(w.attempt != attempt for w in obs.workers):
            # Workers of an earlier, failed run (a pass cut short after the retry was recorded,
            # or pods still terminating): remove them and judge only the current run.
            for old in sorted({w.attempt for w in obs.workers if w.attempt != attempt}):
                self.backend.retire(t.number, old, f"superseded by run {attempt + 1}")
            obs = obs.of_attempt(attempt)
        launched = _launched(t, attempt)
        if obs is None:
            if launched:
                self._fail_or_retry(t, attempt, None, "its workers disappeared (pods deleted or evicted)", events)
            elif time.time() >= float(t.user_attrs.get(TRIAL_REQUEUE_AFTER) or 0):
                # Asked but never launched (the engine died in between), or requeued and its
                # back-off is over: launch now.
                self._launch(t, attempt, None, events)
            return
        # A trial whose rank 0 has finished (or a rank has failed) is judged even if another
        # worker is gone: relaunching that worker would only wait for a rendezvous that is over.
        if len(obs.workers) < obs.size and obs.phase not in (SUCCEEDED, FAILED):
            if launched:
                # A rank vanished mid-run (its pod deleted, its node lost). It cannot rejoin: the
                # other ranks wait for it in their next allreduce, so the run as a whole has failed.
                gone = sorted(set(range(obs.size)) - {w.rank for w in obs.workers})
                why = f"worker {gone[0]} disappeared (its pod was deleted or evicted)"
                self._fail_or_retry(t, attempt, obs, why, events)
                return
            # Never fully launched (the engine died between creating two ranks): launch the
            # missing ones, keeping those that exist.
            if not self._launch(t, attempt, obs, events) or obs.leader is None:
                return
            # Rank 0 runs: its curve is read below as in any pass (one pass does it all, so a
            # second pass right after has nothing left to do).
        if not launched:
            if attempt:
                optuna_api.set_trial_attr(self.study, t, TRIAL_LAUNCHED_ATTEMPT, attempt)
            else:
                optuna_api.set_trial_attr(self.study, t, TRIAL_LAUNCHED, True)
        phase = obs.phase
        if phase == SUCCEEDED:
            self._finish(t, obs, events)
            return
        if phase == FAILED:
            self._fail_or_retry(t, attempt, obs, obs.failure_reason(), events)
            return
        if phase == PENDING:
            self._wait(t, attempt, obs, events)
        else:
            self._drive_whole(t, attempt, obs, events, now)

    def _drive_whole(
        self, t: FrozenTrial, attempt: int, obs: TrialObservation, events: list[Event], now: dt.datetime
    ) -> None:
        """A run whose every rank runs: its time limit, its curve, the pruner."""
        spec = self.job.spec
        since = self._running_since(t, attempt, now)
        if spec.trial.timeout_seconds:
            age = (now - since).total_seconds()
            if age > spec.trial.timeout_seconds:
                self.backend.stop(t.number, "trial timeout")
                self._tell(
                    t,
                    TrialState.FAIL,
                    reason=f"exceeded trial.timeoutSeconds ({spec.trial.timeout_seconds} s)",
                    events=events,
                )
                self.backend.release(t.number)
                return
        if not spec.objective.is_multi:
            self._report_and_prune(t, obs, events)

    def _wait(self, t: FrozenTrial, attempt: int, obs: TrialObservation, events: list[Event]) -> None:
        """A run not wholly running: say why, and give it back or fail it once it has waited
        trial.pendingTimeoutSeconds (engine/queueing.py)."""
        timeout = self.job.spec.trial.pending_timeout_seconds
        decision = self._pending.decide(t.number, attempt, obs, timeout, time.monotonic())
        if decision.action == "fail":
            self.backend.stop(t.number, decision.reason)
            self._tell(t, TrialState.FAIL, reason=decision.reason, events=events)
            self.backend.release(t.number)
        elif decision.action == "requeue":
            self._requeue(t, attempt, decision.reason, events)
        else:
            self._note_waiting(t, decision.reason, events)

    def _note_waiting(self, t: FrozenTrial, waiting: str | None, events: list[Event]) -> None:
        """Record why the trial waits when that changes; a Warning event the first time each
        reason (Unschedulable, ImagePullBackOff, ...) shows for the trial."""
        before = t.user_attrs.get(TRIAL_WAITING)
        kind = waiting_kind(waiting)
        if before == waiting or (kind == "ImagePull" and waiting_kind(before) == kind):
            return  # a kubelet flips ErrImagePull and ImagePullBackOff at every retry: one story
        optuna_api.set_trial_attr(self.study, t, TRIAL_WAITING, waiting)
        if kind and kind != waiting_kind(before) and kind not in ("Pending", "ContainerCreating"):
            events.append(Event("TrialWaiting", f"trial {t.number} waits: {waiting}", t.number, warning=True))

    def _requeue(self, t: FrozenTrial, attempt: int, reason: str, events: list[Event]) -> None:
        """Give back every pod of the run and launch a new run after a back-off: not a failure
        and not a retry. One write records it (the run number grows with the list)."""
        self.backend.retire(t.number, attempt, reason)
        because = [*t.user_attrs.get(TRIAL_REQUEUED_BECAUSE, []), reason]
        delay = requeue_delay(len(because), self.job.spec.trial.pending_timeout_seconds, t.number)
        optuna_api.set_trial_attrs(
            self.study,
            t,
            {  # the list last: it makes the new run, which must not launch before its back-off
                TRIAL_REQUEUE_AFTER: time.time() + delay,
                TRIAL_WAITING: f"requeued {len(because)}x, back in {delay:.0f} s: {reason}",
                TRIAL_REQUEUED_BECAUSE: because,
            },
        )
        events.append(
            Event(
                "TrialRequeued",
                f"trial {t.number} gave back its pods and waits {delay:.0f} s: {reason}",
                t.number,
                warning=True,
            )
        )

    def _running_since(self, t: FrozenTrial, attempt: int, now: dt.datetime) -> dt.datetime:
        """When every rank of this run was first seen running (written once per run): what
        trial.timeoutSeconds counts from."""
        self._pending.running(t.number)
        since = t.user_attrs.get(TRIAL_RUNNING_SINCE)
        if isinstance(since, list) and len(since) == 2 and since[0] == attempt:
            try:
                return dt.datetime.fromisoformat(since[1])
            except (TypeError, ValueError):
                pass
        marks: dict[str, Any] = {TRIAL_RUNNING_SINCE: [attempt, now.isoformat()]}
        if t.user_attrs.get(TRIAL_WAITING) is not None:
            marks[TRIAL_WAITING] = None  # it waits no more
        optuna_api.set_trial_attrs(self.study, t, marks)
        return now

    def _fail_or_retry(
        self, t: FrozenTrial, attempt: int, obs: TrialObservation | None, reason: str, events: list[Event]
    ) -> None:
        """A run of the trial failed: run it again while trial.retries allows (same number,
        parameters and seed; every rank of the failed run stopped first), else fail the trial."""
        retries = self.job.spec.trial.retries
        retried = len(t.user_attrs.get(TRIAL_RETRIED_BECAUSE) or [])
        if retried < retries:
            self.backend.retire(t.number, attempt, reason)
            # One write records the retry: the run number is the length of this list.
            because = [*t.user_attrs.get(TRIAL_RETRIED_BECAUSE, []), reason]
            optuna_api.set_trial_attr(self.study, t, TRIAL_RETRIED_BECAUSE, because)
            try:
                self.backend.launch(t.number, self._params_of(t), attempt + 1)
            except LaunchRefused as err:
                # The retry is recorded: the next pass finds its run never launched, launches it
                # again and fails (or retries) it with this reason.
                log.warning("trial %d: run %d not launched: %s", t.number, attempt + 1, err)
            events.append(
                Event(
                    "TrialRetried",
                    f"trial {t.number} failed ({reason}); running it again, retry {retried + 1} of {retries}",
                    t.number,
                    warning=True,
                )
            )
            return
        if obs is not None:
            self._record_history(t, (obs.leader.result() if obs.leader else None) or TrialResult(status=""))
        if retries:
            reason = f"{reason} (after {retries} {'retry' if retries == 1 else 'retries'})"
        self._tell(t, TrialState.FAIL, reason=reason, events=events)
        self.backend.release(t.number)

    def _launch(self, t: FrozenTrial, attempt: int, obs: TrialObservation | None, events: list[Event]) -> bool:
        """Launch run ``attempt`` of a running trial; a launch the backend refuses fails that run."""
        try:
            self.backend.launch(t.number, self._params_of(t), attempt)
        except LaunchRefused as err:
            self._fail_or_retry(t, attempt, obs, str(err), events)
            return False
        return True

    def _read_running(
        self, running: list[FrozenTrial], observed: dict[int, TrialObservation]
    ) -> dict[int, Future[Reading | None]]:
        """Start reading every running trial's metrics at once: a worker whose /metrics hangs
        costs the pass one scrape timeout, not one per hung trial, and delays no other trial's
        reading. One trial (the common case) is read in place, without a thread."""
        if self.job.spec.objective.is_multi:
            return {}
        todo = [
            (t.number, obs)
            for t in running
            if (obs := observed.get(t.number)) is not None
            and obs.leader is not None
            and obs.phase not in (SUCCEEDED, FAILED)
        ]
        # A read left running by an earlier pass is this pass's reading (no second read of it).
        readings = {n: f for n, _ in todo if (f := self._inflight.pop(n, None)) is not None}
        # One deadline for the whole pass: the pool is shared by every job, so a reading may
        # wait behind other jobs' before it even starts.
        deadline = getattr(self.metrics, "deadline_seconds", SCRAPE_DEADLINE_SECONDS)
        self._readings_due = time.monotonic() + deadline + READ_MARGIN_SECONDS
        if len(todo) < 2:
            return readings  # the one trial is read in place, unless a read of it is under way
        pool = _readers()
        return {n: readings.get(n) or pool.submit(self.metrics.read, obs) for n, obs in todo}

    def _reading(self, t: FrozenTrial, obs: TrialObservation) -> Reading | None:
        """This pass's reading of a running trial: None if there is none by the pass's deadline.
        One trial is read here, bounded by the source's own deadline."""
        pending = self._readings.get(t.number)
        try:
            if pending is None:
                return self.metrics.read(obs)
            return pending.result(timeout=max(0.0, self._readings_due - time.monotonic()))
        except TimeoutError:
            if pending is not None:
                pending.cancel()  # still queued behind other reads: it need not run at all
            log.debug("trial %d: no reading within the pass's deadline", t.number)
            return None
        except Exception as err:
            # A metric source is a plugin: its bug is this trial's problem, not the pass's.
            log.warning("trial %d: reading its metrics failed", t.number, exc_info=True)
            return Reading.unreadable(f"reading its metrics failed ({type(err).__name__})")

    def _note_metrics_problem(self, t: FrozenTrial, problem: str, events: list[Event]) -> None:
        """Record why a trial's metrics cannot be read: on the trial when it changes, and as a
        Warning event the first time (a hostile /metrics answers the same every pass)."""
        before = t.user_attrs.get(TRIAL_METRICS_PROBLEM)
        if before == problem:
            return
        optuna_api.set_trial_attr(self.study, t, TRIAL_METRICS_PROBLEM, problem)
        if before is None:
            events.append(Event("TrialMetricsUnreadable", f"trial {t.number}: {problem}", t.number, warning=True))

    def _report_and_prune(self, t: FrozenTrial, obs: TrialObservation, events: list[Event]) -> None:
        reading = self._reading(t, obs)
        if reading is not None and reading.problem is not None:
            self._note_metrics_problem(t, reading.problem, events)
            return
        metric = self.job.spec.objective.objectives[0].metric
        if reading is None or metric not in reading.values:
            return
        epoch = min(reading.epoch, c.MAX_STEP)  # the study's step column holds no more
        if epoch in t.intermediate_values:
            return
        trial = optuna_api.live_trial(self.study, t)
        self._timed("report", trial.report, reading.values[metric], epoch)
        if self._timed("prune", trial.should_prune):
            why = (
                f"pruned by {self.job.spec.early_stopping.pruner} at epoch {epoch} "
                f"({metric}={_fmt(reading.values[metric])})"
            )
            # Stop every rank together: a rank left alone would block in its next allreduce.
            self.backend.stop(t.number, why)
            self._tell(t, TrialState.PRUNED, reason=why, events=events, event_reason="TrialPruned", epochs=epoch)
            self.backend.release(t.number)

    def _finish(self, t: FrozenTrial, obs: TrialObservation, events: list[Event]) -> None:
        late = self._inflight.pop(t.number, None)
        if late is not None and late.done() and not late.cancelled() and late.exception() is None:
            reading = late.result()  # the last read of its /metrics ended after its pass
            if reading is not None and reading.problem is not None:
                self._note_metrics_problem(t, reading.problem, events)
        read, problem = obs.leader.read_result() if obs.leader else (None, None)
        if read is None and problem is not None:
            # Exited 0 but left no readable result (nested too deeply, not JSON, too long).
            reason = f"worker 0: termination message unreadable: {problem}"
            self._tell(t, TrialState.FAIL, reason=reason, events=events)
            self.backend.release(t.number)
            return
        if problem is not None:
            self._note_metrics_problem(t, f"termination message: {problem}", events)
        result = read or TrialResult(status="")
        self._record_history(t, result)
        if result.metrics:
            optuna_api.set_trial_attr(self.study, t, TRIAL_METRICS, result.metrics)
        if result.seconds:
            optuna_api.set_trial_attr(self.study, t, TRIAL_SECONDS, result.seconds)
        status = result.status
        if status == c.STATUS_STOPPED:
            self._tell(
                t,
                TrialState.PRUNED,
                reason=result.reason or "stopped early by the trial",
                events=events,
                event_reason="TrialStopped",
                warning=True,
                epochs=result.epochs or None,
            )
        else:
            values = _objective_value(self.job, result)
            if values is None:
                metrics = [o.metric for o in self.job.spec.objective.objectives]
                malformed = f" (termination message: {problem})" if problem else ""
                self._tell(
                    t,
                    TrialState.FAIL,
                    events=events,
                    reason=f"finished without a finite value of {metrics} in its result{malformed}",
                    epochs=result.epochs or None,
                )
            else:
                if result.reason:
                    optuna_api.set_trial_attr(self.study, t, TRIAL_STOP_REASON, result.reason)
                self._timed(
                    "tell", self.study.tell, t.number, values if len(values) > 1 else values[0], skip_if_finished=True
                )
                events.append(
                    Event(
                        "TrialCompleted",
                        f"trial {t.number} completed: {_fmt(values)}",
                        t.number,
                        **_ran(t, result.epochs or None),
                    )
                )
        self.backend.release(t.number)

    def _record_history(self, t: FrozenTrial, result: TrialResult) -> None:
        """Fill the epochs the scraper missed from the curve in the termination message,
        so the next trials are pruned against complete curves."""
        if self.job.spec.objective.is_multi:
            return
        metric = self.job.spec.objective.objectives[0].metric
        curve = result.history.get(metric) or []
        offset = (result.epochs or len(curve)) - len(curve)  # history may be trimmed at the front
        for i, v in enumerate(curve):
            step = offset + i + 1
            if not 1 <= step <= c.MAX_STEP:  # a malformed count: no step the study can hold
                continue
            if isinstance(v, (int, float)) and math.isfinite(v) and step not in t.intermediate_values:
                optuna_api.set_intermediate(self.study, t, step, float(v))

    def _tell(
        self,
        t: FrozenTrial,
        state: TrialState,
        *,
        reason: str,
        events: list[Event],
        event_reason: str | None = None,
        warning: bool = False,
        epochs: int | None = None,
    ) -> None:
        attr = TRIAL_FAIL_REASON if state == TrialState.FAIL else TRIAL_STOP_REASON
        optuna_api.set_trial_attr(self.study, t, attr, reason)
        self._timed("tell", self.study.tell, t.number, state=state, skip_if_finished=True)
        kind = event_reason or {TrialState.FAIL: "TrialFailed", TrialState.PRUNED: "TrialPruned"}[state]
        events.append(
            Event(
                kind,
                f"trial {t.number}: {reason}",
                t.number,
                warning=warning or state == TrialState.FAIL,
                **_ran(t, epochs),
            )
        )

    # ------------------------------------------------------------------ budget
    def _check_terminal(self, elapsed: float, events: list[Event]) -> str | None:
        ended = terminal_reason(self.job, self.study, self.ledger, elapsed)
        if ended is None:
            return None
        phase, reason, message = ended
        return self._end(self.ledger.running(), phase, reason, message, events)

    def _max_trials(self) -> int:
        return max_trials(self.job, self.study)

    def _end(self, running: list[FrozenTrial], phase: str, reason: str, message: str, events: list[Event]) -> str:
        for t in running:
            self.backend.stop(t.number, f"job ended: {reason}")
            self._tell(
                t,
                TrialState.PRUNED if phase == "Succeeded" else TrialState.FAIL,
                reason=f"stopped because the job ended ({reason})",
                events=events,
            )
            self.backend.release(t.number)
        # The terminal phase is stored in the study so a rerun (or a restarted operator) sees it.
        # The phase is written last: it is what makes the job terminal, so a crash before it
        # leaves a running job whose next pass ends it again, never one ended without a reason.
        self.study.set_user_attr(STUDY_REASON, reason)
        self.study.set_user_attr(STUDY_MESSAGE, message)
        self.study.set_user_attr(STUDY_PHASE, phase)
        events.append(Event("Job" + phase, message, warning=phase == "Failed"))
        return phase

    def _ask_and_launch(self, events: list[Event]) -> None:
        b = self.job.spec.budget
        # The ledger is current: reconcile() refreshed it after driving the running trials.
        running = self.ledger.n_running
        started = self.ledger.n_started  # finished + running
        while running < b.parallelism and started < self._max_trials():
            t0 = time.perf_counter()
            trial = self.study.ask()
            sampled = space.suggest(trial, self.job.spec)  # sampling happens here (define-by-run)
            self._latencies.setdefault("ask", []).append(time.perf_counter() - t0)
            params = space.trial_params(self.job.spec, sampled)
            trial.set_user_attr(TRIAL_PARAMS, params)
            try:
                self.backend.launch(trial.number, params)
            except LaunchRefused as err:
                self._fail_or_retry(optuna_api.frozen(self.study, trial), 0, None, str(err), events)
            else:
                events.append(
                    Event("TrialStarted", f"trial {trial.number} started: {_fmt_params(params)}", trial.number)
                )
            running += 1
            started += 1

    # ------------------------------------------------------------------ helpers
    def _params_of(self, t: FrozenTrial) -> dict[str, Any]:
        if TRIAL_PARAMS in t.user_attrs:
            return t.user_attrs[TRIAL_PARAMS]
        # The engine died while sampling: finish the sampling on the same trial (values
        # already suggested are returned as stored), so the trial is neither lost nor doubled.
        trial = optuna_api.live_trial(self.study, t)
        params = space.trial_params(self.job.spec, space.suggest(trial, self.job.spec))
        trial.set_user_attr(TRIAL_PARAMS, params)
        return params

    def _best_value(self) -> tuple[int, float] | None:
        best = self.ledger.best
        if self.job.spec.objective.is_multi or best is None:
            return None
        return best.number, best.values[0]


def attempt_of(t: FrozenTrial) -> int:
    """The run of the trial now going: 0, then one more for each retry (trial.retries) and each
    requeue (trial.pendingTimeoutSeconds)."""
    return len(t.user_attrs.get(TRIAL_RETRIED_BECAUSE) or []) + len(t.user_attrs.get(TRIAL_REQUEUED_BECAUSE) or [])


def _launched(t: FrozenTrial, attempt: int) -> bool:
    """Has the backend seen every worker of this run of the trial (so a missing one vanished)?"""
    if attempt == 0:
        return bool(t.user_attrs.get(TRIAL_LAUNCHED))
    return t.user_attrs.get(TRIAL_LAUNCHED_ATTEMPT) == attempt


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def max_trials(job: TuningJob, study: optuna.Study) -> int:
    """The trial budget; a grid is exhausted before a larger one (asking more would repeat points)."""
    mt = job.spec.budget.max_trials
    grid = optuna_api.grid_size(study.sampler)
    return mt if grid is None else min(mt, grid)


def terminal_reason(
    job: TuningJob, study: optuna.Study, ledger: TrialLedger, elapsed: float
) -> tuple[str, str, str] | None:
    """(phase, reason, message) if the job ends now with these trials, else None. Pure: the
    driver also asks it whether an edited spec continues a finished job."""
    b = job.spec.budget
    failed = ledger.finished[TrialState.FAIL]
    complete = ledger.finished[TrialState.COMPLETE]
    finished = ledger.n_finished
    running = ledger.n_running > 0
    target = job.spec.objective.target
    if failed > b.max_failed_trials:
        return (
            "Failed",
            "MaxFailedTrialsReached",
            f"{failed} trials failed, more than maxFailedTrials={b.max_failed_trials}",
        )
    if target is not None:
        first = ledger.first_reaching(target, job.spec.objective.objectives[0].direction)
        if first is not None:
            return (
                "Succeeded",
                "TargetReached",
                f"trial {first.number} reached the target {target}: {_fmt(first.value)}",
            )
    if b.timeout_seconds is not None and elapsed >= b.timeout_seconds:
        return (
            "Succeeded" if complete else "Failed",
            "Timeout",
            f"the time budget of {b.timeout_seconds} s is spent; {complete} trials completed",
        )
    if finished >= max_trials(job, study) and not running:
        if complete:
            return "Succeeded", "MaxTrialsReached", f"{finished} trials finished, {complete} completed"
        return "Failed", "NoTrialCompleted", f"{finished} trials finished and none completed"
    return None

"""One TuningJob's loop around the reconcile step, the same on a laptop and in a cluster.

``openautoglm tune`` (local/runner.py) and the operator (k8s/controller.py) are thin shells
over a :class:`Driver` with their backend. The driver owns what both did separately:

* opening the study (and refusing a spec that no longer matches it);
* the elapsed-time clock, kept in the study so that it survives restarts and is the same
  whichever shell drives the job (it runs only while a driver is driving the job);
* spec edits: a new budget, parallelism, pruner, metrics or trial template applies at the
  next pass, also to a finished job, which continues when the new budget allows; edits
  that would invalidate the study are refused (:class:`SpecChangeRefused`);
* the spec generation it has applied (``observedGeneration``): the object's
  ``metadata.generation`` in a cluster, a counter kept in the study locally;
* stop-for-resume (Ctrl-C locally) and the done test (terminal, no worker left, checkpoints tidied).

State here is a cache of the study: a driver built again after a crash at any line
carries on from the study and what the backend observes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import optuna

from openautoglm.engine import attrs, optuna_api
from openautoglm.engine.metrics import MetricSource, build_metric_source
from openautoglm.engine.reconcile import Outcome, Reconciler, attempt_of, terminal_reason
from openautoglm.engine.status import JobStatus, build_status
from openautoglm.engine.study import StudyMismatch, immutable_differences, open_study
from openautoglm.engine.trials import Backend
from openautoglm.spec import TuningJob


class SpecChangeRefused(StudyMismatch):
    """An edit of a live job that would invalidate its study (search space, objective, sampler)."""

    def __init__(self, fields: list[str]):
        self.fields = fields
        super().__init__(
            f"{', '.join(fields)} cannot change on an existing TuningJob: its study was sampled with "
            "them; keep them, or start a new study (`openautoglm tune --fresh`, or a TuningJob with "
            "another name)"
        )


@dataclasses.dataclass
class Pass:
    """What one pass hands to its shell."""

    outcome: Outcome
    #: The spec generation this pass ran with (``observedGeneration``).
    generation: int
    #: Terminal and no worker left: the shell may stop calling.
    done: bool
    seconds: float

    @property
    def status(self) -> JobStatus:
        return self.outcome.status


def spec_digest(job: TuningJob) -> str:
    """Hash of the whole spec: a changed digest is an edit (a new generation locally)."""
    doc = job.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


class Driver:
    """Drives one TuningJob with a backend: call :meth:`step` until ``done``.

    Args:
        generation: the spec's generation as the shell knows it (``metadata.generation``
            in a cluster); None: counted in the study, one more per edited spec.
        clock: monotonic seconds (tests pass a fake one).
        save_every: seconds between writes of the elapsed time to the study.
        elapsed: the elapsed time the shell's previous driver of this job had reached (the study
            read again after a storage outage): the clock keeps the time the outage took, which
            it could not save, so that timeoutSeconds still holds.
    """

    def __init__(
        self,
        job: TuningJob,
        study: optuna.Study,
        backend: Backend,
        *,
        metrics: MetricSource | None = None,
        generation: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        save_every: float = 10.0,
        elapsed: float | None = None,
    ):
        self.job = job
        self.study = study
        self.backend = backend
        self._metrics = metrics
        self._clock = clock
        self._save_every = save_every
        self._reconciler = Reconciler(job, study, backend, metrics or build_metric_source(job))
        self._elapsed_before = max(float(study.user_attrs.get(attrs.STUDY_ELAPSED, 0.0)), elapsed or 0.0)
        self._since = clock()
        self._last_save = self._since
        self._ticking = not study.user_attrs.get(attrs.STUDY_PHASE)
        self.generation = 0
        self._accept(job, generation)

    @classmethod
    def open(cls, job: TuningJob, storage_url: str, backend: Backend, **kwargs: Any) -> Driver:
        """Open (or create) the job's study and drive it; StudyMismatch if the spec no longer fits it."""
        return cls(job, open_study(job, storage_url), backend, **kwargs)

    # ------------------------------------------------------------------ the clock
    @property
    def terminal(self) -> bool:
        return bool(self.study.user_attrs.get(attrs.STUDY_PHASE))

    def elapsed(self) -> float:
        """Seconds the job has been driven, over every run of every shell (frozen once terminal)."""
        if self._ticking:
            return self._elapsed_before + self._clock() - self._since
        return self._elapsed_before

    def save_clock(self) -> None:
        """Write the elapsed time to the study; the clock stops here if the job has ended."""
        now = self._clock()
        if self._ticking:
            self._elapsed_before += now - self._since
        self._since = self._last_save = now
        self._ticking = not self.terminal
        self.study.set_user_attr(attrs.STUDY_ELAPSED, self._elapsed_before)

    # ------------------------------------------------------------------ one pass
    def step(self) -> Pass:
        """One reconcile pass. Safe to call at any time, repeatedly, after any crash."""
        t0 = time.perf_counter()
        was_terminal = self.terminal
        outcome = self._reconciler.reconcile(self.elapsed())
        if not was_terminal and self.terminal:
            self.save_clock()  # the job just ended: its clock stops here
        elif self._clock() - self._last_save >= self._save_every:
            self.save_clock()
        outcome.status.generation = self.generation
        # Done once no worker is left and the checkpoints trial.checkpoint.keep lets go are gone.
        done = outcome.status.terminal and not self.backend.observe() and self._reconciler.tidy
        return Pass(outcome, self.generation, done, time.perf_counter() - t0)

    def status(self) -> JobStatus:
        """The job's status without a pass (e.g. for a finished job)."""
        a = self.study.user_attrs
        status = build_status(
            self.job,
            self._ledger(),
            elapsed=self.elapsed(),
            phase=a.get(attrs.STUDY_PHASE),
            reason=a.get(attrs.STUDY_REASON) if a.get(attrs.STUDY_PHASE) else None,
            message=a.get(attrs.STUDY_MESSAGE) if a.get(attrs.STUDY_PHASE) else None,
            checkpoint_of=self.backend.checkpoint_location,
        )
        status.generation = self.generation
        return status

    # ------------------------------------------------------------------ spec edits
    def apply(self, job: TuningJob, generation: int | None = None) -> bool:
        """Drive ``job`` (an edit of this one) from the next pass on.

        Returns True if the spec changed. Raises SpecChangeRefused (and keeps driving the
        old spec) for an edit that would invalidate the study.
        """
        refused = immutable_differences(self.job, job)
        if refused:
            raise SpecChangeRefused(refused)
        if spec_digest(job) == spec_digest(self.job) and (generation is None or generation == self.generation):
            return False
        self.job = job
        self.backend.update(job)
        # The same ledger: the objective cannot change, so its tallies still hold.
        self._reconciler = Reconciler(
            job, self.study, self.backend, self._metrics or build_metric_source(job), self._reconciler.ledger
        )
        self._accept(job, generation)
        return True

    def _accept(self, job: TuningJob, generation: int | None) -> None:
        """Record the spec as applied (its generation) and reopen a finished job it continues."""
        a = self.study.user_attrs
        digest = spec_digest(job)
        stored_gen = int(a.get(attrs.STUDY_GENERATION) or 0)
        stored_digest = a.get(attrs.STUDY_SPEC_DIGEST)
        if generation is None:
            generation = stored_gen if stored_digest == digest and stored_gen else stored_gen + 1
        if generation != stored_gen or digest != stored_digest:
            self._reopen_if_continued()
            self.study.set_user_attr(attrs.STUDY_SPEC_DIGEST, digest)
            self.study.set_user_attr(attrs.STUDY_GENERATION, generation)
        self.generation = generation

    def _reopen_if_continued(self) -> None:
        """A finished job whose new spec would not end it now continues (raised maxTrials,
        timeoutSeconds or maxFailedTrials), as Katib restarts a raised experiment."""
        if not self.terminal:
            return
        if terminal_reason(self.job, self.study, self._ledger(), self._elapsed_before) is None:
            for key in (attrs.STUDY_PHASE, attrs.STUDY_REASON, attrs.STUDY_MESSAGE):  # the phase first
                self.study.set_user_attr(key, None)
            self._since = self._last_save = self._clock()  # the clock runs again from here
            self._ticking = True

    def _ledger(self):
        """The study's trials, up to date (engine/ledger.py)."""
        ledger = self._reconciler.ledger
        ledger.refresh()
        return ledger

    # ------------------------------------------------------------------ stopping
    def stop_for_resume(self) -> None:
        """A deliberate stop is not a trial failure: stop the workers and mark their trials
        as not launched, so the next run starts them again with the same parameters."""
        running = self._ledger().running()
        for t in running:
            self.backend.stop(t.number, "interrupted")
        for t in running:
            self.backend.release(t.number)
            if attempt_of(t):  # a retried trial resumes its current run
                optuna_api.set_trial_attr(self.study, t, attrs.TRIAL_LAUNCHED_ATTEMPT, None)
            else:
                optuna_api.set_trial_attr(self.study, t, attrs.TRIAL_LAUNCHED, False)
        self.save_clock()

    def close(self) -> None:
        self.save_clock()
        self.backend.close()

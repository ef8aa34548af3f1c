"""Run a TuningJob on this machine: the reconcile loop over a LocalBackend."""
from __future__ import annotations

import dataclasses
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from openautoglm import settings as settings_mod
from openautoglm.local.backend import LocalBackend
from openautoglm.engine.metrics import build_metric_source
from openautoglm.engine.reconcile import ATTR_LAUNCHED, Outcome, Reconciler
from openautoglm.spec import TuningJob
from openautoglm.engine.status import JobStatus, build_status
from openautoglm.engine.storage import delete_study, open_storage
from openautoglm.engine.study import (ATTR_ELAPSED, ATTR_MESSAGE, ATTR_PHASE, ATTR_REASON, open_study,
                               reopen_if_budget_raised, study_name)


@dataclasses.dataclass
class RunResult:
    job: TuningJob
    status: JobStatus
    study: optuna.Study
    storage: str
    workdir: Path
    interrupted: bool = False
    resumed: bool = False

    @property
    def best_params(self) -> dict[str, Any] | None:
        return self.status.best["params"] if self.status.best else None

    @property
    def best_value(self) -> float | None:
        return self.status.best.get("value") if self.status.best else None


def default_storage(workdir: Path) -> str:
    return str(workdir / "study.journal")


def run_local(
    job: TuningJob,
    *,
    workdir: Path,
    storage: str | None = None,
    fresh: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
    settings: settings_mod.Settings | None = None,
    base_dir: Path | None = None,
) -> RunResult:
    """Run ``job`` until it succeeds or fails; resume from ``storage`` if it has the study.

    ``base_dir`` is where the job's relative paths point (its file's directory; default: the
    current directory): a ``trial.command`` program runs there, as in its image's working dir.

    Ctrl-C (SIGINT) or SIGTERM stop the running workers and return; their trials are run
    again from the start by the next call. After a SIGKILL the workers keep running and
    the next call adopts them.
    """
    cfg = settings or settings_mod.load()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    url = storage or cfg.storage or default_storage(workdir)
    if fresh:
        delete_study(open_storage(url), study_name(job))
        _clear_trials(workdir)
    resumed = False
    study = open_study(job, url)
    resumed = len(study.get_trials(deepcopy=False)) > 0
    backend = LocalBackend(job, workdir, base_dir=base_dir)
    reopen_if_budget_raised(job, study)
    if study.user_attrs.get(ATTR_PHASE):
        status = _status(job, study)
        return RunResult(job, status, study, url, workdir, resumed=True)

    reconciler = Reconciler(job, study, backend, build_metric_source(job))
    elapsed_before = float(study.user_attrs.get(ATTR_ELAPSED, 0.0))
    start = time.monotonic()
    last_save = start
    tick = min(cfg.local_tick_seconds, job.spec.metrics.interval_seconds)
    interrupted = False

    stop_requested = threading.Event()

    def _request_stop(signum: int, frame: Any) -> None:
        # A pass is never cut in the middle (half-written asks, unreleased workers): the
        # first Ctrl-C/SIGTERM stops at the next pass boundary, a second one at once.
        if stop_requested.is_set():
            raise KeyboardInterrupt
        stop_requested.set()

    in_main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = {s: signal.signal(s, _request_stop) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        while not stop_requested.is_set():
            elapsed = elapsed_before + time.monotonic() - start
            outcome = reconciler.reconcile(elapsed)
            if on_outcome:
                on_outcome(outcome)
            if outcome.status.terminal:
                break
            if time.monotonic() - last_save > cfg.elapsed_save_seconds:
                study.set_user_attr(ATTR_ELAPSED, elapsed)
                last_save = time.monotonic()
            stop_requested.wait(tick)
        if stop_requested.is_set():
            interrupted = True
            _stop_for_resume(study, backend)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        study.set_user_attr(ATTR_ELAPSED, elapsed_before + time.monotonic() - start)
    return RunResult(job, _status(job, study), study, url, workdir, interrupted=interrupted, resumed=resumed)


def _status(job: TuningJob, study: optuna.Study) -> JobStatus:
    attrs = study.user_attrs
    return build_status(job, study.get_trials(deepcopy=False), elapsed=float(attrs.get(ATTR_ELAPSED, 0.0)),
                        phase=attrs.get(ATTR_PHASE), reason=attrs.get(ATTR_REASON), message=attrs.get(ATTR_MESSAGE))


def _stop_for_resume(study: optuna.Study, backend: LocalBackend) -> None:
    """A deliberate stop is not a trial failure: stop the workers and mark their trials
    as not launched, so the next run starts them again with the same parameters."""
    running = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in running:
        backend.stop(t.number, "interrupted")
    for t in running:
        backend.release(t.number)
        study._storage.set_trial_user_attr(t._trial_id, ATTR_LAUNCHED, False)


def _clear_trials(workdir: Path) -> None:
    import shutil

    shutil.rmtree(workdir / "trials", ignore_errors=True)

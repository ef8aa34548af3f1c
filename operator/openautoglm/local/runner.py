"""Run a TuningJob on this machine: the engine's driver over a LocalBackend.

A thin shell: the driver (engine/driver.py) does what the operator's controller does
too. What is local here: the tick, Ctrl-C, and watching the job file for edits.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from openautoglm import config
from openautoglm.engine.driver import Driver, SpecChangeRefused
from openautoglm.engine.reconcile import Outcome
from openautoglm.engine.status import JobStatus
from openautoglm.engine.storage import (
    JournalWriteError,
    check_room,
    delete_study,
    describe,
    fault_message,
    open_storage,
    outage_errors,
)
from openautoglm.engine.study import study_name
from openautoglm.local.backend import LocalBackend
from openautoglm.spec import TuningJob
from openautoglm.validation import InvalidTuningJob, load_tuning_job

log = logging.getLogger(__name__)


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

    @property
    def best_checkpoint(self) -> dict[str, str] | None:
        """Where the best trial's checkpoint is kept ({"path": ...}); None if none is."""
        return self.status.best.get("checkpoint") if self.status.best else None


def default_storage(workdir: Path) -> str:
    return str(workdir / "study.journal")


def run_local(
    job: TuningJob,
    *,
    workdir: Path,
    storage: str | None = None,
    fresh: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
    settings: config.Settings | None = None,
    base_dir: Path | None = None,
    job_file: Path | None = None,
    on_edit: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``job`` until it succeeds or fails; resume from ``storage`` if it has the study.

    ``base_dir`` is where the job's relative paths point (its file's directory; default: the
    current directory): a ``trial.command`` program runs there, as in its image's working dir.
    ``job_file``: watched while the job runs; a saved edit (a new budget, parallelism, pruner,
    trial template) applies at the next pass, as ``kubectl apply`` does in a cluster, and
    ``on_edit`` hears what happened to it. A job edited after it finished continues on the
    next run when the new budget allows.

    Ctrl-C (SIGINT) or SIGTERM stop the running workers and return; their trials are run
    again from the start by the next call. After a SIGKILL the workers keep running and
    the next call adopts them.
    """
    cfg = settings or config.load()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    url = storage or cfg.storage or default_storage(workdir)
    if fresh:
        delete_study(open_storage(url), study_name(job))
        _clear_trials(workdir)
    backend = LocalBackend(job, workdir, base_dir=base_dir)
    driver = Driver.open(job, url, backend, save_every=cfg.elapsed_save_seconds)
    # Enqueued trials (defaults, warmStart) are the study's start, not a run to resume.
    resumed = any(t.state != optuna.trial.TrialState.WAITING for t in driver.study.get_trials(deepcopy=False))
    if driver.terminal and not backend.observe():
        return RunResult(driver.job, driver.status(), driver.study, url, workdir, resumed=True)

    watch = _FileWatch(job_file) if job_file else None
    tick = min(cfg.local_tick_seconds, job.spec.metrics.interval_seconds)
    interrupted = False
    stop_requested = threading.Event()

    def _request_stop(signum: int, frame: Any) -> None:
        # A pass is never cut in the middle (half-written asks, unreleased workers): the
        # first Ctrl-C/SIGTERM stops at the next pass boundary, a second one at once.
        if stop_requested.is_set():
            raise KeyboardInterrupt
        stop_requested.set()
        backend.wake()

    in_main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = {s: signal.signal(s, _request_stop) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    outage = outage_errors()
    try:
        while not stop_requested.is_set():
            if watch is not None and watch.changed():
                _apply_edit(driver, watch.path, on_edit)
            try:
                step = driver.step()
            except outage as err:
                # The study's database went away or its journal's volume is full mid-pass: the
                # workers go on, the pass is redone from the study once it can be written again
                # (a pass is safe to repeat, as after a crash; a journal record is never half-kept).
                reopened = _wait_for_storage(driver, url, backend, cfg, err, outage, stop_requested)
                if reopened is None:
                    break
                driver = reopened
                continue
            if on_outcome:
                on_outcome(step.outcome)
            if step.done or stop_requested.is_set():
                break
            # Until a worker exits (the next trial starts at once), or the tick (scrapes, edits).
            backend.wait(tick)
        if stop_requested.is_set():
            interrupted = True
            driver.stop_for_resume()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        try:
            driver.save_clock()
        except outage as err:
            log.warning("the job's clock was not saved: %s", fault_message(err, url))
    return RunResult(driver.job, driver.status(), driver.study, url, workdir, interrupted=interrupted, resumed=resumed)


#: Seconds between attempts to reach the study storage again (doubling up to the last).
STORAGE_RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)


def _wait_for_storage(
    driver: Driver,
    url: str,
    backend: LocalBackend,
    cfg: config.Settings,
    err: BaseException,
    outage: tuple[type[BaseException], ...],
    stop_requested: threading.Event,
) -> Driver | None:
    """Retry until the study storage answers again (a journal: until its volume has room); then a
    fresh driver (the study re-read, the running workers adopted). None if Ctrl-C/SIGTERM came first."""
    began = time.monotonic()
    where = describe(url)
    if isinstance(err, JournalWriteError):
        log.warning("%s; retrying", fault_message(err, url))
    else:
        log.warning(
            "study storage %s unreachable (%s: %s): the running trials go on; retrying",
            where,
            type(err).__name__,
            str(err).splitlines()[0][:200],
        )
    attempt = 0
    while not stop_requested.is_set():
        backend.wait(STORAGE_RETRY_SECONDS[min(attempt, len(STORAGE_RETRY_SECONDS) - 1)])
        attempt += 1
        try:
            # Opening reads only: without room the reopened pass would fail on its first write.
            check_room(url)
            reopened = Driver.open(
                driver.job, url, backend, save_every=cfg.elapsed_save_seconds, elapsed=driver.elapsed()
            )
        except outage:
            continue
        again = "writable" if isinstance(err, JournalWriteError) else "reachable"
        log.warning("study storage %s %s again after %.1f s: the job goes on", where, again, time.monotonic() - began)
        return reopened
    return None


class _FileWatch:
    """Notices a saved job file (mtime and size; editors replace files, so no inotify handle)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        return True


def _apply_edit(driver: Driver, path: Path, on_edit: Callable[[str], None] | None) -> None:
    """Apply a saved edit of the job file; a bad or refused edit is reported and the job goes on as it was."""
    say = on_edit or (lambda msg: log.warning("%s", msg))
    try:
        job = load_tuning_job(path)
        if job.name != driver.job.name:
            raise SpecChangeRefused(["metadata.name"])
        if driver.apply(job):
            say(f"{path}: edit applied (generation {driver.generation})")
    except (InvalidTuningJob, SpecChangeRefused) as err:
        say(f"{path}: edit not applied, the job goes on unchanged: {err}")


def _clear_trials(workdir: Path) -> None:
    import shutil

    shutil.rmtree(workdir / "trials", ignore_errors=True)

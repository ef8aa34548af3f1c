"""Entry point of a trial worker: ``python -m openautoglm_trial``.

With ``OPENAUTOGLM_COMMAND`` set it supervises the user's own program (:mod:`.supervisor`).
Otherwise it runs the built-in task ``OPENAUTOGLM_TASK``: reads the environment, serves
/metrics and the probes, joins Horovod, trains, and writes the termination message.
Exit codes: 0 completed or stopped, 1 failed, 143 terminated (SIGTERM).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Final

from . import contract
from .errors import SettingsError, TrialError
from .result import TerminationLog, TrialResult
from .settings import ObjectiveMetric, TrialSettings, rank_hint, termination_log_path
from .startup import Startup

if TYPE_CHECKING:
    from .training import TrainingSummary

log = logging.getLogger("openautoglm_trial")

EXIT_FAILED: Final = 1
EXIT_TERMINATED: Final = 128 + signal.SIGTERM  # 143, as after a default SIGTERM


def main() -> int:
    """Run one trial worker and return its exit code."""
    if os.environ.get(contract.COMMAND):
        from .supervisor import main as supervise

        return supervise()
    # Block SIGTERM before any thread exists so every thread (torch, Horovod, servers)
    # inherits the mask and only the watcher thread receives it. A Python signal handler
    # would run only when the main thread gets back to bytecode, which never happens while
    # it is blocked in a Horovod collective waiting for a peer that is gone.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    started = time.monotonic()
    startup = Startup()
    rank = rank_hint()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s rank={rank} %(levelname)s %(name)s: %(message)s"
    )
    termination = TerminationLog(termination_log_path(), rank)
    threading.Thread(target=_exit_on_sigterm, args=(termination, started), name="sigterm-watch", daemon=True).start()
    try:
        return _run(termination, started, startup)
    except TrialError as exc:
        log.error("trial failed: %s", exc)
        _fail(termination, str(exc), started)
        return EXIT_FAILED
    except BaseException as exc:  # noqa: BLE001 (everything must end in a termination message)
        traceback.print_exc()
        _fail(termination, f"{type(exc).__name__}: {exc}", started)
        return EXIT_FAILED


def _run(termination: TerminationLog, started: float, startup: Startup) -> int:
    from . import tasks

    settings = TrialSettings.from_env()
    spec = tasks.get(settings.task)
    objectives = settings.objectives or (spec.objective,)
    _check_objectives(objectives, spec.metrics, spec.name)
    # Validates the hyperparameters before torch is imported, so a bad trial fails in a blink.
    task = tasks.create(
        settings.task,
        settings.params,
        settings.task_settings,
        tasks.TaskContext(
            rank=settings.horovod.rank,
            size=settings.horovod.size,
            seed=settings.seed,
            epochs=settings.epochs,
            cache_dir=settings.cache_dir,
        ),
    )
    from . import rendezvous

    # The peers meet while every rank imports torch (rank 0 serves, the others check in).
    early = rendezvous.begin(settings.horovod, settings.bind_address, settings.rendezvous_timeout)
    # Heavy imports only now: a trial with bad inputs fails without paying for them.
    import torch

    from .eager import keep_dynamo_out

    keep_dynamo_out()  # before any optimizer exists: a built-in task never compiles
    from . import training
    from .server import Health, TrialMetrics, TrialServer

    startup.mark("imports")

    torch.set_num_threads(settings.torch_threads)
    metrics, health = TrialMetrics(), Health(settings.stall_seconds)
    try:
        TrialServer(settings.bind_address or "0.0.0.0", settings.metrics_port, metrics, health).start()
    except OSError as exc:
        raise SettingsError(
            f"cannot serve metrics on {settings.bind_address or '0.0.0.0'}:{settings.metrics_port}: {exc}"
        ) from None

    def progress(reason: str, outcome: training.TrainingSummary | None = None) -> None:
        termination.provisional(_result(contract.STATUS_FAILED, reason, outcome, objectives, started))

    progress("worker exited unexpectedly while loading data")
    task.load_data()
    startup.mark("data")
    placement = settings.horovod
    progress(
        "worker exited unexpectedly while joining Horovod"
        + (
            ""
            if placement.standalone
            else f" (rendezvous {placement.rendezvous_addr}:{placement.rendezvous_port}, {placement.size} workers)"
        )
    )
    hvd = rendezvous.join(placement, settings.bind_address, settings.rendezvous_timeout, early)
    startup.mark("rendezvous")
    health.mark_ready()
    outcome = training.train(
        task,
        settings,
        hvd,
        objectives,
        metrics,
        health,
        on_epoch=lambda o: progress(f"worker exited unexpectedly after epoch {o.epochs}", o),
        startup=startup,
    )
    termination.write_final(_result(outcome.status, outcome.reason, outcome, objectives, started))
    return 0


def _result(
    status: str,
    reason: str | None,
    outcome: TrainingSummary | None,
    objectives: tuple[ObjectiveMetric, ...],
    started: float,
) -> TrialResult:
    from .watch import best_values

    if outcome is None:
        return TrialResult(status=status, reason=reason, seconds=time.monotonic() - started)
    return TrialResult(
        status=status,
        reason=reason,
        metrics=dict(outcome.metrics),
        best=best_values(outcome.history, objectives),
        history={k: list(v) for k, v in outcome.history.items()},
        epochs=outcome.epochs,
        seconds=time.monotonic() - started,
        info=dict(outcome.info),
    )


def _check_objectives(objectives: tuple[ObjectiveMetric, ...], reported: tuple[str, ...], task: str) -> None:
    for objective in objectives:
        if objective.metric not in reported:
            raise SettingsError(
                f"objective metric {objective.metric!r} is not reported by task "
                f"{task!r} (it reports: {', '.join(reported)})"
            )


def _fail(termination: TerminationLog, reason: str, started: float) -> None:
    termination.write_final(
        TrialResult(status=contract.STATUS_FAILED, reason=reason, seconds=time.monotonic() - started)
    )


def _exit_on_sigterm(termination: TerminationLog, started: float) -> None:
    signal.sigwait({signal.SIGTERM})
    log.warning("SIGTERM: stopping the trial")
    termination.write_terminated(time.monotonic() - started)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # os._exit: don't wait for a main thread that may be stuck in a collective.
    os._exit(EXIT_TERMINATED)


if __name__ == "__main__":
    sys.exit(main())

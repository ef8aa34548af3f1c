"""The built-in task's worker: what ``python -m openautoglm_trial`` runs without ``OPENAUTOGLM_COMMAND``.

Reads the environment, serves /metrics and the probes, joins the other ranks (Horovod, or
torch.distributed with ``distributed: ddp``), trains the built-in task ``OPENAUTOGLM_TASK``, and
writes the termination message. Exit codes: those of
:mod:`openautoglm_trial.contract` (0 completed or stopped, 1 failed, 143 terminated).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from .. import contract, process
from ..environment import ObjectiveMetric, TrialSettings, rank_hint, termination_log_path
from ..errors import SettingsError
from ..result import TerminationLog, TrialResult
from .startup import Startup

if TYPE_CHECKING:
    from .training import TrainingSummary

log = logging.getLogger("openautoglm_trial")


def main() -> int:
    """Run one worker of a built-in task and return its exit code."""
    rank = rank_hint()
    process.begin(rank)  # before any thread exists (torch, Horovod, the servers)
    started = time.monotonic()
    startup = Startup()
    termination = TerminationLog(termination_log_path(), rank)
    threading.Thread(target=_exit_on_sigterm, args=(termination, started), name="sigterm-watch", daemon=True).start()
    return process.run_to_the_end(
        lambda: _run(termination, started, startup), lambda reason: _fail(termination, reason, started)
    )


def _run(termination: TerminationLog, started: float, startup: Startup) -> int:
    from .. import tasks

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
    from .. import rendezvous
    from . import distributed

    kind = distributed.choose(settings, task.settings)
    # Horovod's peers meet while every rank imports torch (rank 0 serves, the others check in);
    # torch.distributed's meet in init_process_group, whose store client waits for rank 0's.
    early = (
        rendezvous.begin(settings.horovod, settings.bind_address, settings.rendezvous_timeout)
        if kind == distributed.HOROVOD
        else None
    )
    # Heavy imports only now: a trial with bad inputs fails without paying for them.
    import torch

    from .eager import keep_dynamo_out

    keep_dynamo_out()  # before any optimizer exists: a built-in task never compiles
    from ..server import Health, TrialMetrics, TrialServer
    from . import training

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
    progress(f"worker exited unexpectedly while {distributed.joining(kind, settings)}")
    ranks = distributed.join(kind, bool(task.settings["zero"]), settings, early, settings.bind_address)
    startup.mark("rendezvous")
    health.mark_ready()
    outcome = training.train(
        task,
        settings,
        ranks,
        objectives,
        metrics,
        health,
        on_epoch=lambda o: progress(f"worker exited unexpectedly after epoch {o.epochs}", o),
        startup=startup,
    )
    termination.write_final(_result(outcome.status, outcome.reason, outcome, objectives, started))
    ranks.shutdown()
    return contract.EXIT_COMPLETED


def _result(
    status: str,
    reason: str | None,
    outcome: TrainingSummary | None,
    objectives: tuple[ObjectiveMetric, ...],
    started: float,
) -> TrialResult:
    from ..watch import best_values

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
    process.wait_for_sigterm()
    log.warning("SIGTERM: stopping the trial")
    termination.write_terminated(time.monotonic() - started)
    # Not waiting for a main thread that may be stuck in a collective.
    process.exit_now(contract.EXIT_TERMINATED)

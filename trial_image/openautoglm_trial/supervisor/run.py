"""The trial supervisor: runs a user's unchanged program as one worker of a trial.

``python -m openautoglm_trial`` with ``OPENAUTOGLM_COMMAND`` set comes here. The supervisor
does the trial contract's part the program knows nothing of, and the program only trains:

1. serves /metrics (``openautoglm_trial_metric{metric=...}``, ``openautoglm_trial_epoch``,
   exactly as the built-in tasks), /healthz and /readyz (once the program started);
2. Horovod: rank 0 hosts the rendezvous server and waits for every rank's supervisor to check
   in before any program starts (Horovod's C++ store aborts a worker whose server is not up,
   see :mod:`openautoglm_trial.rendezvous`); the program gets the ``HOROVOD_*`` variables as they are, so
   ``hvd.init()`` works without horovodrun. torchrun: the program gets torchrun's variables as they
   are (``init_process_group()`` works without torchrun; its own TCPStore needs no help) and no
   ``HOROVOD_*`` or ``TORCHELASTIC_*``; the supervisors check in with rank 0's own board server
   (:class:`.board.BoardServer`) instead, so stops reach every rank either way;
3. starts the program (exec form, its own process group) and collects its metrics
   (:mod:`.collectors`) into curves (:mod:`.recorder`);
4. stops it on a diverging loss, an exploding gradient norm or patience, and on SIGTERM;
5. writes the termination message.

It never imports torch or ``horovod.torch``. Exit codes: those of :mod:`openautoglm_trial.contract`
(0 completed or stopped, 1 failed, 143 terminated).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .. import contract, process
from ..environment import (
    ObjectiveMetric,
    Placement,
    Stopping,
    rank_hint,
    read_checkpoint_dir,
    read_float,
    read_int,
    read_json,
    read_objectives,
    read_placement,
    read_stopping,
    termination_log_path,
)
from ..errors import RendezvousError, SettingsError
from ..result import TerminationLog, TrialResult
from . import command, stepfile
from .board import Board, BoardServer, LocalBoard, RemoteBoard
from .child import Child
from .collectors import COLLECTORS, Collector, CollectorSpec, StreamCollector
from .recorder import STRATEGIES, Decision, Recorder, Report, default_strategies
from .stepfile import StepFile

if TYPE_CHECKING:
    from ..server import Health

log = logging.getLogger("openautoglm_trial")

#: seconds the program has after SIGTERM before SIGKILL (Kubernetes gives the pod 30 s)
STOP_GRACE_SECONDS: Final = 10.0
#: seconds between two looks at the other ranks' stop decisions
BOARD_POLL_SECONDS: Final = 0.5
#: seconds rank 0 keeps the rendezvous store up for the other ranks after its program ended
LINGER_SECONDS: Final = 10.0
#: a rank whose program crashed gives a peer's stop decision this long to show up
PEER_DECISION_WAIT_SECONDS: Final = 2.0


@dataclass(frozen=True)
class SupervisorSettings:
    """Everything the supervisor is told, parsed and checked before anything starts."""

    command: tuple[str, ...]
    params: Mapping[str, Any]
    objectives: tuple[ObjectiveMetric, ...]
    #: metric -> min | max | latest, for the objectives and the additional metrics
    strategies: Mapping[str, str]
    collector: CollectorSpec
    stopping: Stopping
    placement: Placement
    bind_address: str | None
    metrics_port: int
    rendezvous_timeout: float
    #: ``${trial.checkpointDir}``'s value; None: the job has no checkpoint
    checkpoint_dir: Path | None = None
    #: the trial's seed: with the params, the identity of the steps kept for a resumed run
    seed: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> SupervisorSettings:
        """Read and check the settings with :mod:`openautoglm_trial.environment`'s readers, as a
        built-in task's are; a SettingsError names the variable that is missing or malformed."""
        argv = read_json(env, contract.COMMAND, None, list)
        if not argv or not all(isinstance(item, str) for item in argv):
            raise SettingsError(
                f"{contract.COMMAND} must be a non-empty JSON list of strings, got {env.get(contract.COMMAND)!r}"
            )
        objectives = read_objectives(env)
        if not objectives:
            raise SettingsError(
                f"{contract.OBJECTIVE_METRICS} is not set: the supervisor must "
                f"know which metric of the program is the objective"
            )
        return cls(
            command=tuple(argv),
            params=read_json(env, contract.PARAMS, {}, dict),
            objectives=objectives,
            strategies=_strategies(env, objectives),
            collector=CollectorSpec.parse(read_json(env, contract.COLLECTOR, None, (dict, type(None)))),
            stopping=read_stopping(env),
            placement=read_placement(env),
            bind_address=env.get(contract.BIND_ADDRESS) or None,
            metrics_port=read_int(env, contract.METRICS_PORT, contract.DEFAULT_METRICS_PORT, minimum=0),
            rendezvous_timeout=read_float(env, contract.RENDEZVOUS_TIMEOUT, 600.0),
            checkpoint_dir=read_checkpoint_dir(env),
            seed=read_int(env, contract.SEED, 0),
        )


def _strategies(env: Mapping[str, str], objectives: tuple[ObjectiveMetric, ...]) -> dict[str, str]:
    additional = read_json(env, contract.ADDITIONAL_METRICS, [], list)
    if not all(isinstance(name, str) and name for name in additional):
        raise SettingsError(f"{contract.ADDITIONAL_METRICS} must be a JSON list of metric names, got {additional!r}")
    given = read_json(env, contract.METRIC_STRATEGIES, {}, dict)
    for name, strategy in given.items():
        if strategy not in STRATEGIES:
            raise SettingsError(
                f"{contract.METRIC_STRATEGIES}.{name} must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
            )
    return {**default_strategies(objectives, additional), **given}


def main() -> int:
    """Supervise the program and return the exit code."""
    rank = rank_hint()
    # Before any thread exists; the program gets SIGTERM unblocked (see .child).
    process.begin(rank)
    started = time.monotonic()
    supervisor = Supervisor(TerminationLog(termination_log_path(), rank), rank, started)
    threading.Thread(target=supervisor.watch_sigterm, name="sigterm-watch", daemon=True).start()
    try:
        return process.run_to_the_end(supervisor.run, supervisor.fail)
    finally:
        supervisor.cleanup()


class Supervisor:
    """One worker of a supervised trial."""

    def __init__(self, termination: TerminationLog, rank: int, started: float) -> None:
        """Create the supervisor.

        Args:
            termination: writer of the termination message.
            rank: this worker's rank (best effort until the settings are read).
            started: ``time.monotonic()`` at start.
        """
        self.termination = termination
        self.rank = rank
        self.started = started
        self.recorder: Recorder | None = None
        self.collector: Collector | None = None
        self.board: Board = Board()
        self._lock = threading.Lock()
        self._child: Child | None = None
        self._terminating = False
        self._peer: tuple[int, Decision] | None = None

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        """Prepare, run the program, and write the result.

        Returns:
            The exit code (0 completed or stopped, 1 failed).

        Raises:
            TrialError: something the user must fix; the message is the reason.
        """
        self._progress("the supervisor exited unexpectedly before starting the program")
        settings = SupervisorSettings.from_env()
        self.rank = settings.placement.rank
        # Every input is checked before anything is bound or started: bad ones fail in a blink.
        checkpoint_dir = None if settings.checkpoint_dir is None else str(settings.checkpoint_dir)
        argv = command.render(settings.command, settings.params, checkpoint_dir)
        health = self._serve(settings)
        self.collector = self._collector(settings)  # before the program: a file's old content
        self.board = self._join(settings)
        child = Child(argv, self._child_env(settings), capture_stdout=isinstance(self.collector, StreamCollector))
        with self._lock:
            if self._terminating:
                return self._park()
            child.start()
            self._child = child
        if isinstance(self.collector, StreamCollector):
            assert child.stdout is not None
            self.collector.attach(child.stdout)
        self.collector.start()
        health.mark_ready()
        self._progress("the supervisor exited unexpectedly while the program ran")
        if settings.placement.size > 1:
            threading.Thread(target=self._watch_board, args=(child,), name="board-watch", daemon=True).start()
        code = child.wait()
        self.collector.finish()
        with self._lock:
            if self._terminating:
                return self._park()
        return self._finish(settings, child, code)

    def _serve(self, settings: SupervisorSettings) -> Health:
        """Serve /metrics and the probes; the recorder feeds the gauges."""
        from ..server import Health, TrialMetrics, TrialServer  # prometheus-client, not torch

        metrics, health = TrialMetrics(), Health()
        address = settings.bind_address or "0.0.0.0"
        try:
            TrialServer(address, settings.metrics_port, metrics, health).start()
        except OSError as exc:
            raise SettingsError(f"cannot serve metrics on {address}:{settings.metrics_port}: {exc}") from None
        self.recorder = Recorder(
            settings.objectives,
            settings.strategies,
            settings.stopping,
            metrics,
            settings.collector.step_metric,
            self._steps_file(settings),
        )
        return health

    def _steps_file(self, settings: SupervisorSettings) -> StepFile | None:
        """Where the steps of the trial's runs are kept (see :mod:`.stepfile`): read by every rank,
        so that their step numbers agree, and written by rank 0."""
        if settings.checkpoint_dir is None:
            return None
        ident = stepfile.identity(settings.params, settings.seed)
        return StepFile(settings.checkpoint_dir, ident, writer=settings.placement.rank == 0)

    def _child_env(self, settings: SupervisorSettings) -> dict[str, str]:
        """Our environment (the launcher's variables as given), the push file, and unbuffered
        Python output: a Python program writing to a pipe would otherwise hold its lines until it
        exits. Under torchrun no ``HOROVOD_*`` (the operator's Horovod settings, meaningless there)
        and no ``TORCHELASTIC_*`` (there is no elastic agent: ``TORCHELASTIC_USE_AGENT_STORE``
        would leave rank 0's ``init_process_group()`` waiting for a store nobody serves)."""
        assert self.collector is not None
        env = dict(os.environ)
        if settings.placement.torchrun:
            dropped = sorted(k for k in env if k.startswith((contract.HOROVOD_PREFIX, contract.TORCHELASTIC_PREFIX)))
            for name in dropped:
                del env[name]
            if dropped:
                log.info("not passed to the program under torchrun: %s", ", ".join(dropped))
        return {
            **env,
            "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED") or "1",
            **self.collector.child_env(),
        }

    def _collector(self, settings: SupervisorSettings) -> Collector:
        spec = settings.collector
        return COLLECTORS[spec.kind].factory(spec, self._on_report, settings.strategies, settings.bind_address)

    def _join(self, settings: SupervisorSettings) -> Board:
        """Horovod's rendezvous, as :func:`openautoglm_trial.rendezvous.join` does it, minus ``hvd.init()``;
        under torchrun the same check-in with rank 0's own board server (see :mod:`.board`)."""
        placement = settings.placement
        if placement.standalone or (placement.torchrun and placement.size == 1):
            return Board()
        from .. import rendezvous

        self._progress(
            "the supervisor exited unexpectedly while waiting for the other ranks "
            f"(rendezvous {placement.rendezvous_addr}:{placement.rendezvous_port}, "
            f"{placement.size} workers)"
        )
        if placement.rank > 0:
            rendezvous.check_in(placement, settings.rendezvous_timeout)
            return RemoteBoard(placement)
        address = settings.bind_address or placement.rendezvous_addr or "0.0.0.0"
        if placement.torchrun:
            return self._serve_board(address, settings)
        try:
            server = rendezvous.start_server(address, placement)
        except ImportError as exc:
            if placement.size > 1:
                raise RendezvousError(f"rank 0 cannot host Horovod's rendezvous: {exc}") from None
            log.warning("no Horovod rendezvous for this single worker (%s)", exc)
            return Board()
        rendezvous.wait_for_workers(server, placement, settings.rendezvous_timeout)
        return LocalBoard(server)

    @staticmethod
    def _serve_board(address: str, settings: SupervisorSettings) -> Board:
        """Rank 0 under torchrun: serve the board and wait for every rank's check-in."""
        from .. import rendezvous

        placement = settings.placement
        try:
            server = BoardServer((address, placement.rendezvous_port)).start()
        except OSError as exc:
            raise RendezvousError(
                f"cannot bind the supervisors' board on {address}:{placement.rendezvous_port}: {exc}"
            ) from None
        rendezvous.wait_for_workers(server, placement, settings.rendezvous_timeout)
        return LocalBoard(server)

    # ------------------------------------------------------------------ while it runs
    def _on_report(self, report: Report) -> None:
        """A collector's report: record it, publish progress, stop the program if needed."""
        assert self.recorder is not None
        decision, step = self.recorder.add(report)
        if step is not None:
            self._progress(f"worker exited unexpectedly after epoch {step}")
        if decision is not None:
            log.warning("stopping the program: %s", decision.reason)
            self.board.publish(self.rank, decision)
            self._stop_child()

    def _watch_board(self, child: Child) -> None:
        """Stop the program when another rank stopped its own (see :mod:`.board`)."""
        while not child.exited():
            peer = self.board.read()
            if peer is not None and peer[0] != self.rank and self._adopt(peer):
                return
            time.sleep(BOARD_POLL_SECONDS)

    def _adopt(self, peer: tuple[int, Decision]) -> bool:
        assert self.recorder is not None
        if self.recorder.decision is not None or self._peer is not None:
            return False
        self._peer = peer
        log.warning("rank %d stopped its program (%s): stopping ours", peer[0], peer[1].reason)
        self._stop_child()
        return True

    def _stop_child(self) -> None:
        with self._lock:
            child = self._child
        if child is not None:
            child.stop(STOP_GRACE_SECONDS)

    # ------------------------------------------------------------------ the end
    def _finish(self, settings: SupervisorSettings, child: Child, code: int) -> int:
        assert self.recorder is not None and self.collector is not None
        decision = self.recorder.decision or self._peer_decision(code, settings.placement.size)
        info = {"collector": settings.collector.kind, "exit_code": code}
        if decision is not None:
            status, reason = decision.status, decision.reason
        elif code != 0:
            status, reason = contract.STATUS_FAILED, child.exit_reason(code)
        else:
            status, reason = contract.STATUS_COMPLETED, None
            missing = self.recorder.missing_objectives()
            # Only rank 0's values count: other ranks often print nothing at all.
            if missing and self.rank == 0:
                status, reason = contract.STATUS_FAILED, self._missing_reason(missing)
        result = self.recorder.result(status, reason, time.monotonic() - self.started, info)
        self.termination.write_final(result)
        self._release_peers(settings)
        return contract.EXIT_FAILED if status == contract.STATUS_FAILED else contract.EXIT_COMPLETED

    def _peer_decision(self, code: int, size: int) -> Decision | None:
        """Another rank's stop decision; after a crash, give it a moment to show up."""
        if self._peer is not None:
            return self._peer[1]
        if size <= 1:
            return None
        deadline = time.monotonic() + (PEER_DECISION_WAIT_SECONDS if code != 0 else 0.0)
        while True:
            peer = self.board.read()
            if peer is not None and peer[0] != self.rank:
                log.info("rank %d had stopped the trial: %s", peer[0], peer[1].reason)
                return peer[1]
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def _missing_reason(self, missing: list[str]) -> str:
        assert self.recorder is not None and self.collector is not None
        reported = self.recorder.reported()
        names = " and ".join(repr(m) for m in missing)
        word = "metric" if len(missing) == 1 else "metrics"
        seen = f"it reported: {', '.join(reported[:20])}" if reported else "it reported nothing"
        return (
            f"the program exited 0 without reporting the objective {word} {names} ({self.collector.describe()}; {seen})"
        )

    def _release_peers(self, settings: SupervisorSettings) -> None:
        """Ranks > 0 say they are done; rank 0 keeps the store up until they have."""
        if settings.placement.size <= 1:
            return
        if self.rank > 0:
            self.board.done(self.rank)
        else:
            self.board.wait_done(settings.placement.size, LINGER_SECONDS)

    def _progress(self, reason: str) -> None:
        """A provisional "failed" message with the curves so far, standing if we die."""
        if self.recorder is None:
            self.termination.provisional(
                TrialResult(status=contract.STATUS_FAILED, reason=reason, seconds=time.monotonic() - self.started)
            )
            return
        self.termination.provisional(
            self.recorder.result(contract.STATUS_FAILED, reason, time.monotonic() - self.started)
        )

    def fail(self, reason: str) -> None:
        """Write a final "failed" message (errors before or around the program)."""
        if self.recorder is not None:
            result = self.recorder.result(contract.STATUS_FAILED, reason, time.monotonic() - self.started)
        else:
            result = TrialResult(status=contract.STATUS_FAILED, reason=reason, seconds=time.monotonic() - self.started)
        self.termination.write_final(result)

    def cleanup(self) -> None:
        """Remove what the collector created (the push file)."""
        if self.collector is not None:
            self.collector.cleanup()

    # ------------------------------------------------------------------ SIGTERM
    def watch_sigterm(self) -> None:
        """Wait for SIGTERM; stop the program, write "terminated" and exit 143.

        After the final result is written, SIGTERM only ends the process, with that result's
        exit code.
        """
        process.wait_for_sigterm()
        log.warning("SIGTERM: stopping the program")
        with self._lock:
            self._terminating = True
            child = self._child
        if child is not None:
            child.stop(STOP_GRACE_SECONDS)
            # The kill thread sends SIGKILL after the grace; a second more for it to land.
            child.wait_exited(STOP_GRACE_SECONDS + 1.0)
        if self.recorder is not None:
            self._progress(contract.REASON_TERMINATED)
        code = contract.EXIT_TERMINATED
        if not self.termination.write_terminated(time.monotonic() - self.started):
            # The result was written already (rank 0 keeping the store up for its peers):
            # exit as it says, or a finished trial would count as failed.
            final = self.termination.final
            code = (
                contract.EXIT_FAILED
                if final is None or final.status == contract.STATUS_FAILED
                else contract.EXIT_COMPLETED
            )
        self.cleanup()
        # The main thread may be blocked in a wait; nothing is left to do.
        process.exit_now(code)

    def _park(self) -> int:
        """SIGTERM is being handled by the watcher thread, which ends the process."""
        while True:
            time.sleep(60)

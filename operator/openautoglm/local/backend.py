"""LocalBackend: each trial worker is a local process with the environment a pod gets.

Layout of the job's work directory (the local stand-in for the cluster's pod list)::

    <workdir>/trials/t<N>/launch.json         params of the trial, and which run it is (trial.retries)
    <workdir>/trials/t<N>/w<rank>/pid         process id (for adoption after a restart)
    <workdir>/trials/t<N>/w<rank>/starting    being started: no pid recorded yet
    <workdir>/trials/t<N>/w<rank>/termination-log   the trial's result (as /dev/termination-log)
    <workdir>/trials/t<N>/w<rank>/exit-code   written when we reap the process
    <workdir>/trials/t<N>/w<rank>/output.log  stdout + stderr
    <workdir>/trials/t<N>/w<rank>/gpus        its CUDA_VISIBLE_DEVICES (local/gpus.py)
    <workdir>/trials/t<N>/released            the engine has recorded the trial

Workers run in their own session so that a Ctrl-C in the terminal reaches only
``openautoglm tune``, which then stops them deliberately; after a SIGKILL of the
runner they keep training and a rerun adopts them by pid, as the operator adopts pods.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

from openautoglm.engine.checkpoints import trial_dir_name
from openautoglm.engine.trials import FAILED, RUNNING, SUCCEEDED, TrialObservation, TrialResult, WorkerObservation
from openautoglm.engine.worker import build_worker_env, worker_command, worker_name
from openautoglm.local.gpus import CUDA_VISIBLE_DEVICES, GpuPool, gpus_per_worker, visible_gpus
from openautoglm.podtemplate import local_overlay
from openautoglm.spec import TuningJob
from openautoglm_trial import contract as c
from openautoglm_trial.result import READ_LIMIT

log = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL when stopping a trial (a pod's grace period).
STOP_GRACE_SECONDS: Final = 5.0


class LocalBackend:
    def __init__(
        self,
        job: TuningJob,
        workdir: Path,
        *,
        python: str = sys.executable,
        base_dir: Path | None = None,
        gpus: list[str] | None = None,
    ):
        self.job = job
        #: GPUs shared out to workers (default: the runner's CUDA_VISIBLE_DEVICES, else nvidia-smi's).
        self._gpus = GpuPool(visible_gpus(None, os.environ) if gpus is None else gpus)
        if self._gpus.gpus:
            log.info("GPUs for the workers, one each unless trial.resources says: %s", ",".join(self._gpus.gpus))
        self.overlay = local_overlay(job.spec.trial.pod_template)
        base = Path(base_dir or Path.cwd()).resolve()
        # A user's program runs where its relative paths point: the podTemplate's workingDir
        # (relative to the job file) or the job file's directory. Built-in tasks keep their
        # own worker directory.
        self.program_dir: Path | None = None
        ignored = list(self.overlay.ignored)
        if job.spec.trial.command is not None:
            self.program_dir = base
            workdir_in_pod = self.overlay.working_dir
            if workdir_in_pod and Path(workdir_in_pod).is_absolute():
                # A path inside the image (/app): here the job file's directory plays it.
                ignored.append(f"spec.containers[worker].workingDir ({workdir_in_pod}: the job's directory is used)")
            elif workdir_in_pod:
                self.program_dir = base / workdir_in_pod
        self.ignored_fields = ignored
        if ignored:
            log.warning(
                "running locally, these podTemplate fields have no local meaning and are ignored: %s",
                ", ".join(f"spec.trial.podTemplate.{f}" for f in ignored),
            )
        # Absolute: workers run with their own directory as cwd.
        self.root = Path(workdir).resolve() / "trials"
        self.root.mkdir(parents=True, exist_ok=True)
        #: trial.checkpoint: one directory per trial, kept across its runs (engine/checkpoints.py).
        self.checkpoints = Path(workdir).resolve() / "checkpoints"
        #: The last (keep, below) tidied: a pass with nothing new to remove reads no directory.
        self._tidied: tuple[frozenset[int], int] | None = None
        self.python = python
        self._procs: dict[tuple[int, int], subprocess.Popen] = {}
        self._stopping: dict[int, float] = {}
        # Event-driven passes: a pidfd per running child becomes readable when it exits, and a
        # pipe lets a signal handler (Ctrl-C) or another thread cut a wait short.
        self._pidfds: dict[tuple[int, int], int] = {}
        #: Trials launched and not released: what observe() reads (found once from the
        #: directory after a restart, then kept here, so a pass never walks finished trials).
        self._active: set[int] | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ------------------------------------------------------------------ paths
    def _trial_dir(self, number: int) -> Path:
        return self.root / f"t{number}"

    def _worker_dir(self, number: int, rank: int) -> Path:
        return self._trial_dir(number) / f"w{rank}"

    def _checkpoint_dir(self, number: int) -> Path | None:
        if self.job.spec.trial.checkpoint is None:
            return None
        return self.checkpoints / trial_dir_name(number)

    def checkpoint_location(self, number: int) -> dict[str, str] | None:
        where = self._checkpoint_dir(number)
        return {"path": str(where)} if where is not None else None

    def tidy_checkpoints(self, keep: set[int], below: int) -> bool:
        wanted = (frozenset(keep), below)
        if wanted == self._tidied or not self.checkpoints.is_dir():
            return True
        for entry in self.checkpoints.iterdir():
            number = entry.name.removeprefix("trial-")
            if entry.name.startswith("trial-") and number.isdigit() and int(number) < below and int(number) not in keep:
                shutil.rmtree(entry, ignore_errors=True)
                log.info("removed the checkpoint of trial %s (trial.checkpoint.keep)", number)
        self._tidied = wanted
        return True

    def hosts(self, number: int) -> list[str]:
        size = self.job.spec.trial.workers
        return [c.worker_address(self.job.name, number, r) for r in range(size)]

    # ------------------------------------------------------------------ Backend
    def launch(self, number: int, params: dict[str, Any], attempt: int = 0) -> None:
        tdir = self._trial_dir(number)
        tdir.mkdir(parents=True, exist_ok=True)
        (tdir / "released").unlink(missing_ok=True)
        self._unreleased().add(number)
        if self._attempt(number) not in (None, attempt):
            # A new run of a retried trial: the failed run's ranks must be gone before the same
            # rank directories are reused (a pass cut short may have left one running).
            self._stop_and_wait(number)
        launch = {"number": number, "params": params, "started": time.time(), "attempt": attempt}
        (tdir / "launch.json").write_text(json.dumps(launch))
        hosts = self.hosts(number)
        checkpoint = self._checkpoint_dir(number)
        if checkpoint is not None:
            checkpoint.mkdir(parents=True, exist_ok=True)
        for rank in range(len(hosts)):
            if self._worker_alive(number, rank):
                continue  # idempotent: never start a rank twice
            wdir = self._worker_dir(number, rank)
            wdir.mkdir(parents=True, exist_ok=True)
            if (wdir / "starting").exists() and not (wdir / "pid").exists():
                # The runner died between starting this worker and recording its pid: find it.
                orphan = _find_worker(wdir / "termination-log")
                if orphan is not None:
                    (wdir / "pid").write_text(str(orphan))
                    (wdir / "starting").unlink(missing_ok=True)
                    continue
            (wdir / "starting").touch()
            for stale in ("termination-log", "exit-code", "pid"):
                (wdir / stale).unlink(missing_ok=True)
            env = build_worker_env(
                self.job,
                number,
                rank,
                params,
                hosts,
                bind_address=hosts[rank],
                termination_log=str(wdir / "termination-log"),
                # Gloo otherwise binds the address of the machine's host name, which a
                # laptop may not resolve; loopback is where all ranks live here.
                extra={c.HOROVOD_GLOO_IFACE: "lo", "GLOO_SOCKET_IFNAME": "lo"},
                checkpoint_dir=str(checkpoint) if checkpoint is not None else None,
                run=attempt,
            )
            # A local worker inherits nothing of the contract from the runner: the contract sets it.
            full_env = {k: v for k, v in os.environ.items() if not k.startswith(c.RESERVED_ENV_PREFIXES)}
            # Its own GPUs, not the runner's all (a job's env may still name them itself).
            full_env[CUDA_VISIBLE_DEVICES] = self._take_gpus(number, rank)
            full_env.update(self.overlay.env)
            full_env.update(env)
            cmd = worker_command(self.job)
            if cmd[:1] == ["python"]:
                cmd = [self.python, *cmd[1:]]  # the interpreter running us, as the image's python
            with open(wdir / "output.log", "ab") as out:
                proc = subprocess.Popen(
                    cmd,
                    env=full_env,
                    cwd=self.program_dir or wdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._procs[(number, rank)] = proc
            (wdir / "pid").write_text(str(proc.pid))
            (wdir / "starting").unlink(missing_ok=True)
            log.debug("started %s pid %d", worker_name(self.job.name, number, rank), proc.pid)

    def _take_gpus(self, number: int, rank: int) -> str:
        """The worker's CUDA_VISIBLE_DEVICES (local/gpus.py), kept in its directory for a restart."""
        if not self._gpus.gpus:
            return ""  # none to share: every worker on the CPU
        if not self._gpus.held():  # first launch since start: workers adopted keep their GPUs
            for n in self._unreleased() - {number}:
                for r in range(self.job.spec.trial.workers):
                    held = _read(self._worker_dir(n, r) / "gpus")
                    if held is not None:
                        self._gpus.restore((n, r), held)
        value = self._gpus.take((number, rank), gpus_per_worker(self.job), lambda w: self._worker_alive(*w))
        (self._worker_dir(number, rank) / "gpus").write_text(value)
        return value

    def _unreleased(self) -> set[int]:
        if self._active is None:
            self._active = {
                int(tdir.name[1:])
                for tdir in self.root.glob("t*")
                if tdir.name[1:].isdigit() and not (tdir / "released").exists() and (tdir / "launch.json").exists()
            }
        return self._active

    def observe(self) -> dict[int, TrialObservation]:
        out: dict[int, TrialObservation] = {}
        size = self.job.spec.trial.workers
        for number in sorted(self._unreleased()):
            if not (self._trial_dir(number) / "launch.json").exists():
                continue  # being launched by a pass cut short: launch() writes it first
            hosts = self.hosts(number)
            attempt = self._attempt(number) or 0
            workers = [self._observe_worker(number, r, hosts[r]) for r in range(size)]
            for w in workers:
                if w is not None:
                    w.attempt = attempt
            out[number] = TrialObservation(number, [w for w in workers if w is not None], size)
        self._escalate_stops()
        return out

    def stop(self, number: int, reason: str) -> None:
        log.info("stopping trial %d: %s", number, reason)
        for rank in range(self.job.spec.trial.workers):
            pid = self._pid(number, rank)
            if pid is not None and self._worker_alive(number, rank):
                _signal_group(pid, signal.SIGTERM)
        self._stopping.setdefault(number, time.monotonic() + STOP_GRACE_SECONDS)

    def retire(self, number: int, attempt: int, reason: str) -> None:
        if self._attempt(number) != attempt:
            return  # that run's ranks were replaced already
        log.info("stopping run %d of trial %d: %s", attempt, number, reason)
        self._stop_and_wait(number)

    def release(self, number: int) -> None:
        # Ranks other than 0 may still be shutting down: make sure nothing keeps running.
        self._stop_and_wait(number)
        self._trial_dir(number).joinpath("released").touch()
        self._unreleased().discard(number)

    def _stop_and_wait(self, number: int) -> None:
        """Stop every rank of the trial and wait until none runs (SIGKILL after the grace)."""
        self.stop(number, "released")
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while any(self._worker_alive(number, r) for r in range(self.job.spec.trial.workers)):
            if time.monotonic() > deadline:
                for r in range(self.job.spec.trial.workers):
                    pid = self._pid(number, r)
                    if pid is not None:
                        _signal_group(pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_GRACE_SECONDS
            time.sleep(0.05)
        self._stopping.pop(number, None)
        for r in range(self.job.spec.trial.workers):
            self._forget(number, r)
            self._procs.pop((number, r), None)  # a finished trial holds nothing: memory stays flat

    def update(self, job: TuningJob) -> None:
        self.job = job
        self.overlay = local_overlay(job.spec.trial.pod_template)

    def close(self) -> None:
        """Stop every worker this backend knows (Ctrl-C, job end)."""
        for number in list(self.observe()):
            self.release(number)

    # ------------------------------------------------------------------ waiting for events
    def wait(self, timeout: float) -> bool:
        """Block until a worker started by this backend exits, :meth:`wake` is called, or
        ``timeout`` seconds pass; True if something happened. The runner calls it between
        passes, so a finished trial is told and the next one launched at once instead of at
        the next tick (workers adopted after a restart are seen at the tick)."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for key, proc in list(self._procs.items()):
            if key not in self._pidfds and proc.returncode is None:
                try:
                    self._pidfds[key] = os.pidfd_open(proc.pid)
                except OSError:
                    continue  # already reaped: the next pass sees it
            if key in self._pidfds:
                poller.register(self._pidfds[key], select.POLLIN)
        ready = poller.poll(max(0.0, timeout) * 1000)
        if any(fd == self._wake_r for fd, _ in ready):
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        return bool(ready)

    def wake(self) -> None:
        """Cut a :meth:`wait` short (safe from a signal handler)."""
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway

    def _forget(self, number: int, rank: int) -> None:
        fd = self._pidfds.pop((number, rank), None)
        if fd is not None:
            os.close(fd)

    # ------------------------------------------------------------------ helpers
    def _attempt(self, number: int) -> int | None:
        """The run of the trial its workers belong to (launch.json), None before any launch."""
        try:
            return int(json.loads((self._trial_dir(number) / "launch.json").read_text()).get("attempt", 0))
        except (OSError, ValueError, AttributeError):
            return None

    def _pid(self, number: int, rank: int) -> int | None:
        proc = self._procs.get((number, rank))
        if proc is not None:
            return proc.pid
        try:
            return int((self._worker_dir(number, rank) / "pid").read_text())
        except (OSError, ValueError):
            return None

    def _worker_alive(self, number: int, rank: int) -> bool:
        proc = self._procs.get((number, rank))
        if proc is not None:
            if proc.poll() is None:
                return True
            self._record_exit(number, rank, proc.returncode)
            return False
        pid = self._pid(number, rank)
        return pid is not None and _is_our_worker(pid, self.job.name, number)

    def _record_exit(self, number: int, rank: int, code: int) -> None:
        self._forget(number, rank)  # its pidfd stays readable: never wait on it again
        path = self._worker_dir(number, rank) / "exit-code"
        if not path.exists():
            path.write_text(str(code))

    def _observe_worker(self, number: int, rank: int, host: str) -> WorkerObservation | None:
        wdir = self._worker_dir(number, rank)
        if not (wdir / "pid").exists():
            return None  # never started (or the runner died while starting it): launch() will
        endpoint = f"{host}:{self.job.spec.metrics.port}"
        if self._worker_alive(number, rank):
            return WorkerObservation(rank, RUNNING, endpoint)
        # Read only once the process is known to have exited: its last write is then complete.
        message = _read(wdir / "termination-log")
        code_text = _read(wdir / "exit-code")
        code = int(code_text) if code_text and code_text.strip().lstrip("-").isdigit() else None
        if code is None:
            # Not our child (adopted after a restart) and gone: judge by its own message.
            result = TrialResult.parse(message)
            status = result.status if result is not None else None
            if status in (c.STATUS_COMPLETED, c.STATUS_STOPPED):
                return WorkerObservation(rank, SUCCEEDED, endpoint, None, message)
            return WorkerObservation(
                rank,
                FAILED,
                endpoint,
                None,
                message,
                reason=None if message else "worker process disappeared without a result",
            )
        phase = SUCCEEDED if code == 0 else FAILED
        return WorkerObservation(rank, phase, endpoint, code, message)

    def _escalate_stops(self) -> None:
        now = time.monotonic()
        for number, deadline in list(self._stopping.items()):
            alive = [r for r in range(self.job.spec.trial.workers) if self._worker_alive(number, r)]
            if not alive:
                self._stopping.pop(number)
            elif now > deadline:
                for r in alive:
                    pid = self._pid(number, r)
                    if pid is not None:
                        _signal_group(pid, signal.SIGKILL)


def _read(path: Path) -> str | None:
    """A file a worker wrote, read no further than a termination message is (a longer one is
    read just past the limit, so that the reader says it is too long)."""
    try:
        with open(path, "rb") as f:
            return f.read(READ_LIMIT + 1).decode("utf-8", "replace")
    except OSError:
        return None


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the worker leads its own session; its children go too
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _find_worker(termination_log: Path) -> int | None:
    """The live worker process writing ``termination_log`` (unique per worker), if any.

    A supervised program inherits the variables too: the worker is the match whose parent is not one.
    """
    needle = f"{c.TERMINATION_LOG}={termination_log}".encode()
    matches: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            matches[int(proc.name)] = int(fields[1])
    roots = [pid for pid, parent in matches.items() if parent not in matches]
    return min(roots) if roots else None


def _is_our_worker(pid: int, job: str, number: int) -> bool:
    """True if ``pid`` is alive and is a worker of this trial (guards against pid reuse)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # a zombie: exited, waiting for a parent that is not us
    return f"{c.JOB}={job}".encode() in environ and f"{c.TRIAL}={number}".encode() in environ

"""What a trial worker is told, read from its environment (names from :mod:`.contract`).

One settings object for a built-in task (:class:`TrialSettings`), and the public readers it is
made of, which the supervisor reuses for its own settings: every variable is parsed and checked
in one place, and its error names the variable. (Not ``settings``: that word is everybody's local
variable for the object this module builds.)
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, overload

from . import contract
from .errors import SettingsError

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class ObjectiveMetric:
    """One objective metric and the direction in which it improves."""

    #: metric name as the task reports it (``accuracy``, ``loss`` ...)
    metric: str
    #: ``maximize`` or ``minimize``
    direction: str

    def better(self, value: float, than: float, min_delta: float = 0.0) -> bool:
        """Whether ``value`` improves on ``than`` by more than ``min_delta``."""
        if self.direction == "maximize":
            return value > than + min_delta
        return value < than - min_delta


@dataclass(frozen=True)
class Stopping:
    """In-trial early stopping, from ``OPENAUTOGLM_TRIAL_STOPPING``."""

    #: a gradient norm above this ends the trial as diverged; None disables the check
    max_grad_norm: float | None = contract.DEFAULT_MAX_GRAD_NORM
    #: epochs without improvement of the first objective before stopping; None disables
    patience: int | None = None
    #: an improvement must exceed this to reset the patience counter
    min_delta: float = 0.0
    #: False turns off both divergence checks (NaN/inf loss and gradient norm)
    divergence_check: bool = True


@dataclass(frozen=True)
class Placement:
    """Where this worker sits in the trial: what horovodrun, or torchrun, would have set.

    Under torchrun the "rendezvous" is the supervisors' own (rank 0's board, see
    ``supervisor.board``) at MASTER_ADDR; the program's TCPStore is at ``master_port``.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    cross_rank: int = 0
    cross_size: int = 1
    hostname: str = "localhost"
    #: None: no launcher gave a rendezvous, run as a single standalone process
    rendezvous_addr: str | None = None
    rendezvous_port: int = contract.DEFAULT_RENDEZVOUS_PORT
    #: HOROVOD_HOSTNAME of every rank in rank order; rank 0 builds the host plan from it
    worker_hosts: tuple[str, ...] = ()
    #: which launcher's environment the worker has (``OPENAUTOGLM_LAUNCHER``)
    launcher: str = contract.LAUNCHER_HOROVOD
    #: torchrun: MASTER_PORT, where rank 0's program hosts torch's TCPStore; None under Horovod
    master_port: int | None = None

    @property
    def torchrun(self) -> bool:
        """True when the worker has torchrun's environment rather than Horovod's."""
        return self.launcher == contract.LAUNCHER_TORCHRUN

    @property
    def standalone(self) -> bool:
        """True when the worker runs alone without a launcher-provided rendezvous."""
        return self.rendezvous_addr is None

    @property
    def rendezvous(self) -> tuple[str, int]:
        """(address, port) of rank 0's rendezvous server; a standalone worker has none to ask."""
        if self.rendezvous_addr is None:
            raise SettingsError("a standalone worker has no rendezvous")
        return self.rendezvous_addr, self.rendezvous_port


#: the name this class had before torchrun; kept for code and tests that use it
HorovodPlacement = Placement


@dataclass(frozen=True)
class TrialSettings:
    """Everything a trial worker is told, parsed and checked once at start-up."""

    task: str
    params: Mapping[str, Any] = field(default_factory=dict)
    task_settings: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = contract.DEFAULT_EPOCHS
    seed: int = 0
    #: None: use the task's default objective
    objectives: tuple[ObjectiveMetric, ...] | None = None
    stopping: Stopping = Stopping()
    job: str = ""
    trial: int | None = None
    trial_name: str = ""
    #: None when unset: the HTTP server binds 0.0.0.0, the rendezvous its own address
    bind_address: str | None = None
    metrics_port: int = contract.DEFAULT_METRICS_PORT
    termination_log: Path = Path(contract.DEFAULT_TERMINATION_LOG)
    #: the placement under either launcher (the name is from the Horovod-only days)
    horovod: Placement = Placement()
    torch_threads: int = 1
    cache_dir: Path = Path("~/.cache/openautoglm").expanduser()
    save_params_to: str | None = None
    stall_seconds: float = 300.0
    rendezvous_timeout: float = 600.0
    #: the trial's checkpoint directory (``OPENAUTOGLM_CHECKPOINT_DIR``); None: no checkpoints
    checkpoint_dir: Path | None = None
    #: which run of the trial this is (``OPENAUTOGLM_TRIAL_RUN``), for the logs only
    run: int = 0
    #: ``OPENAUTOGLM_LAUNCHER``: horovod or torchrun
    launcher: str = contract.LAUNCHER_HOROVOD

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TrialSettings:
        """Read and validate the settings.

        Args:
            env: the process environment (or any mapping in tests).

        Returns:
            The settings.

        Raises:
            SettingsError: a variable is missing or malformed; the message names it.
        """
        task = env.get(contract.TASK, "").strip()
        if not task:
            raise SettingsError(f"{contract.TASK} is not set (the built-in task to run)")
        params = read_json(env, contract.PARAMS, {}, dict)
        task_settings = read_json(env, contract.TASK_SETTINGS, {}, dict)
        epochs = read_int(env, contract.EPOCHS, contract.DEFAULT_EPOCHS, minimum=1)
        return cls(
            task=task,
            params=params,
            task_settings=task_settings,
            epochs=epochs,
            seed=read_int(env, contract.SEED, 0),
            objectives=read_objectives(env),
            stopping=read_stopping(env),
            job=env.get(contract.JOB, ""),
            trial=read_int(env, contract.TRIAL, None),
            trial_name=env.get(contract.TRIAL_NAME, ""),
            bind_address=env.get(contract.BIND_ADDRESS) or None,
            metrics_port=read_int(env, contract.METRICS_PORT, contract.DEFAULT_METRICS_PORT, minimum=0),
            termination_log=termination_log_path(env),
            horovod=read_placement(env),
            torch_threads=read_int(env, contract.TORCH_THREADS, 1, minimum=1),
            cache_dir=Path(env.get(contract.CACHE_DIR) or "~/.cache/openautoglm").expanduser(),
            save_params_to=env.get(contract.SAVE_PARAMS_TO) or None,
            stall_seconds=read_float(env, contract.STALL_SECONDS, 300.0),
            rendezvous_timeout=read_float(env, contract.RENDEZVOUS_TIMEOUT, 600.0),
            checkpoint_dir=read_checkpoint_dir(env),
            run=read_run(env),
            launcher=read_launcher(env),
        )


#: A checkpoint directory longer than this is no path the operator wrote (PATH_MAX on Linux).
MAX_CHECKPOINT_DIR: Final = 4096


def read_checkpoint_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """``OPENAUTOGLM_CHECKPOINT_DIR``; None when unset, blank, or not a usable path.

    Never raises: a trial without its checkpoint still trains (from the start, as without
    ``trial.checkpoint``), so garbage here is logged and treated as no checkpoint.
    """
    raw = env.get(contract.CHECKPOINT_DIR, "").strip()
    if not raw:
        return None
    if len(raw) > MAX_CHECKPOINT_DIR or "\x00" in raw:
        log.warning("ignoring %s: not a path (%d characters)", contract.CHECKPOINT_DIR, len(raw))
        return None
    return Path(raw)


def read_run(env: Mapping[str, str] = os.environ) -> int:
    """``OPENAUTOGLM_TRIAL_RUN`` (0 first); 0 when unset or malformed: it only labels logs."""
    raw = env.get(contract.RUN, "").strip()
    try:
        # A longer string is no run number (and int() of a huge one is slow).
        run = int(raw) if len(raw) <= 20 else -1
    except ValueError:
        run = -1
    if not 0 <= run <= contract.MAX_STEP:
        log.warning("ignoring %s=%r: not a run number", contract.RUN, raw[:40])
        return 0
    return run


def termination_log_path(env: Mapping[str, str] = os.environ) -> Path:
    """Path of the termination message; read on its own so even bad settings can be reported."""
    return Path(env.get(contract.TERMINATION_LOG) or contract.DEFAULT_TERMINATION_LOG)


def rank_hint(env: Mapping[str, str] = os.environ) -> int:
    """This worker's rank, best effort, for reporting errors found before settings parse."""
    name = contract.RANK if env.get(contract.LAUNCHER) == contract.LAUNCHER_TORCHRUN else contract.HOROVOD_RANK
    try:
        return int(env.get(name, "0"))
    except ValueError:
        return 0


def read_launcher(env: Mapping[str, str] = os.environ) -> str:
    """``OPENAUTOGLM_LAUNCHER``: horovod (also when unset or blank) or torchrun.

    Strict: the engine always sets it, so anything else is a broken contract, and guessing
    would give the program the wrong launcher's environment.
    """
    raw = env.get(contract.LAUNCHER, "").strip()
    if not raw:
        return contract.LAUNCHER_HOROVOD
    if raw not in contract.LAUNCHERS:
        raise SettingsError(f"{contract.LAUNCHER} must be {' or '.join(contract.LAUNCHERS)}, got {raw[:40]!r}")
    return raw


def read_json(env: Mapping[str, str], name: str, default: Any, kind: type | tuple[type, ...]) -> Any:
    """Variable ``name`` as a JSON value of type ``kind``; ``default`` when unset or empty."""
    try:
        value = contract.decode_json_env(env, name, default)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        expected = kind[0] if isinstance(kind, tuple) else kind
        raise SettingsError(f"{name} must be a JSON {expected.__name__}, got {type(value).__name__}")
    return value


@overload
def read_int(env: Mapping[str, str], name: str, default: int, minimum: int | None = None) -> int: ...
@overload
def read_int(env: Mapping[str, str], name: str, default: None, minimum: int | None = None) -> int | None: ...
def read_int(env: Mapping[str, str], name: str, default: int | None, minimum: int | None = None) -> int | None:
    """Variable ``name`` as an integer of at least ``minimum``; ``default`` when unset or blank."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def read_float(env: Mapping[str, str], name: str, default: float) -> float:
    """Variable ``name`` as a positive number (a duration); ``default`` when unset or blank."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def read_objectives(env: Mapping[str, str]) -> tuple[ObjectiveMetric, ...] | None:
    """``OPENAUTOGLM_OBJECTIVE_METRICS``; None when unset or empty (a task's default objective)."""
    raw = read_json(env, contract.OBJECTIVE_METRICS, None, (list, type(None)))
    if not raw:
        return None
    objectives = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
            raise SettingsError(
                f'{contract.OBJECTIVE_METRICS} entries must be {{"metric", "direction"}} objects, got {item!r}'
            )
        direction = item.get("direction", "maximize")
        if direction not in DIRECTIONS:
            raise SettingsError(
                f"{contract.OBJECTIVE_METRICS}: direction of {item['metric']!r} "
                f"must be maximize or minimize, got {direction!r}"
            )
        objectives.append(ObjectiveMetric(item["metric"], direction))
    return tuple(objectives)


def read_stopping(env: Mapping[str, str]) -> Stopping:
    """``OPENAUTOGLM_TRIAL_STOPPING``; keys this runtime does not know are logged and ignored."""
    raw = read_json(env, contract.TRIAL_STOPPING, {}, (dict, type(None))) or {}
    known = {"maxGradNorm", "patience", "minDelta", "divergenceCheck"}
    # The operator may grow new keys before this runtime knows them: warn, don't fail.
    for key in sorted(set(raw) - known):
        log.warning("ignoring unknown %s key %r", contract.TRIAL_STOPPING, key)
    max_grad_norm = raw.get("maxGradNorm", contract.DEFAULT_MAX_GRAD_NORM)
    patience = raw.get("patience")
    min_delta = raw.get("minDelta", 0.0)
    divergence_check = raw.get("divergenceCheck", True)
    if max_grad_norm is not None and (not _is_number(max_grad_norm) or not max_grad_norm > 0):
        raise SettingsError(
            f"{contract.TRIAL_STOPPING}.maxGradNorm must be a positive number or null, got {max_grad_norm!r}"
        )
    if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool) or patience < 1):
        raise SettingsError(f"{contract.TRIAL_STOPPING}.patience must be an integer >= 1 or null, got {patience!r}")
    if not _is_number(min_delta) or min_delta < 0:
        raise SettingsError(f"{contract.TRIAL_STOPPING}.minDelta must be a number >= 0, got {min_delta!r}")
    if not isinstance(divergence_check, bool):
        raise SettingsError(
            f"{contract.TRIAL_STOPPING}.divergenceCheck must be true or false, got {divergence_check!r}"
        )
    return Stopping(
        max_grad_norm=None if max_grad_norm is None else float(max_grad_norm),
        patience=patience,
        min_delta=float(min_delta),
        divergence_check=divergence_check,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_placement(env: Mapping[str, str]) -> Placement:
    """The placement under the launcher of ``OPENAUTOGLM_LAUNCHER``, checked."""
    if read_launcher(env) == contract.LAUNCHER_TORCHRUN:
        return read_torchrun_placement(env)
    return read_horovod_placement(env)


def read_horovod_placement(env: Mapping[str, str]) -> Placement:
    """The ``HOROVOD_*`` variables and ``OPENAUTOGLM_WORKER_HOSTS``, checked against each other.

    Without a rendezvous address the worker runs standalone (size 1). Each worker must be its
    own host with one slot, as :func:`.contract.horovod_env` describes.
    """
    addr = env.get(contract.HOROVOD_GLOO_RENDEZVOUS_ADDR) or None
    size = read_int(env, contract.HOROVOD_SIZE, 1, minimum=1)
    rank = read_int(env, contract.HOROVOD_RANK, 0, minimum=0)
    if addr is None:
        if size != 1:
            raise SettingsError(f"{contract.HOROVOD_SIZE} > 1 needs {contract.HOROVOD_GLOO_RENDEZVOUS_ADDR}/PORT")
        return Placement()
    if rank >= size:
        raise SettingsError(f"{contract.HOROVOD_RANK} {rank} is not below {contract.HOROVOD_SIZE} {size}")
    hostname = env.get(contract.HOROVOD_HOSTNAME) or "localhost"
    hosts = tuple(h.strip() for h in env.get(contract.WORKER_HOSTS, "").split(",") if h.strip())
    if not hosts and size == 1:
        hosts = (hostname,)
    if rank == 0 and len(hosts) != size:
        raise SettingsError(
            f"{contract.WORKER_HOSTS} must list the {contract.HOROVOD_HOSTNAME} of all "
            f"{size} ranks in rank order, got {len(hosts)}: {','.join(hosts)!r}"
        )
    if hosts and len(hosts) == size and hosts[rank] != hostname:
        raise SettingsError(
            f"{contract.HOROVOD_HOSTNAME} {hostname!r} of rank {rank} differs from entry "
            f"{rank} of {contract.WORKER_HOSTS} ({hosts[rank]!r})"
        )
    if len(set(hosts)) != len(hosts):
        raise SettingsError(f"{contract.WORKER_HOSTS} has duplicates: every worker is its own host with one slot")
    placement = Placement(
        rank=rank,
        size=size,
        local_rank=read_int(env, contract.HOROVOD_LOCAL_RANK, 0),
        local_size=read_int(env, contract.HOROVOD_LOCAL_SIZE, 1),
        cross_rank=read_int(env, contract.HOROVOD_CROSS_RANK, rank),
        cross_size=read_int(env, contract.HOROVOD_CROSS_SIZE, size),
        hostname=hostname,
        rendezvous_addr=addr,
        rendezvous_port=read_int(
            env, contract.HOROVOD_GLOO_RENDEZVOUS_PORT, contract.DEFAULT_RENDEZVOUS_PORT, minimum=1
        ),
        worker_hosts=hosts,
    )
    expected = (0, 1, rank, size)
    actual = (placement.local_rank, placement.local_size, placement.cross_rank, placement.cross_size)
    if actual != expected:
        raise SettingsError(
            f"each worker is its own host with one slot: expected {contract.HOROVOD_LOCAL_RANK}=0, "
            f"LOCAL_SIZE=1, CROSS_RANK={rank}, CROSS_SIZE={size}, got {actual}"
        )
    return placement


def read_torchrun_placement(env: Mapping[str, str]) -> Placement:
    """torchrun's variables (see :func:`.contract.torchrun_env`), checked against each other.

    Without MASTER_ADDR the worker runs standalone (size 1). Each worker is its own node with
    one process; rank 0's supervisor hosts the supervisors' board on MASTER_ADDR at the
    rendezvous port, its program the TCPStore at MASTER_PORT.
    """
    addr = env.get(contract.MASTER_ADDR, "").strip() or None
    size = read_int(env, contract.WORLD_SIZE, 1, minimum=1)
    rank = read_int(env, contract.RANK, 0, minimum=0)
    if addr is None:
        if size != 1:
            raise SettingsError(f"{contract.WORLD_SIZE} > 1 needs {contract.MASTER_ADDR} and {contract.MASTER_PORT}")
        return Placement(launcher=contract.LAUNCHER_TORCHRUN)
    if rank >= size:
        raise SettingsError(f"{contract.RANK} {rank} is not below {contract.WORLD_SIZE} {size}")
    port = read_int(env, contract.MASTER_PORT, None, minimum=1)
    if port is None or port > 65535 or port == contract.DEFAULT_RENDEZVOUS_PORT:
        raise SettingsError(
            f"{contract.MASTER_PORT} must be a port other than {contract.DEFAULT_RENDEZVOUS_PORT} "
            f"(the supervisors' own), got {env.get(contract.MASTER_PORT)!r}"
        )
    hosts = tuple(h.strip() for h in env.get(contract.WORKER_HOSTS, "").split(",") if h.strip())
    if hosts and (len(hosts) != size or hosts[0] != addr):
        raise SettingsError(
            f"{contract.WORKER_HOSTS} must list the address of all {size} ranks in rank order, "
            f"the first {contract.MASTER_ADDR} {addr!r}; got {','.join(hosts)!r}"
        )
    expected = {contract.LOCAL_RANK: "0", contract.LOCAL_WORLD_SIZE: "1", contract.GROUP_RANK: str(rank)}
    expected |= {contract.GROUP_WORLD_SIZE: str(size), contract.ROLE_RANK: str(rank)}
    expected |= {contract.ROLE_WORLD_SIZE: str(size)}
    wrong = {name: env[name] for name, value in expected.items() if env.get(name, value).strip() != value}
    if wrong:
        raise SettingsError(
            f"each worker is its own node with one process: expected "
            f"{', '.join(f'{k}={v}' for k, v in expected.items())}, got {wrong}"
        )
    return Placement(
        rank=rank,
        size=size,
        local_rank=0,
        local_size=1,
        cross_rank=rank,
        cross_size=size,
        hostname=hosts[rank] if hosts else addr if rank == 0 else "localhost",
        rendezvous_addr=addr,
        rendezvous_port=contract.DEFAULT_RENDEZVOUS_PORT,
        worker_hosts=hosts,
        launcher=contract.LAUNCHER_TORCHRUN,
        master_port=port,
    )

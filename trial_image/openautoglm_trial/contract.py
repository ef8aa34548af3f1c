"""The trial contract: everything a trial worker receives, and what it gives back.

This module is the single source of truth shared by the operator (which builds the
environment of every worker, as a pod or a local process) and the trial runtime (which
reads it). It imports nothing heavy so the operator can use it without torch.

A worker receives *only* environment variables. Hyperparameters travel as one JSON
document in ``OPENAUTOGLM_TRIAL_PARAMS`` so that a categorical value such as
``$(rm -rf /)`` reaches the trial as a literal string: no shell ever sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

# --- identity -------------------------------------------------------------------------
JOB: Final = "OPENAUTOGLM_JOB"  #: TuningJob name
TRIAL: Final = "OPENAUTOGLM_TRIAL"  #: Optuna trial number (int)
TRIAL_NAME: Final = "OPENAUTOGLM_TRIAL_NAME"  #: "<job>-t<number>", also the Service name

# --- what to train --------------------------------------------------------------------
TASK: Final = "OPENAUTOGLM_TASK"  #: built-in task name ("digits", "text-lm")
TASK_SETTINGS: Final = "OPENAUTOGLM_TASK_SETTINGS"  #: JSON object, task-specific (dataset, model, ...)
PARAMS: Final = "OPENAUTOGLM_TRIAL_PARAMS"  #: JSON object: hyperparameter name -> value
EPOCHS: Final = "OPENAUTOGLM_EPOCHS"  #: int, maximum number of epochs
SEED: Final = "OPENAUTOGLM_SEED"  #: int, base seed of the trial
OBJECTIVE_METRICS: Final = "OPENAUTOGLM_OBJECTIVE_METRICS"  #: JSON list of {"metric","direction"}

# --- your own program under the trial supervisor (trial.command) ---------------------------
#: JSON list of strings: the program's argv (exec form, no shell). An item may hold
#: ``${trialParameters.NAME}`` placeholders; each is replaced inside that one item by the
#: parameter's value (str as is, bool "true"/"false", int, float as ``str(float)``, null "null"),
#: never split and never seen by a shell. An item naming a parameter that is absent from
#: ``OPENAUTOGLM_TRIAL_PARAMS`` (an inactive conditional parameter) is dropped whole:
#: ``--beta1=${trialParameters.beta1}`` disappears when beta1 is inactive. When set,
#: ``python -m openautoglm_trial`` supervises this program instead of running a built-in task.
COMMAND: Final = "OPENAUTOGLM_COMMAND"
#: A ``${trialParameters.NAME}`` placeholder (Katib's syntax), however malformed: group 1 is the
#: name, unchecked, so that a typo is reported by whoever reads it (the TuningJob model, the
#: supervisor, import-katib) rather than passed through as text.
PLACEHOLDER: Final = re.compile(r"\$\{trialParameters\.([^}]*)\}")
#: JSON object, how the supervisor collects the program's metrics:
#: {"kind": str,                 # a collector of supervisor.collectors.COLLECTORS: stdout, file, ...
#:  "filter": regex | null,      # stdout, text files: group 1 the name, group 2 the value
#:  "path": str | null,          # file: the file the program writes (may appear later)
#:  "format": "text" | "json",   # file: name=value lines, or one JSON object per line
#:  "port": int | null, "metricsPath": "/metrics",  # prometheus: the program's own endpoint
#:  "stepMetric": "epoch"}       # a metric giving the step of the values reported with it
COLLECTOR: Final = "OPENAUTOGLM_COLLECTOR"
#: JSON object: metric name -> "min" | "max" | "latest", how a curve becomes the final value.
#: Unset entries: an objective by its direction, an additional metric latest.
METRIC_STRATEGIES: Final = "OPENAUTOGLM_METRIC_STRATEGIES"
#: JSON list of metric names recorded besides the objectives (Katib's additionalMetricNames)
ADDITIONAL_METRICS: Final = "OPENAUTOGLM_ADDITIONAL_METRICS"
#: set by the supervisor for the program (push collector): the JSON-lines file that
#: ``openautoglm_trial.report()`` appends ``{"step": int, "metrics": {name: float}}`` to
PUSH_FILE: Final = "OPENAUTOGLM_PUSH_FILE"
DEFAULT_STEP_METRIC: Final = "epoch"
#: Katib's StdOut/File filter ``([\w|-]+)\s*=\s*((-?\d+)(\.\d+)?)`` widened: names may hold
#: ``.``, values may have a sign and an exponent (``lr=1e-3`` is read whole), and ``nan``/``inf``
#: are values, so a diverging ``loss=nan`` is seen. Group 1 is the name, group 2 the value.
DEFAULT_METRIC_FILTER: Final = (
    r"([\w|.-]+)\s*=\s*([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?"
    r"|\.\d+(?:[eE][-+]?\d+)?|nan|NaN|inf|Inf|-inf))"
)

# --- checkpoints (trial.checkpoint) ----------------------------------------------------------
#: The trial's checkpoint directory: the same for every rank and every run (retry, requeue) of one
#: trial, so that a run can resume where an earlier one stopped; unset when the job has no
#: ``trial.checkpoint``. Locally ``<job work dir>/checkpoints/trial-<N>``; in a pod the claim mounted
#: at :data:`CHECKPOINT_MOUNT_PATH` with ``subPath: <namespace>/<job>/trial-<N>`` (one directory per
#: trial, so trials never see each other's files and retention can remove one trial's whole).
CHECKPOINT_DIR: Final = "OPENAUTOGLM_CHECKPOINT_DIR"
#: where a pod mounts the checkpoint claim: outside the image's paths, so no user file is hidden
CHECKPOINT_MOUNT_PATH: Final = "/var/lib/openautoglm/checkpoint"
#: In ``trial.command``: replaced inside its one argv item by the checkpoint directory (as a
#: parameter's placeholder is); an item holding it is dropped whole when the job has no
#: checkpoint, so ``--checkpoint-dir=${trial.checkpointDir}`` disappears rather than passing "".
CHECKPOINT_PLACEHOLDER: Final = "${trial.checkpointDir}"
#: int, which run of the trial this is (0 first; +1 per retry or requeue). Informational (logs):
#: whether to resume is decided by what the checkpoint directory holds, never by this number, so a
#: run that died before its first checkpoint starts fresh whatever its number.
RUN: Final = "OPENAUTOGLM_TRIAL_RUN"

# --- early stopping inside the trial ----------------------------------------------------
#: JSON object: {"maxGradNorm": float|null, "patience": int|null, "minDelta": float,
#:  "divergenceCheck": bool}
TRIAL_STOPPING: Final = "OPENAUTOGLM_TRIAL_STOPPING"

# --- what the operator owns in a worker's environment ------------------------------------
#: A user's ``trial.env`` (and import-katib's output) may set no variable with these prefixes:
#: the operator sets them, and a user's value would change the trial's identity or placement.
RESERVED_ENV_PREFIXES: Final = ("OPENAUTOGLM_", "HOROVOD_")

# --- endpoints --------------------------------------------------------------------------
BIND_ADDRESS: Final = "OPENAUTOGLM_BIND_ADDRESS"  #: address the HTTP servers bind ("0.0.0.0" in a pod)
METRICS_PORT: Final = "OPENAUTOGLM_METRICS_PORT"  #: port of /metrics, /healthz, /readyz
TERMINATION_LOG: Final = "OPENAUTOGLM_TERMINATION_LOG"  #: path of the termination message file
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"
DEFAULT_METRICS_PORT: Final = 9090
DEFAULT_RENDEZVOUS_PORT: Final = 29400

# --- Horovod: exactly what horovodrun sets for a Gloo job (see horovod_env) -----------------
HOROVOD_RANK: Final = "HOROVOD_RANK"
HOROVOD_SIZE: Final = "HOROVOD_SIZE"
HOROVOD_LOCAL_RANK: Final = "HOROVOD_LOCAL_RANK"
HOROVOD_LOCAL_SIZE: Final = "HOROVOD_LOCAL_SIZE"
HOROVOD_CROSS_RANK: Final = "HOROVOD_CROSS_RANK"
HOROVOD_CROSS_SIZE: Final = "HOROVOD_CROSS_SIZE"
HOROVOD_HOSTNAME: Final = "HOROVOD_HOSTNAME"
HOROVOD_GLOO_RENDEZVOUS_ADDR: Final = "HOROVOD_GLOO_RENDEZVOUS_ADDR"
HOROVOD_GLOO_RENDEZVOUS_PORT: Final = "HOROVOD_GLOO_RENDEZVOUS_PORT"
HOROVOD_CONTROLLER: Final = "HOROVOD_CONTROLLER"
HOROVOD_CPU_OPERATIONS: Final = "HOROVOD_CPU_OPERATIONS"
HOROVOD_ENV: Final = (
    HOROVOD_RANK,
    HOROVOD_SIZE,
    HOROVOD_LOCAL_RANK,
    HOROVOD_LOCAL_SIZE,
    HOROVOD_CROSS_RANK,
    HOROVOD_CROSS_SIZE,
    HOROVOD_HOSTNAME,
    HOROVOD_GLOO_RENDEZVOUS_ADDR,
    HOROVOD_GLOO_RENDEZVOUS_PORT,
    HOROVOD_CONTROLLER,
    HOROVOD_CPU_OPERATIONS,
)
#: rank 0 hosts the rendezvous; it needs the host names of all ranks to build the plan.
WORKER_HOSTS: Final = "OPENAUTOGLM_WORKER_HOSTS"  #: comma-separated HOROVOD_HOSTNAME of every rank

# --- the launcher: which environment every rank's program gets (trial.launcher) ---------------
#: "horovod" (the HOROVOD_* variables above; the default, also when unset) or "torchrun" (the
#: variables below and no HOROVOD_* at all)
LAUNCHER: Final = "OPENAUTOGLM_LAUNCHER"
LAUNCHER_HOROVOD: Final = "horovod"
LAUNCHER_TORCHRUN: Final = "torchrun"
LAUNCHERS: Final = (LAUNCHER_HOROVOD, LAUNCHER_TORCHRUN)

# --- torchrun: exactly what torchrun sets for a plain script (see torchrun_env) ---------------
MASTER_ADDR: Final = "MASTER_ADDR"
MASTER_PORT: Final = "MASTER_PORT"
RANK: Final = "RANK"
WORLD_SIZE: Final = "WORLD_SIZE"
LOCAL_RANK: Final = "LOCAL_RANK"
LOCAL_WORLD_SIZE: Final = "LOCAL_WORLD_SIZE"
GROUP_RANK: Final = "GROUP_RANK"
GROUP_WORLD_SIZE: Final = "GROUP_WORLD_SIZE"
ROLE_RANK: Final = "ROLE_RANK"
ROLE_WORLD_SIZE: Final = "ROLE_WORLD_SIZE"
ROLE_NAME: Final = "ROLE_NAME"
TORCHRUN_ENV: Final = (
    MASTER_ADDR,
    MASTER_PORT,
    RANK,
    WORLD_SIZE,
    LOCAL_RANK,
    LOCAL_WORLD_SIZE,
    GROUP_RANK,
    GROUP_WORLD_SIZE,
    ROLE_RANK,
    ROLE_WORLD_SIZE,
    ROLE_NAME,
)
#: torchrun also sets these for its elastic agent; without an agent they would mislead
#: ``init_process_group()`` (``TORCHELASTIC_USE_AGENT_STORE`` makes rank 0 a store client too),
#: so the supervisor never passes them to a program it runs under torchrun.
TORCHELASTIC_PREFIX: Final = "TORCHELASTIC_"
#: every Horovod variable's prefix: under torchrun the program gets none
HOROVOD_PREFIX: Final = "HOROVOD_"
#: MASTER_PORT of a trial: MASTER_PORT_BASE + (a hash of the trial) % MASTER_PORT_SPAN, see
#: master_port. Below Linux's ephemeral ports (32768-60999) and the Horovod rendezvous (29400).
MASTER_PORT_BASE: Final = 20000
MASTER_PORT_SPAN: Final = 9000

# --- runtime knobs added by the trial runtime (all optional) ------------------------------
#: cache of trained tokenizers (default ~/.cache/openautoglm)
CACHE_DIR: Final = "OPENAUTOGLM_CACHE_DIR"
TORCH_THREADS: Final = "OPENAUTOGLM_TORCH_THREADS"  #: torch intra-op threads per worker (default 1)
#: test/debug hook: each rank saves its initial and final flattened parameters (.npz) here;
#: ``{rank}`` in the path is replaced by the worker's rank.
SAVE_PARAMS_TO: Final = "OPENAUTOGLM_SAVE_PARAMS_TO"
#: seconds without a training step before /healthz reports the loop as stuck (default 300)
STALL_SECONDS: Final = "OPENAUTOGLM_STALL_SECONDS"
#: seconds a worker waits for the other ranks at the rendezvous before failing (default 600)
RENDEZVOUS_TIMEOUT: Final = "OPENAUTOGLM_RENDEZVOUS_TIMEOUT"
#: network interface Gloo binds ("lo" locally; optional)
HOROVOD_GLOO_IFACE: Final = "HOROVOD_GLOO_IFACE"
DEFAULT_EPOCHS: Final = 10
DEFAULT_MAX_GRAD_NORM: Final = 1e4

# --- metrics exported on /metrics (prometheus text format) ---------------------------------
#: gauge with label ``metric``: latest value of every metric the task reports
#: (``accuracy``, ``loss``, ``val_loss`` ...) — the objective is read from here.
METRIC_GAUGE: Final = "openautoglm_trial_metric"
EPOCH_GAUGE: Final = "openautoglm_trial_epoch"  #: epochs completed (the pruning step)
STEP_GAUGE: Final = "openautoglm_trial_step"  #: optimizer steps done
LR_GAUGE: Final = "openautoglm_trial_learning_rate"
GRAD_NORM_GAUGE: Final = "openautoglm_trial_grad_norm"
LOSS_GAUGE: Final = "openautoglm_trial_train_loss"

# --- the termination message (JSON, at most 4096 bytes as in Kubernetes) ------------------
#: {"status": "completed" | "stopped" | "failed",
#:  "reason": str | null,           # why it stopped early / failed
#:  "metrics": {name: final value},  # final value of each metric (per objective strategy: see task)
#:  "best": {objective metric: best value over the epochs, by its direction},
#:  "history": {name: [v_epoch1, ...]} (oldest entries dropped to fit), "epochs": int, "rank": int,
#:  "seconds": float, "info": {task-specific facts, e.g. "tag", "samples_seen"}}
#: NaN/inf never appear: they are written as null.
STATUS_COMPLETED: Final = "completed"
STATUS_STOPPED: Final = "stopped"  # ended early by the trial itself (divergence); no valid value
#: SIGTERM (pruned or deleted trial): status "failed", this reason, exit code 143
REASON_TERMINATED: Final = "terminated"
STATUS_FAILED: Final = "failed"
TERMINATION_MESSAGE_LIMIT: Final = 4096

# --- the worker's exit code ---------------------------------------------------------------
EXIT_COMPLETED: Final = 0  #: status "completed" or "stopped"
EXIT_FAILED: Final = 1  #: status "failed"
EXIT_TERMINATED: Final = 128 + 15  #: SIGTERM (pruned or deleted trial), as after a default SIGTERM

# --- what the engine stores ---------------------------------------------------------------
#: The largest step (epoch) a study holds: Optuna keys intermediate values by the step, a
#: PostgreSQL ``integer`` in an RDB storage. Every step and epoch read from a trial (its
#: /metrics, its termination message, its push reports) is clamped to 0..MAX_STEP.
MAX_STEP: Final = 2**31 - 1


def worker_address(job: str, trial: int, rank: int) -> str:
    """Deterministic per-worker loopback address used by the local backend and the test kubelet."""
    import zlib

    a = 16 + zlib.crc32(job.encode()) % 200
    return f"127.{a}.{rank % 256}.{trial % 254 + 1}"


def placeholders(text: str) -> list[str]:
    """The names of the ``${trialParameters.NAME}`` placeholders in ``text``, in order."""
    return PLACEHOLDER.findall(text)


def horovod_env(rank: int, hosts: Sequence[str], port: int = DEFAULT_RENDEZVOUS_PORT) -> dict[str, str]:
    """What horovodrun sets for one worker of a Gloo job: every worker its own host with one slot.

    Args:
        rank: the worker's rank.
        hosts: the ``HOROVOD_HOSTNAME`` of every rank, in rank order; rank 0 hosts the rendezvous.
        port: the port of rank 0's rendezvous server.

    Returns:
        Exactly the variables of :data:`HOROVOD_ENV`, as strings.
    """
    size = len(hosts)
    return {
        HOROVOD_RANK: str(rank),
        HOROVOD_SIZE: str(size),
        HOROVOD_LOCAL_RANK: "0",
        HOROVOD_LOCAL_SIZE: "1",
        HOROVOD_CROSS_RANK: str(rank),
        HOROVOD_CROSS_SIZE: str(size),
        HOROVOD_HOSTNAME: hosts[rank],
        HOROVOD_GLOO_RENDEZVOUS_ADDR: hosts[0],
        HOROVOD_GLOO_RENDEZVOUS_PORT: str(port),
        HOROVOD_CONTROLLER: "gloo",
        HOROVOD_CPU_OPERATIONS: "gloo",
    }


def torchrun_env(rank: int, hosts: Sequence[str], port: int) -> dict[str, str]:
    """What torchrun sets for one worker of a plain script, minus its elastic agent's
    ``TORCHELASTIC_*``: every worker its own node with one process, as :func:`horovod_env`.

    Args:
        rank: the worker's rank.
        hosts: the address of every rank, in rank order; rank 0's program hosts the TCPStore.
        port: MASTER_PORT, where rank 0's TCPStore listens (see :func:`master_port`).

    Returns:
        Exactly the variables of :data:`TORCHRUN_ENV`, as strings.
    """
    size = str(len(hosts))
    return {
        MASTER_ADDR: hosts[0],
        MASTER_PORT: str(port),
        RANK: str(rank),
        WORLD_SIZE: size,
        LOCAL_RANK: "0",
        LOCAL_WORLD_SIZE: "1",
        GROUP_RANK: str(rank),
        GROUP_WORLD_SIZE: size,
        ROLE_RANK: str(rank),
        ROLE_WORLD_SIZE: size,
        ROLE_NAME: "default",
    }


def master_port(job: str, namespace: str, number: int) -> int:
    """The MASTER_PORT of trial ``number`` of ``namespace/job``: the same for every rank and run.

    torch's TCPStore server binds the wildcard address whatever MASTER_ADDR says (torch 2.13:
    ``::``, else ``0.0.0.0``), so two trials sharing a network namespace (local runs, the test
    kubelet) would collide on one port although their ranks have addresses of their own; in a
    pod any port would do. Deterministic, so every rank computes the same port without asking.
    """
    import zlib

    return MASTER_PORT_BASE + zlib.crc32(f"{namespace}/{job}/{number}".encode()) % MASTER_PORT_SPAN


def encode_params(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, allow_nan=False)


def decode_json_env(env: Mapping[str, str], name: str, default: Any) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return json.loads(raw)

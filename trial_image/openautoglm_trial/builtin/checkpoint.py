"""A built-in task's checkpoint: saved by rank 0 after every epoch, read by every rank at start.

With ``OPENAUTOGLM_CHECKPOINT_DIR`` set (``trial.checkpoint``), a retried or requeued run of a
trial continues from the last epoch an earlier run finished instead of from epoch 0. One file,
``checkpoint.pt`` in that directory, holds what the next epoch needs: the model, the optimizer,
the LR schedule, the epoch and step counts, the metric history (so the final result holds the
whole curve), the patience state, and the trial's identity.

* Atomic: rank 0 writes ``checkpoint.pt.tmp`` in the same directory, fsyncs it, and renames it
  over ``checkpoint.pt`` (then fsyncs the directory): a run killed mid-save leaves the previous
  checkpoint whole, and the temporary file is simply written again next time.
* Same on every rank without a broadcast: every rank reads the file before its first training
  step, and rank 0 cannot save again before every rank has taken that step with it (each step is
  an allreduce), so all ranks read the same file. Rank 0's epoch is still broadcast once and
  compared, so a rank that saw another file (a stale network-filesystem cache) fails the trial
  with a clear reason rather than hanging in a collective.
* A checkpoint of another trial configuration (params, seed, task, epochs, world size differ: the
  directory was reused) is ignored, logged, and overwritten by this run's first save.
* Loaded with ``torch.load(weights_only=True)``: a file on a shared claim runs no code.
* The same file under either ``distributed``: the plain model's parameters and the optimizer's
  whole state. With ZeRO every rank first sends its share of the optimizer state to rank 0
  (``consolidate_state_dict(to=0)``, a collective), and on resume every rank reads the whole state
  and keeps its share (``ZeroRedundancyOptimizer.load_state_dict``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Final

import torch

from .. import contract
from ..environment import TrialSettings
from ..errors import TrialError
from ..watch import Patience

log = logging.getLogger(__name__)

FILE: Final = "checkpoint.pt"
#: bumped when the layout changes: an older file is then foreign, not misread
FORMAT: Final = 1


def identity(settings: TrialSettings, world_size: int) -> dict[str, Any]:
    """What makes two runs the same trial: a checkpoint of anything else is not resumed."""
    return {
        "format": FORMAT,
        "task": settings.task,
        "params": contract.encode_params(settings.params),
        "seed": settings.seed,
        "epochs": settings.epochs,
        "world_size": world_size,
    }


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The torch seed of one rank's epoch: dropout draws the same masks in an epoch whether the
    run started at epoch 1 or resumed just before it (and differ between ranks, as on separate
    GPUs)."""
    return (seed * 1_000_003 + rank * 10_007 + epoch) % 2**63


class Checkpoints:
    """The trial's checkpoint file, and what saving it cost."""

    def __init__(self, directory: Path | None, ident: dict[str, Any], rank: int) -> None:
        """Create the handle.

        Args:
            directory: the trial's checkpoint directory; None: checkpoints are off.
            ident: this run's :func:`identity`.
            rank: this worker's rank (only rank 0 saves).
        """
        self.directory = directory
        self.identity = ident
        self.rank = rank
        self.resumed_from = 0
        self.seconds = 0.0
        self.bytes = 0

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / FILE

    def load(self) -> dict[str, Any] | None:
        """This trial's latest checkpoint, or None (none, unreadable, or another trial's)."""
        path = self.path
        if path is None or not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 (any unreadable file: start fresh, say why)
            log.warning("ignoring checkpoint %s: cannot read it (%s); starting from epoch 1", path, exc)
            return None
        found = state.get("identity") if isinstance(state, dict) else None
        if found != self.identity:
            log.warning(
                "ignoring checkpoint %s of another trial configuration (%s); starting from epoch 1 and overwriting it",
                path,
                _difference(found, self.identity),
            )
            return None
        return state

    def resume(self, ranks: Any, model: Any, optimizer: Any, scheduler: Any, outcome: Any, patience: Patience) -> int:
        """Load the latest checkpoint into the loop's state on every rank: the model, optimizer,
        schedule, the outcome so far (a ``TrainingSummary``) and the patience.

        Args:
            ranks: the ranks' :class:`~.distributed.Distributed` (for one broadcast).

        Returns:
            The epoch it holds: the run goes on with the next; 0 without one.

        Raises:
            TrialError: the ranks found different checkpoints.
        """
        state = self.load()
        epoch = 0 if state is None else int(state["epoch"])
        root = ranks.broadcast_object(epoch, name="openautoglm.checkpoint_epoch")
        if root != epoch:
            raise TrialError(
                f"rank {self.rank} found the checkpoint of epoch {epoch} in {self.directory}, rank 0 "
                f"that of epoch {root}: every rank must see the same checkpoint directory"
            )
        if state is None:
            return 0
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        outcome.epochs = epoch
        outcome.steps = int(state["steps"])
        outcome.metrics = dict(state["metrics"])
        outcome.history = {name: list(values) for name, values in state["history"].items()}
        outcome.reason = state["reason"]
        patience.best = state["patience"]["best"]
        patience.epochs_without_improvement = int(state["patience"]["epochs_without_improvement"])
        self.resumed_from = epoch
        log.info("resuming from the checkpoint of epoch %d in %s", epoch, self.directory)
        return epoch

    def save(self, model: Any, optimizer: Any, scheduler: Any, outcome: Any, patience: Patience) -> None:
        """Rank 0: write the checkpoint of the epoch ``outcome`` ends with, atomically; other
        ranks only send their share of a sharded optimizer state (called on every rank).

        A failed save (full disk, read-only claim) is logged and training goes on: the epochs
        already trained are worth more than the next retry's head start.
        """
        path = self.path
        if path is None:
            return
        started = time.monotonic()
        if hasattr(optimizer, "consolidate_state_dict"):  # ZeroRedundancyOptimizer: a collective
            optimizer.consolidate_state_dict(to=0)
        if self.rank != 0:
            return
        epoch = outcome.epochs
        state = {
            "identity": self.identity,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "steps": outcome.steps,
            "metrics": dict(outcome.metrics),
            "history": {name: list(values) for name, values in outcome.history.items()},
            # set when patience ended the trial: a later run then has nothing left to train
            "reason": outcome.reason,
            "patience": {"best": patience.best, "epochs_without_improvement": patience.epochs_without_improvement},
        }
        try:
            size = _write_atomically(path, state)
        except OSError as exc:
            log.error("could not save the checkpoint of epoch %d to %s: %s", epoch, path, exc)
            return
        spent = time.monotonic() - started
        self.seconds += spent
        self.bytes = size
        log.info("checkpoint of epoch %d: %d bytes in %.3fs", epoch, size, spent)

    def info(self) -> dict[str, Any]:
        """Facts for the termination message: where it resumed from, what saving cost."""
        if self.directory is None:
            return {}
        info: dict[str, Any] = {"resumed_from_epoch": self.resumed_from}
        if self.rank == 0:
            info |= {"checkpoint_seconds": round(self.seconds, 4), "checkpoint_bytes": self.bytes}
        return info


def _write_atomically(path: Path, state: dict[str, Any]) -> int:
    """``torch.save`` to ``<path>.tmp``, fsync, rename over ``path``; returns the size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    os.replace(tmp, path)
    # The rename itself reaches the disk only with the directory's metadata.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def _difference(found: Any, expected: dict[str, Any]) -> str:
    """Which identity fields differ, for the log line."""
    if not isinstance(found, dict):
        return "no identity"
    keys = sorted(k for k in expected if found.get(k) != expected[k])
    return ", ".join(f"{k} {_short(found.get(k))} != {_short(expected[k])}" for k in keys)


def _short(value: Any) -> str:
    return json.dumps(value, default=str)[:80]

"""The distributed training loop shared by every task.

Horovod or torch.distributed (DDP, optionally ZeRO-1; see :mod:`.distributed`) keeps the workers
in lockstep: each step every rank allreduces its loss and its gradients, so the loss and gradient
norm the watch judges are identical everywhere and all ranks stop at the same step. Evaluation
sums are allreduced too, so every rank reports the same metrics.

With a checkpoint directory, rank 0 saves after every epoch and every rank resumes from the
latest (see :mod:`.checkpoint`). Each epoch reseeds torch from (seed, rank, epoch) and the
sampler shuffles by epoch, so a resumed run trains exactly as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from .. import contract
from ..environment import ObjectiveMetric, TrialSettings
from ..server import Health, TrialMetrics
from ..tasks import Task
from ..watch import DivergenceWatch, Patience
from .checkpoint import Checkpoints, epoch_seed, identity
from .distributed import Distributed
from .startup import Startup

log = logging.getLogger(__name__)


@dataclass
class TrainingSummary:
    """How training ended and what it measured."""

    status: str = contract.STATUS_COMPLETED
    reason: str | None = None
    #: metrics of the last completed epoch
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int = 0
    steps: int = 0
    info: dict[str, Any] = field(default_factory=dict)


class _ShardRecord:
    """Which training samples this rank saw: proof that the ranks trained on different shards."""

    def __init__(self) -> None:
        self.count = 0
        self._digest = hashlib.sha256()

    def add(self, indices: list[int]) -> None:
        self.count += len(indices)
        self._digest.update(np.asarray(indices, dtype=np.int64).tobytes())

    def replay(self, sampler: DistributedSampler, epochs: int, samples: int) -> None:
        """Record the first ``epochs`` whole epochs again (a resumed run): the sampler's order
        depends on the epoch only, so this is what the earlier run saw."""
        for epoch in range(1, epochs + 1):
            sampler.set_epoch(epoch)
            self.add(list(sampler)[:samples])

    def info(self) -> dict[str, Any]:
        return {"samples_seen": self.count, "samples_digest": self._digest.hexdigest()[:16]}


def train(
    task: Task,
    settings: TrialSettings,
    ranks: Distributed,
    objectives: tuple[ObjectiveMetric, ...],
    metrics: TrialMetrics,
    health: Health,
    on_epoch: Callable[[TrainingSummary], None] = lambda outcome: None,
    startup: Startup | None = None,
) -> TrainingSummary:
    """Train a task for up to ``settings.epochs`` epochs on this worker.

    Args:
        task: the task, with its data loaded.
        settings: the trial settings (epochs, seed, stopping, save_params_to).
        ranks: how the ranks train together (Horovod or DDP), joined.
        objectives: objective metrics; patience watches the first one.
        metrics: gauges to update.
        health: heartbeat of the loop.
        on_epoch: called with the outcome so far after each epoch.
        startup: start-up phases so far; "model" and "first_step" are marked here and the
            whole breakdown lands in ``outcome.info``.

    Returns:
        The outcome: completed (all epochs or patience), or stopped (diverged).
    """
    rank, size, device = ranks.rank, ranks.size, ranks.device
    # Same seed everywhere for the model: identical initial weights even before the broadcast.
    torch.manual_seed(settings.seed)
    # ``model`` keeps the plain parameters (evaluation, checkpoints, saved parameters);
    # ``trainer`` is what the steps run through (a DDP wrapper, or the model itself).
    model = task.build_model().to(device)
    trainer, optimizer = ranks.wrap(model, task.build_optimizer(model))
    startup = startup or Startup()
    startup.mark("model")
    initial = _flat_parameters(model) if settings.save_params_to else None

    sampler = DistributedSampler(task.train_dataset, num_replicas=size, rank=rank, shuffle=True, seed=settings.seed)
    loader = DataLoader(task.train_dataset, batch_size=task.batch_size, sampler=sampler)
    steps_per_epoch = len(loader) if task.steps_per_epoch is None else min(len(loader), task.steps_per_epoch)
    scheduler = task.build_scheduler(optimizer, steps_per_epoch * settings.epochs)
    val_loader = DataLoader(
        Subset(task.val_dataset, range(rank, len(task.val_dataset), size)), batch_size=task.eval_batch_size
    )

    watch = DivergenceWatch(settings.stopping)
    patience = Patience(objectives[0], settings.stopping.patience, settings.stopping.min_delta)
    shard = _ShardRecord()
    outcome = TrainingSummary()
    checkpoints = Checkpoints(settings.checkpoint_dir, identity(settings, size), rank)
    start = checkpoints.resume(ranks, model, optimizer, scheduler, outcome, patience)
    shard.replay(sampler, start, steps_per_epoch * task.batch_size)
    log.info(
        "training %s: %d epoch(s) of %d step(s), batch %d per worker, %d worker(s) (%s on %s)%s",
        settings.task,
        settings.epochs,
        steps_per_epoch,
        task.batch_size,
        size,
        ranks.kind,
        device,
        f", from epoch {start + 1} (run {settings.run})" if start else "",
    )
    health.start_training()
    # A checkpoint of a finished trial (it stopped early or did every epoch) leaves nothing to do.
    for epoch in range(start + 1, settings.epochs + 1 if outcome.reason is None else 0):
        started = time.monotonic()
        # Per rank and epoch: dropout masks differ between workers, as with separate GPUs, and
        # do not depend on the epoch this run started at.
        torch.manual_seed(epoch_seed(settings.seed, rank, epoch))
        sampler.set_epoch(epoch)
        trainer.train()
        losses: list[float] = []
        for batch in _take(loader, steps_per_epoch):
            health.beat()
            step = outcome.steps + 1
            optimizer.zero_grad()
            loss = task.training_loss(trainer, _on(device, batch))
            # Average the loss while the gradients are reduced (one round trip fewer per step)
            # and decide on averages, so every rank stops at the same step.
            mean_of_loss = ranks.mean_async(loss.detach(), name="openautoglm.train_loss")
            loss.backward()
            # Finish the gradient allreduce now to judge the averaged gradient before stepping.
            ranks.finish_gradients(optimizer)
            mean_loss = mean_of_loss()
            grad_norm = _grad_norm(model)
            outcome.reason = watch.check_loss(mean_loss, epoch, step) or watch.check_grad_norm(grad_norm, epoch, step)
            if outcome.reason is not None:
                outcome.status = contract.STATUS_STOPPED
                break
            ranks.step(optimizer)
            if scheduler is not None:
                scheduler.step()
            startup.finish("first_step")
            outcome.steps = step
            losses.append(mean_loss)
            metrics.report_step(step, optimizer.param_groups[0]["lr"], grad_norm, mean_loss)
        shard.add(list(sampler)[: len(losses) * task.batch_size])
        if outcome.status == contract.STATUS_STOPPED:
            log.warning("%s", outcome.reason)
            break

        epoch_metrics = _evaluate(task, model, val_loader, ranks, health)
        epoch_metrics["train_loss"] = float(np.mean(losses)) if losses else math.nan
        outcome.epochs = epoch
        outcome.metrics = epoch_metrics
        for name, value in epoch_metrics.items():
            outcome.history.setdefault(name, []).append(value)
        metrics.report_epoch(epoch, epoch_metrics)
        log.info(
            "epoch %d/%d (%.2fs): %s",
            epoch,
            settings.epochs,
            time.monotonic() - started,
            ", ".join(f"{k}={v:.4g}" for k, v in sorted(epoch_metrics.items())),
        )
        outcome.reason = patience.update(epoch_metrics.get(objectives[0].metric, math.nan))
        checkpoints.save(model, optimizer, scheduler, outcome, patience)
        outcome.info = _info(task, shard, startup, checkpoints, ranks, optimizer)
        on_epoch(outcome)
        if outcome.reason is not None:
            log.info("%s", outcome.reason)
            break
    health.stop_training()
    outcome.info = _info(task, shard, startup, checkpoints, ranks, optimizer)
    if settings.save_params_to:
        _save_parameters(settings.save_params_to.replace("{rank}", str(rank)), initial, _flat_parameters(model))
    return outcome


def _info(
    task: Task, shard: _ShardRecord, startup: Startup, checkpoints: Checkpoints, ranks: Distributed, optimizer: Any
) -> dict[str, Any]:
    return {**task.info(), **shard.info(), **startup.info(), **checkpoints.info(), **ranks.info(optimizer)}


def _on(device: torch.device, batch: Any) -> Any:
    """A batch on the training device (tensors, and tuples, lists or dicts of them); on the CPU
    the batch as it is."""
    if device.type == "cpu":
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_on(device, item) for item in batch)
    if isinstance(batch, dict):
        return {key: _on(device, value) for key, value in batch.items()}
    return batch


def _take(loader: DataLoader, steps: int):
    for index, batch in enumerate(loader):
        if index >= steps:
            return
        yield batch


def _grad_norm(model: torch.nn.Module) -> float:
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return torch.stack(norms).norm().item() if norms else 0.0


@torch.no_grad()
def _evaluate(
    task: Task, model: torch.nn.Module, loader: DataLoader, ranks: Distributed, health: Health
) -> dict[str, float]:
    # The plain model, never the DDP wrapper: the ranks see different numbers of batches here,
    # and no collective may run per batch.
    model.eval()
    totals = dict.fromkeys(task.sum_keys, 0.0)
    for batch in loader:
        health.beat()
        for key, value in task.evaluation_sums(model, _on(ranks.device, batch)).items():
            totals[key] += float(value)
    # One allreduce of a fixed-order vector: exact global sums, identical on every rank.
    vector = torch.tensor([totals[key] for key in task.sum_keys], dtype=torch.float64)
    summed = ranks.sum(vector, name="openautoglm.eval_sums")
    return task.metrics_from_sums(dict(zip(task.sum_keys, summed.tolist(), strict=True)))


def _flat_parameters(model: torch.nn.Module) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().cpu().numpy().copy()


def _save_parameters(path: str, initial: np.ndarray | None, final: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.savez(f, initial=initial if initial is not None else np.array([]), final=final)
    log.info("saved initial and final parameters to %s", path)

"""Decisions that end a trial early: divergence (every step) and patience (every epoch).

Every input here is already averaged over the workers (allreduced), so every rank reaches the
same decision at the same step without talking about it.
"""

from __future__ import annotations

import math

from .environment import ObjectiveMetric, Stopping


class DivergenceWatch:
    """Stops a trial whose loss is not finite or whose gradient norm explodes."""

    def __init__(self, stopping: Stopping) -> None:
        """Create the watch.

        Args:
            stopping: the trial's stopping settings (maxGradNorm, divergenceCheck).
        """
        self.enabled = stopping.divergence_check
        self.max_grad_norm = stopping.max_grad_norm

    def check_loss(self, loss: float, epoch: int, step: int) -> str | None:
        """The reason to stop if the (averaged) training loss is NaN or infinite, else None."""
        if self.enabled and not math.isfinite(loss):
            return f"diverged: loss is {_word(loss)} at epoch {epoch} step {step}"
        return None

    def check_grad_norm(self, norm: float, epoch: int, step: int) -> str | None:
        """The reason to stop if the averaged gradient's norm is not finite or too large."""
        if not self.enabled:
            return None
        if not math.isfinite(norm):
            return f"diverged: gradient norm is {_word(norm)} at epoch {epoch} step {step}"
        if self.max_grad_norm is not None and norm > self.max_grad_norm:
            return (
                f"diverged: gradient norm {norm:.4g} exceeds maxGradNorm "
                f"{self.max_grad_norm:g} at epoch {epoch} step {step}"
            )
        return None


class Patience:
    """Patience-based early stopping on the first objective metric."""

    def __init__(self, objective: ObjectiveMetric, patience: int | None, min_delta: float = 0.0) -> None:
        """Create the tracker.

        Args:
            objective: the metric watched and its direction.
            patience: epochs without improvement before stopping; None never stops.
            min_delta: an improvement must be larger than this.
        """
        self.objective = objective
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.epochs_without_improvement = 0

    def update(self, value: float) -> str | None:
        """Record an epoch's value; returns the reason to stop, or None to go on."""
        if math.isfinite(value) and (self.best is None or self.objective.better(value, self.best, self.min_delta)):
            self.best = value
            self.epochs_without_improvement = 0
            return None
        self.epochs_without_improvement += 1
        if self.patience is not None and self.epochs_without_improvement >= self.patience:
            return (
                f"early stopping: no improvement in {self.epochs_without_improvement} epochs ({self.objective.metric})"
            )
        return None


def best_values(history: dict[str, list[float]], objectives: tuple[ObjectiveMetric, ...]) -> dict[str, float]:
    """Best finite value of each objective metric over the epochs, by its direction."""
    best: dict[str, float] = {}
    for objective in objectives:
        values = [v for v in history.get(objective.metric, []) if math.isfinite(v)]
        if values:
            best[objective.metric] = (max if objective.direction == "maximize" else min)(values)
    return best


def _word(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")

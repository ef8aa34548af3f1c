"""Built-in pruners, thin wrappers over Optuna's with defaults for a resource counted in epochs."""

from __future__ import annotations

from typing import Any

import optuna

from openautoglm.pruners._registry import register
from openautoglm.spec import TuningJobSpec


@register("none", settings=set(), description="never prune")
def _none(settings: dict[str, Any], spec: TuningJobSpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


@register(
    "median",
    settings=optuna.pruners.MedianPruner,
    description="prune when below the median of earlier trials at the same epoch",
)
def _median(settings: dict[str, Any], spec: TuningJobSpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(**settings)


@register(
    "percentile",
    settings=optuna.pruners.PercentilePruner,
    description="prune when outside the given percentile of earlier trials",
)
def _percentile(settings: dict[str, Any], spec: TuningJobSpec) -> optuna.pruners.BasePruner:
    settings.setdefault("percentile", 25.0)
    return optuna.pruners.PercentilePruner(**settings)


@register(
    "successive-halving",
    settings=optuna.pruners.SuccessiveHalvingPruner,
    description="asynchronous successive halving (ASHA)",
)
def _sha(settings: dict[str, Any], spec: TuningJobSpec) -> optuna.pruners.BasePruner:
    # 'auto' needs finished trials to guess the resource; one epoch is the natural rung.
    settings.setdefault("min_resource", 1)
    return optuna.pruners.SuccessiveHalvingPruner(**settings)


@register(
    "hyperband", settings=optuna.pruners.HyperbandPruner, description="Hyperband: several successive-halving brackets"
)
def _hyperband(settings: dict[str, Any], spec: TuningJobSpec) -> optuna.pruners.BasePruner:
    settings.setdefault("min_resource", 1)
    # The resource is epochs, known from the trial template; 'auto' would wait for a finished trial.
    settings.setdefault("max_resource", spec.trial.epochs)
    # Optuna checks reduction_factor lazily: 1 would divide by zero at the first prune.
    rf = settings.get("reduction_factor", 3)
    if isinstance(rf, bool) or not isinstance(rf, (int, float)) or rf < 2:
        raise ValueError(f"reduction_factor must be a number >= 2, got {rf!r}")
    return optuna.pruners.HyperbandPruner(**settings)


@register("threshold", settings=optuna.pruners.ThresholdPruner, description="prune when the value crosses lower/upper")
def _threshold(settings: dict[str, Any], spec: TuningJobSpec) -> optuna.pruners.BasePruner:
    if "lower" not in settings and "upper" not in settings:
        raise ValueError("give lower and/or upper")
    return optuna.pruners.ThresholdPruner(**settings)

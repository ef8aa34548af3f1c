"""The search space: from TuningJob parameters to Optuna suggestions.

Sampling is define-by-run so conditional parameters (``when``) are only suggested when
their condition holds; samplers that model the joint space (TPE with ``group``, CMA-ES,
GP) then see the conditional structure instead of inactive values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import optuna

from openautoglm.spec import Parameter, TuningJobSpec


def is_active(p: Parameter, values: dict[str, Any]) -> bool:
    for ref, wanted in (p.when or {}).items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if ref not in values or values[ref] not in allowed:
            return False
    return True


#: What a ``value_of`` returns for a parameter that gets no value (not sampled).
_NONE: Final = object()


def _walk(spec: TuningJobSpec, value_of: Callable[[Parameter], Any]) -> dict[str, Any]:
    """The parameters' values in spec order: a fixed one its value, a sampled one ``value_of(p)``;
    a parameter whose ``when`` does not hold over the values before it gets none. Suggesting and
    rebuilding a trial's parameters must agree on this walk, so there is one."""
    values: dict[str, Any] = {}
    for p in spec.parameters:
        if is_active(p, values):
            value = p.value if p.type == "fixed" else value_of(p)
            if value is not _NONE:
                values[p.name] = value
    return values


def suggest(trial: optuna.Trial, spec: TuningJobSpec) -> dict[str, Any]:
    """Suggest every active parameter of ``spec`` on ``trial``; return all trial params."""
    return _walk(spec, lambda p: _suggest(trial, p))


def _suggest(trial: optuna.Trial, p: Parameter) -> Any:
    if p.type == "float":
        low, high = p.bounds
        return trial.suggest_float(p.name, low, high, log=p.log, step=p.step)
    if p.type == "int":
        low, high = p.bounds
        return trial.suggest_int(p.name, int(low), int(high), log=p.log, step=int(p.step or 1))
    return trial.suggest_categorical(p.name, p.choices or [])


def trial_params(spec: TuningJobSpec, sampled: dict[str, Any]) -> dict[str, Any]:
    """What a worker receives: sampled values plus active fixed values, in spec order."""
    return _walk(spec, lambda p: sampled.get(p.name, _NONE))


def default_params(spec: TuningJobSpec, defaults: dict[str, Any]) -> dict[str, Any]:
    """The sampled parameters of ``spec`` set to ``defaults`` (a task's default configuration),
    as a trial to enqueue: a default outside the parameter's range or choices, or off its step,
    is left out (the sampler picks that one), as are parameters whose condition does not hold."""
    admitted = {
        p.name: defaults[p.name]
        for p in spec.parameters
        if p.type != "fixed" and p.name in defaults and _admits(p, defaults[p.name])
    }
    return {k: v for k, v in trial_params(spec, admitted).items() if k in admitted}


def _admits(p: Parameter, value: Any) -> bool:
    if p.type == "categorical":
        return value in (p.choices or [])
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if p.type == "int" and not float(value).is_integer():
        return False
    low, high = p.bounds
    if not low <= value <= high:
        return False
    if p.step:
        steps = (value - low) / p.step
        return math.isclose(steps, round(steps), abs_tol=1e-9)
    return True


#: More grid values than this for one parameter count as this many (any grid that large is refused).
_MANY: Final = 2**62


def _stepped(p: Parameter) -> int:
    """How many values a stepped range has, counted (a step of 1e-6 over [0, 500] has 500 million)."""
    low, high = p.bounds
    step = p.step or 1  # only an int range is counted without a step
    if p.type == "int":
        return (int(high) - int(low)) // int(step) + 1
    return int(math.floor(min((high - low) / step, _MANY) + 1e-9)) + 1


def grid_values(p: Parameter, points: int) -> list[Any] | None:
    """The values a grid search tries for one parameter (``None`` for fixed ones). Check
    :func:`grid_size` first: a fine step over a wide range has more values than memory holds."""
    if p.type == "categorical":
        return list(p.choices or [])
    if p.type == "fixed":
        return None
    return _numeric_grid(p, points)


def _numeric_grid(p: Parameter, points: int) -> list[Any]:
    low, high = (float(v) for v in p.bounds)
    if p.type == "int":
        if _stepped(p) > points and not p.step:
            raw = np.geomspace(low, high, points) if p.log else np.linspace(low, high, points)
            return sorted({int(round(v)) for v in raw})
        return list(range(int(low), int(high) + 1, int(p.step or 1)))
    if p.step:
        return [round(low + i * p.step, 12) for i in range(_stepped(p))]
    raw = np.geomspace(low, high, points) if p.log else np.linspace(low, high, points)
    return [float(v) for v in raw]


def grid_count(p: Parameter, points: int) -> int | None:
    """``len(grid_values(p, points))`` without listing them (``None`` for fixed parameters)."""
    if p.type == "categorical":
        return len(p.choices or [])
    if p.type == "fixed":
        return None
    if p.step or (p.type == "int" and _stepped(p) <= points):
        return _stepped(p)
    return len(_numeric_grid(p, points)) if p.type == "int" else points


def grid_size(spec: TuningJobSpec, points: int) -> int:
    size = 1
    for p in spec.parameters:
        n = grid_count(p, points)
        if n is not None:
            size *= n
    return size

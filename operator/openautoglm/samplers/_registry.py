from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import optuna

from openautoglm.spec import TuningJobSpec, sampler_name
from openautoglm_trial.registry import Registry, settings_problems

#: (settings, seed, spec) -> sampler. ``settings`` are the user's, already checked.
SamplerFactory = Callable[[dict[str, Any], "int | None", TuningJobSpec], optuna.samplers.BaseSampler]


@dataclasses.dataclass(frozen=True)
class SamplerEntry:
    name: str
    factory: SamplerFactory
    #: Keyword arguments a user may set in ``spec.algorithm.settings``.
    settings: frozenset[str]
    multi_objective: bool
    description: str
    #: The class whose keyword arguments the settings are (for type checks), if any.
    target: Callable | None = None


SAMPLERS: Registry[SamplerEntry] = Registry("sampler")


def register(name: str, *, settings: set[str] | Callable, multi_objective: bool, description: str):
    """Decorator registering a sampler factory. ``settings`` may be a class whose keyword
    arguments (minus those the engine sets) are the allowed settings."""

    def deco(factory: SamplerFactory) -> SamplerFactory:
        allowed = settings if isinstance(settings, set) else _kwargs_of(settings)
        target = None if isinstance(settings, set) else settings
        SAMPLERS.add(name, SamplerEntry(name, factory, frozenset(allowed), multi_objective, description, target))
        return factory

    return deco


#: Keyword arguments that are Python objects, or that the engine owns.
_NOT_USER_SETTINGS = {
    "seed",
    "search_space",
    "constraints_func",
    "independent_sampler",
    "source_trials",
    "after_trial_strategy",
    "elite_population_selection_strategy",
    "child_generation_strategy",
    "crossover",
    "gamma",
    "weights",
    "x0",
    "warn_independent_sampling",
    "warn_asynchronous_seeding",
}  # deprecated / noise


def _kwargs_of(cls: Callable) -> set[str]:
    return {n for n in inspect.signature(cls).parameters if n not in _NOT_USER_SETTINGS}


def build_sampler(spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    entry = SAMPLERS[sampler_name(spec)]
    with warnings.catch_warnings():
        # Optuna flags some samplers as experimental; the registry is our promise, not theirs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return entry.factory(dict(spec.algorithm.settings), spec.algorithm.seed, spec)


def check(spec: TuningJobSpec) -> list[tuple[str, str]]:
    """Problems with the sampler choice and its settings, as (field path, message)."""
    name = sampler_name(spec)
    if name not in SAMPLERS:
        return [("sampler", SAMPLERS.unknown(name))]
    entry = SAMPLERS[name]
    problems = settings_problems("sampler", name, entry.settings, entry.target, spec.algorithm.settings)
    if spec.objective.is_multi and not entry.multi_objective:
        multi = sorted(n for n, e in SAMPLERS.items() if e.multi_objective)
        problems.append(("sampler", f"{name} handles a single objective; with several use one of {multi}"))
    if problems:
        return problems
    try:
        build_sampler(spec)
    except ImportError as err:
        problems.append(("sampler", f"cannot be used here: {err}"))
    except (TypeError, ValueError) as err:
        problems.append(("settings", f"rejected by the {name} sampler: {err}"))
    return problems

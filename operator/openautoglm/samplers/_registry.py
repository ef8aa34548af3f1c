"""The sampler family: ``spec.algorithm.sampler`` name -> Optuna sampler factory, on the one
plugin scaffold (:mod:`openautoglm_trial.registry`)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import optuna

from openautoglm.spec import TuningJobSpec, sampler_name
from openautoglm_trial.registry import Entry, Problem, Registry

#: (settings, seed, spec) -> sampler. ``settings`` are the user's, already checked.
SamplerFactory = Callable[[dict[str, Any], "int | None", TuningJobSpec], optuna.samplers.BaseSampler]


@dataclasses.dataclass(frozen=True)
class SamplerEntry(Entry[SamplerFactory]):
    #: Whether it handles several objectives (the others are refused for a multi-objective job).
    multi_objective: bool = False


#: Keyword arguments of Optuna's sampler classes that are Python objects, that the engine owns,
#: or that are deprecated / noise: no user settings.
ENGINE_OWNED = frozenset(
    {
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
    }
)

SAMPLERS: Registry[SamplerEntry] = Registry("sampler", SamplerEntry, engine_owned=ENGINE_OWNED)


def register(
    name: str, *, settings: set[str] | Callable[..., Any], multi_objective: bool, description: str
) -> Callable[[SamplerFactory], SamplerFactory]:
    """Decorator registering a sampler factory. ``settings`` may be a class whose keyword
    arguments (minus those the engine sets) are the allowed settings."""
    return SAMPLERS.register(name, settings=settings, description=description, multi_objective=multi_objective)


def build_sampler(spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    entry = SAMPLERS[sampler_name(spec)]
    with warnings.catch_warnings():
        # Optuna flags some samplers as experimental; the registry is our promise, not theirs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return entry.factory(dict(spec.algorithm.settings), spec.algorithm.seed, spec)


def check(spec: TuningJobSpec) -> list[Problem]:
    """Problems with the sampler choice and its settings, as (field path, message)."""
    name = sampler_name(spec)

    def fits(entry: SamplerEntry) -> list[Problem]:
        if spec.objective.is_multi and not entry.multi_objective:
            multi = sorted(n for n, e in SAMPLERS.items() if e.multi_objective)
            return [("sampler", f"{name} handles a single objective; with several use one of {multi}")]
        return []

    return SAMPLERS.check(name, spec.algorithm.settings, lambda: build_sampler(spec), fits=fits)

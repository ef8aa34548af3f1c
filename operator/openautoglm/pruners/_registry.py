"""The pruner family: ``spec.earlyStopping.pruner`` name -> Optuna pruner factory, on the one
plugin scaffold (:mod:`openautoglm_trial.registry`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from openautoglm.spec import TuningJobSpec
from openautoglm_trial.registry import Entry, Problem, Registry

#: (settings, spec) -> pruner. ``settings`` are the user's, already checked.
PrunerFactory = Callable[[dict[str, Any], TuningJobSpec], optuna.pruners.BasePruner]
PrunerEntry = Entry[PrunerFactory]

#: The engine wraps no pruner in another: ``wrapped_pruner`` (PatientPruner's) is no user setting.
PRUNERS: Registry[PrunerEntry] = Registry("pruner", engine_owned={"wrapped_pruner"})


def register(
    name: str, *, settings: set[str] | Callable[..., Any], description: str
) -> Callable[[PrunerFactory], PrunerFactory]:
    """Decorator registering a pruner factory. ``settings`` may be a class whose keyword
    arguments are the allowed settings."""
    return PRUNERS.register(name, settings=settings, description=description)


def build_pruner(spec: TuningJobSpec) -> optuna.pruners.BasePruner:
    entry = PRUNERS[spec.early_stopping.pruner]
    return entry.factory(dict(spec.early_stopping.settings), spec)


def check(spec: TuningJobSpec) -> list[Problem]:
    """Problems with the pruner choice and its settings, as (field path, message)."""
    return PRUNERS.check(spec.early_stopping.pruner, spec.early_stopping.settings, lambda: build_pruner(spec))

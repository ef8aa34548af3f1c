"""The few places the engine needs more than Optuna's public API, wrapped in one module.

The engine writes to trials it did not ``ask`` in this process (after a restart, or from
another pass), which Optuna's public API offers only through a live ``Trial``; and it
needs a grid's size. If an Optuna release moves these, this is the file to change.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial


def set_trial_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Set a user attribute of a stored trial (running or, for the engine's own records, finished)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def set_trial_attrs(study: optuna.Study, trial: FrozenTrial, attrs: dict[str, Any]) -> None:
    """Set several user attributes, in the order given: the one that commits a change goes last."""
    for key, value in attrs.items():
        set_trial_attr(study, trial, key, value)


def set_intermediate(study: optuna.Study, trial: FrozenTrial, step: int, value: float) -> None:
    """Record an intermediate value without the pruner's side effects (filling a curve)."""
    study._storage.set_trial_intermediate_value(trial._trial_id, step, value)


def live_trial(study: optuna.Study, trial: FrozenTrial) -> optuna.trial.Trial:
    """A ``Trial`` handle on a stored running trial, to report, prune or finish its sampling."""
    return optuna.trial.Trial(study, trial._trial_id)


def grid_size(sampler: optuna.samplers.BaseSampler) -> int | None:
    """Number of points of a GridSampler (None for other samplers)."""
    if isinstance(sampler, optuna.samplers.GridSampler):
        return len(sampler._all_grids)
    return None


def reread(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial:
    """The stored trial as it is now (one trial read: O(1) in a journal, one query in a database)."""
    return study._storage.get_trial(trial._trial_id)


def frozen(study: optuna.Study, trial: optuna.trial.Trial) -> FrozenTrial:
    """The stored state of a trial this process holds a live handle on (just asked)."""
    return study._storage.get_trial(trial._trial_id)


def trials_from(study: optuna.Study, number: int) -> list[FrozenTrial]:
    """The trials numbered ``number`` and up (those created since a reader last looked), without
    reading the others."""
    out: list[FrozenTrial] = []
    while True:
        try:
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number + len(out))
        except KeyError:
            return out
        out.append(study._storage.get_trial(trial_id))

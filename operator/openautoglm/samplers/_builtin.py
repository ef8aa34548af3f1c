"""Built-in samplers, thin wrappers over Optuna's with defaults suited to small budgets."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any, Final

import optuna
from optuna.trial import FrozenTrial, TrialState

from openautoglm.samplers._auto import GP_TRIALS, AutoSampler, gp_available
from openautoglm.samplers._registry import register
from openautoglm.space import grid_size, grid_values
from openautoglm.spec import TuningJobSpec

#: The most points a grid may have (and so its ``points`` setting).
GRID_LIMIT: Final = 1_000_000


def _require(sampler: str, *modules: str) -> None:
    # Optuna imports these lazily: without this check a job would validate, then crash at its first ask.
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"the {sampler} sampler needs the Python package(s) {missing}, which are not installed")


def _startup(spec: TuningJobSpec, settings: dict[str, Any], default: int = 10) -> dict[str, Any]:
    # Optuna's fixed 10 random start-up trials would be most of a 16-trial budget.
    if "n_startup_trials" not in settings:
        settings["n_startup_trials"] = min(default, max(2, spec.budget.max_trials // 4))
    return settings


@register("random", settings=set(), multi_objective=True, description="independent uniform sampling")
def _random(settings: dict[str, Any], seed: int | None, spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed, **settings)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, usable with ask/tell.

    Its ``after_trial`` calls ``study.stop()`` once the grid is used up, and ``stop()``
    raises RuntimeError outside ``study.optimize``: the last ``tell`` of an ask/tell
    engine would fail. The engine stops on its budget (capped at the grid size) instead.
    """

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        try:
            super().after_trial(study, trial, state, values)
        except RuntimeError:
            pass  # "Study.stop is supposed to be invoked inside an objective function"


@register(
    "grid",
    settings={"points"},
    multi_objective=True,
    description="exhaustive grid; continuous ranges without a step get `points` values (default 5)",
)
def _grid(settings: dict[str, Any], seed: int | None, spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    try:
        points = int(settings.get("points", 5))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"points must be an integer, got {settings.get('points')!r}") from None
    if points < 2:
        raise ValueError("points must be >= 2")
    if points > GRID_LIMIT:
        raise ValueError(f"points must be <= {GRID_LIMIT} (the most points a grid may have), got {points}")
    # Counted before the values are listed: a step of 1e-6 over a wide range hung validate and the operator.
    size = grid_size(spec, points)
    if size > GRID_LIMIT:
        raise ValueError(f"the grid has {size} points (at most {GRID_LIMIT}); give coarser steps or fewer points")
    space = {p.name: v for p in spec.parameters if (v := grid_values(p, points)) is not None}
    return _GridSampler(space, seed=seed)


@register(
    "tpe",
    settings=optuna.samplers.TPESampler,
    multi_objective=True,
    description="Tree-structured Parzen Estimator (Bayesian), multivariate and conditional-aware",
)
def _tpe(settings: dict[str, Any], seed: int | None, spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    settings = _startup(spec, settings)
    # group=True models conditional parameters jointly; constant_liar keeps parallel
    # trials from all being sent to the same region.
    settings.setdefault("multivariate", True)
    # Optuna refuses group without multivariate: Katib's tpe is {multivariate: false}.
    settings.setdefault("group", bool(settings["multivariate"]))
    settings.setdefault("constant_liar", spec.budget.parallelism > 1)
    return optuna.samplers.TPESampler(seed=seed, **settings)


@register(
    "gp", settings=optuna.samplers.GPSampler, multi_objective=True, description="Gaussian-process Bayesian optimisation"
)
def _gp(settings: dict[str, Any], seed: int | None, spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    _require("gp", "torch", "scipy")
    settings = _startup(spec, settings)
    settings.setdefault("warn_independent_sampling", False)
    return optuna.samplers.GPSampler(seed=seed, **settings)


@register(
    "auto",
    settings={"n_startup_trials", "gp_trials"},
    multi_objective=False,
    description="the default for one objective: gp while the study is small and has no conditional "
    "parameters, then (or else) tpe",
)
def _auto(settings: dict[str, Any], seed: int | None, spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    gp_trials = settings.pop("gp_trials", GP_TRIALS)
    if isinstance(gp_trials, bool) or not isinstance(gp_trials, int) or gp_trials < 0:
        raise ValueError(f"gp_trials must be an integer >= 0, got {gp_trials!r}")
    # What is left is n_startup_trials, if given (the registry admits nothing else). Both delegates
    # from their own registry entries, so "auto" samples exactly what "gp" (or "tpe") would until
    # it switches: the benchmark's rows for each carry over.
    conditional = any(p.when for p in spec.parameters)
    gp = None if conditional or not gp_available() else _gp(dict(settings), seed, spec)
    return AutoSampler(gp=gp, tpe=_tpe(dict(settings), seed, spec), gp_trials=gp_trials)


@register(
    "cmaes",
    settings=optuna.samplers.CmaEsSampler,
    multi_objective=False,
    description="CMA-ES over numeric parameters (categorical ones sampled independently)",
)
def _cmaes(settings: dict[str, Any], seed: int | None, spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    _require("cmaes", "cmaes")
    settings = _startup(spec, settings, default=1)
    settings.setdefault("warn_independent_sampling", False)
    return optuna.samplers.CmaEsSampler(seed=seed, **settings)


@register(
    "qmc",
    settings=optuna.samplers.QMCSampler,
    multi_objective=True,
    description="quasi-Monte-Carlo (Sobol/Halton) space filling",
)
def _qmc(settings: dict[str, Any], seed: int | None, spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    _require("qmc", "scipy")
    settings.setdefault("warn_independent_sampling", False)
    settings.setdefault("warn_asynchronous_seeding", False)
    return optuna.samplers.QMCSampler(seed=seed, **settings)


@register(
    "nsga2",
    settings=optuna.samplers.NSGAIISampler,
    multi_objective=True,
    description="NSGA-II evolutionary search, the default for several objectives",
)
def _nsga2(settings: dict[str, Any], seed: int | None, spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    if "population_size" not in settings:
        settings["population_size"] = max(4, min(50, spec.budget.max_trials // 4))
    return optuna.samplers.NSGAIISampler(seed=seed, **settings)

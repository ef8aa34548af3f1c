"""The policy-gradient sampler: it learns, stays in the space, and is a function of the study."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pytest
from helpers import digits_job
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from openautoglm import samplers, space
from openautoglm.samplers import PolicyGradientSampler
from openautoglm.spec import TuningJob, TuningJobSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(
    parameters: list[dict[str, Any]],
    *,
    direction: str = "minimize",
    n_trials: int = 40,
    seed: int = 1,
    settings: dict[str, Any] | None = None,
) -> TuningJobSpec:
    doc = digits_job(
        objective={"metric": "loss", "direction": direction},
        budget={"maxTrials": n_trials, "parallelism": 1},
        algorithm={"sampler": "policy-gradient", "seed": seed, "settings": settings or {}},
        earlyStopping={"pruner": "none"},
        parameters=parameters,
    )
    return TuningJob.model_validate(doc).spec


def _tune(spec: TuningJobSpec, objective: Callable[[dict[str, Any]], float]) -> list[dict[str, Any]]:
    """Ask/tell through the registry, as the engine does; the suggested parameters in order."""
    directions = [o.direction for o in spec.objective.objectives]
    study = optuna.create_study(sampler=samplers.build_sampler(spec), directions=directions)
    suggested = []
    for _ in range(spec.budget.max_trials):
        trial = study.ask()
        params = space.suggest(trial, spec)
        suggested.append(params)
        study.tell(trial, objective(params))
    return suggested


def test_policy_concentrates_on_a_quadratic() -> None:
    # Seeded, so deterministic; over seeds 0-19 the last/first distance ratio has median ~0.2.
    spec = _spec([{"name": "x", "type": "float", "low": -10.0, "high": 10.0}], seed=3)
    xs = np.array([p["x"] for p in _tune(spec, lambda p: (p["x"] - 3.0) ** 2)])
    first, last = np.abs(xs[:10] - 3.0).mean(), np.abs(xs[-10:] - 3.0).mean()
    assert last < 0.35 * first and last < 1.5, f"no concentration at x = 3: {np.round(xs, 2)}"


def test_policy_concentrates_on_the_best_choice() -> None:
    payoff = {"a": 0.1, "b": 0.3, "c": 1.0, "d": 0.0}
    spec = _spec([{"name": "opt", "type": "categorical", "choices": list(payoff)}], direction="maximize", seed=1)
    noise = np.random.default_rng(0).normal(0.0, 0.05, spec.budget.max_trials)
    it = iter(noise)
    chosen = [p["opt"] for p in _tune(spec, lambda p: payoff[p["opt"]] + next(it))]
    assert chosen[-10:].count("c") >= 8, chosen
    assert chosen[:10].count("c") < chosen[-10:].count("c")


def test_log_scale_float_stays_in_bounds_and_learns_in_log_space() -> None:
    spec = _spec([{"name": "lr", "type": "float", "low": 1e-5, "high": 1.0, "log": True}], seed=1)
    lrs = np.array([p["lr"] for p in _tune(spec, lambda p: (math.log10(p["lr"]) + 3.0) ** 2)])
    assert ((lrs >= 1e-5) & (lrs <= 1.0)).all()
    # Start-up draws are log-uniform: some land in the lowest decades, not all near 1.
    assert (lrs[:5] < 1e-2).any()
    decades = np.abs(np.log10(lrs) + 3.0)
    assert decades[-10:].mean() < 0.5 * decades[:10].mean(), np.round(np.log10(lrs), 2)
    assert decades[-10:].mean() < 1.0


def test_stepped_values_are_on_the_grid() -> None:
    parameters = [
        {"name": "few", "type": "int", "low": 8, "high": 64, "step": 8},  # categorical policy
        {"name": "many", "type": "int", "low": 0, "high": 10_000, "step": 10},  # Gaussian, rounded
        {"name": "wide_log", "type": "int", "low": 1, "high": 100_000, "log": True},  # Gaussian in log space
        {"name": "frac", "type": "float", "low": 0.0, "high": 1.0, "step": 0.05},
    ]
    spec = _spec(parameters, n_trials=25, seed=3)
    suggested = _tune(spec, lambda p: abs(p["many"] - 7_000) / 1e4 + (p["frac"] - 0.35) ** 2 + p["few"] / 64)
    for p in suggested:
        assert isinstance(p["few"], int) and p["few"] in range(8, 65, 8), p
        assert isinstance(p["many"], int) and 0 <= p["many"] <= 10_000 and p["many"] % 10 == 0, p
        assert isinstance(p["wide_log"], int) and 1 <= p["wide_log"] <= 100_000, p
        k = p["frac"] / 0.05
        assert 0.0 <= p["frac"] <= 1.0 and abs(k - round(k)) < 1e-8, p


def _history(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """A study with conditional parameters and complete, pruned and failed trials."""
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for i in range(14):
        trial = study.ask()
        opt = trial.suggest_categorical("opt", ["adam", "sgd"])
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        beta = trial.suggest_float("beta1", 0.8, 0.99) if opt == "adam" else 0.0
        value = -abs(math.log10(lr) + 2) + beta
        if i == 6:
            study.tell(trial, state=TrialState.FAIL)
        elif i in (8, 9):
            if i == 8:
                trial.report(value - 1.0, step=1)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return study


def _next(study: optuna.Study) -> dict[str, Any]:
    trial = study.ask()
    params = {
        "opt": trial.suggest_categorical("opt", ["adam", "sgd"]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
    }
    if params["opt"] == "adam":
        params["beta1"] = trial.suggest_float("beta1", 0.8, 0.99)
    return params


def test_a_study_rebuilt_from_its_trials_gives_the_same_suggestion() -> None:
    original = _history(PolicyGradientSampler(seed=11, n_startup_trials=3))
    # As after an operator restart: a fresh (here unpickled) sampler, the same stored trials.
    rebuilt_sampler = pickle.loads(pickle.dumps(original.sampler))
    rebuilt = optuna.create_study(sampler=rebuilt_sampler, direction="maximize")
    rebuilt.add_trials(original.trials)
    assert [t.number for t in rebuilt.trials] == [t.number for t in original.trials]
    assert _next(rebuilt) == _next(original)
    # Another seed draws other values.
    other = optuna.create_study(sampler=PolicyGradientSampler(seed=12, n_startup_trials=3), direction="maximize")
    other.add_trials(original.trials)
    assert _next(other) != _next(rebuilt)


def test_history_finishing_out_of_order_is_replayed_in_trial_order() -> None:
    sampler = PolicyGradientSampler(seed=5, n_startup_trials=2)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    running = [study.ask() for _ in range(4)]
    xs = [t.suggest_float("x", 0.0, 1.0) for t in running]
    for t, x in zip(running[1:], xs[1:]):
        study.tell(t, x)
    study.ask().suggest_float("x", 0.0, 1.0)  # caches a replay without trial 0
    study.tell(running[0], xs[0])  # trial 0 finishes last: the cached replay is no longer a prefix
    fresh = optuna.create_study(sampler=PolicyGradientSampler(seed=5, n_startup_trials=2), direction="minimize")
    fresh.add_trials([t for t in study.trials if t.state.is_finished()])
    fresh.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))  # trial 4, still running in `study`
    assert study.ask().suggest_float("x", 0.0, 1.0) == fresh.ask().suggest_float("x", 0.0, 1.0)


def test_failed_trials_are_ignored_and_pruned_ones_count() -> None:
    def with_last(state: TrialState, intermediate: dict[int, float]) -> optuna.Study:
        study = optuna.create_study(sampler=PolicyGradientSampler(seed=2, n_startup_trials=2), direction="maximize")
        dist = FloatDistribution(0.0, 1.0)
        for x in [0.1, 0.5, 0.9, 0.7]:
            study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions={"x": dist}, value=x))
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.05}, distributions={"x": dist}, state=state, intermediate_values=intermediate
            )
        )
        return study

    def suggestion(study: optuna.Study) -> float:
        return study.ask().suggest_float("x", 0.0, 1.0)

    failed = suggestion(with_last(TrialState.FAIL, {}))
    assert failed == suggestion(with_last(TrialState.PRUNED, {}))  # nothing to learn from either
    assert failed != suggestion(with_last(TrialState.PRUNED, {3: 0.05}))


def test_several_objectives_are_refused() -> None:
    study = optuna.create_study(sampler=PolicyGradientSampler(seed=0), directions=["maximize", "minimize"])
    with pytest.raises(ValueError, match="single objective"):
        study.ask().suggest_float("x", 0.0, 1.0)


@pytest.mark.parametrize(
    "settings",
    [
        {"learning_rate": -1},
        {"learning_rate": "fast"},
        {"baseline_decay": 1.0},
        {"entropy_bonus": -0.1},
        {"n_startup_trials": 2.5},
        {"init_std": 0.0},
        {"min_std": 0.8},  # above init_std
        {"pruned_weight": 2},
        {"momentum": 0.9},  # not a setting
    ],
)
def test_invalid_settings_are_rejected(settings: dict[str, Any]) -> None:
    spec = _spec([{"name": "x", "type": "float", "low": 0.0, "high": 1.0}], settings=settings)
    problems = samplers.check(spec)
    assert problems, settings
    assert all(path.startswith("settings") for path, _ in problems), problems


def test_valid_settings_pass() -> None:
    settings = {
        "learning_rate": 0.2,
        "baseline_decay": 0.8,
        "entropy_bonus": 0.0,
        "n_startup_trials": 0,
        "init_std": 0.3,
        "min_std": 0.05,
        "pruned_weight": 0.0,
    }
    assert samplers.check(_spec([{"name": "x", "type": "float", "low": 0.0, "high": 1.0}], settings=settings)) == []


def test_discrete_and_gaussian_policies_by_size() -> None:
    # Not behaviour a user sees directly, but the boundary the docs promise: <= 64 int values -> categorical.
    from openautoglm.samplers._policy_gradient import MAX_DISCRETE_INT, _is_discrete

    assert _is_discrete(IntDistribution(1, MAX_DISCRETE_INT))
    assert not _is_discrete(IntDistribution(1, MAX_DISCRETE_INT + 1))
    assert _is_discrete(IntDistribution(0, 630, step=10))
    assert _is_discrete(CategoricalDistribution(["a", "b"]))
    assert not _is_discrete(FloatDistribution(0.0, 1.0, step=0.5))

"""Every sampler of the registry passes one contract on the same search space."""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import optuna
import pytest
from helpers import digits_job
from optuna.trial import TrialState

from openautoglm import samplers, space
from openautoglm.spec import TuningJob, TuningJobSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Trials per registry entry in the contract test (GP fits a model per trial: keep it short).
#: A new registry entry must get a row here, or test_contract_covers_the_registry fails.
CONTRACT_TRIALS: dict[str, int] = {
    "random": 10,
    "grid": 10,
    "tpe": 10,
    "gp": 4,
    "auto": 10,  # TPE here: PARAMETERS has a conditional parameter (GP's side: the tests below)
    "cmaes": 10,
    "qmc": 10,
    "nsga2": 10,
    "policy-gradient": 10,
}

PARAMETERS: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "low": 1.0e-4, "high": 0.3, "log": True},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    {"name": "hidden", "type": "int", "low": 16, "high": 64, "step": 16},
    {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
    {"name": "beta1", "type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "adam"}},
]


def _spec(
    sampler: str,
    *,
    multi: bool = False,
    parameters: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
    seed: int = 7,
) -> TuningJobSpec:
    objective: Any = (
        {"metrics": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "size", "direction": "minimize"}]}
        if multi
        else {"metric": "accuracy", "direction": "maximize"}
    )
    doc = digits_job(
        objective=objective,
        budget={"maxTrials": 12, "parallelism": 1},
        algorithm={"sampler": sampler, "seed": seed, "settings": settings or {}},
        earlyStopping={"pruner": "none"},
        parameters=parameters or PARAMETERS,
    )
    return TuningJob.model_validate(doc).spec


def _accuracy(p: dict[str, Any]) -> float:
    score = -((math.log10(p["lr"]) + 2) ** 2) - (p["dropout"] - 0.2) ** 2 - ((p["hidden"] - 48) / 64) ** 2
    if p["optimizer"] == "adam":
        score += 0.2 - (p["beta1"] - 0.9) ** 2
    return score


def _run(spec: TuningJobSpec, n_trials: int) -> tuple[optuna.Study, list[dict[str, Any]]]:
    directions = [o.direction for o in spec.objective.objectives]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=samplers.build_sampler(spec), directions=directions)
        suggested = []
        for _ in range(n_trials):
            trial = study.ask()
            params = space.suggest(trial, spec)
            suggested.append(params)
            values = [_accuracy(params), params["hidden"] / 64 + params["dropout"]]
            study.tell(trial, values[: len(directions)])
    return study, suggested


def _on_step(value: float, low: float, step: float) -> bool:
    k = (value - low) / step
    return abs(k - round(k)) < 1e-6


def _assert_in_space(params: dict[str, Any]) -> None:
    assert 1.0e-4 <= params["lr"] <= 0.3
    assert 0.0 <= params["dropout"] <= 0.5 and _on_step(params["dropout"], 0.0, 0.1), params
    assert isinstance(params["hidden"], int) and params["hidden"] in (16, 32, 48, 64), params
    assert params["optimizer"] in ("adam", "sgd")
    if params["optimizer"] == "adam":
        assert 0.8 <= params["beta1"] <= 0.99
    else:
        assert "beta1" not in params, f"beta1 suggested although optimizer is sgd: {params}"
    assert set(params) <= {p["name"] for p in PARAMETERS}


def test_contract_covers_the_registry() -> None:
    assert set(CONTRACT_TRIALS) == set(samplers.SAMPLERS), "give every registered sampler a CONTRACT_TRIALS row"


@pytest.mark.parametrize("name", sorted(set(CONTRACT_TRIALS) | set(samplers.SAMPLERS)))
def test_sampler_contract(name: str) -> None:
    entry = samplers.SAMPLERS[name]
    n_trials = CONTRACT_TRIALS[name]
    spec = _spec(name)
    study, suggested = _run(spec, n_trials)

    assert len(study.trials) == n_trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for params, trial in zip(suggested, study.trials):
        _assert_in_space(params)
        assert trial.params == params, "what the study stores is what the worker would receive"

    # Deterministic under a seed: a second study with the same spec suggests the same sequence.
    _, again = _run(_spec(name), n_trials)
    assert again == suggested

    if entry.multi_objective:
        multi = _spec(name, multi=True)
        study, suggested = _run(multi, min(n_trials, 6))
        assert len(study.directions) == 2
        assert all(len(t.values) == 2 for t in study.trials)
        for params in suggested:
            _assert_in_space(params)
        assert study.best_trials
    else:
        assert samplers.check(_spec(name, multi=True)) != []


def test_conditional_parameter_appears_under_both_branches() -> None:
    # Over enough random trials, both branches of the condition are taken.
    _, suggested = _run(_spec("random"), 30)
    assert {p["optimizer"] for p in suggested} == {"adam", "sgd"}
    assert all(("beta1" in p) == (p["optimizer"] == "adam") for p in suggested)


def test_grid_exhausts_a_small_grid_without_duplicates() -> None:
    parameters = [
        {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
        {"name": "hidden", "type": "int", "low": 16, "high": 48, "step": 16},
        {"name": "dropout", "type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
        {"name": "batch_size", "type": "fixed", "value": 32},
    ]
    spec = _spec("grid", parameters=parameters)
    size = space.grid_size(spec, points=5)
    assert size == 2 * 3 * 3
    sampler = samplers.build_sampler(spec)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    seen = []
    for _ in range(size):
        trial = study.ask()
        params = space.suggest(trial, spec)
        seen.append((params["optimizer"], params["hidden"], round(params["dropout"], 9)))
        assert params["batch_size"] == 32
        study.tell(trial, params["hidden"] * 0.01)  # the last tell must not raise (ask/tell engine)
    assert len(set(seen)) == size
    assert set(seen) == set(itertools.product(["adam", "sgd"], [16, 32, 48], [0.0, 0.1, 0.2]))
    assert sampler.is_exhausted(study)


def test_grid_points_spread_a_continuous_range() -> None:
    parameters = [{"name": "lr", "type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True}]
    spec = _spec("grid", parameters=parameters, settings={"points": 4})
    study = optuna.create_study(sampler=samplers.build_sampler(spec), direction="maximize")
    values = []
    for _ in range(4):
        trial = study.ask()
        values.append(space.suggest(trial, spec)["lr"])
        study.tell(trial, 0.0)
    assert sorted(values) == pytest.approx([1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1])


@pytest.mark.parametrize(("name", "n_trials"), [("tpe", 30), ("gp", 10), ("cmaes", 30)])
def test_sampler_improves_on_its_first_trials(name: str, n_trials: int) -> None:
    """On a 1-D quadratic, later trials concentrate near the optimum (x = 3)."""
    parameters = [{"name": "lr", "type": "float", "low": -10.0, "high": 10.0}]
    doc = digits_job(
        objective={"metric": "loss", "direction": "minimize"},
        budget={"maxTrials": n_trials, "parallelism": 1},
        algorithm={"sampler": name, "seed": 3, "settings": {"n_startup_trials": 4}},
        earlyStopping={"pruner": "none"},
        parameters=parameters,
    )
    spec = TuningJob.model_validate(doc).spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=samplers.build_sampler(spec), direction="minimize")
        for _ in range(n_trials):
            trial = study.ask()
            x = space.suggest(trial, spec)["lr"]
            study.tell(trial, (x - 3.0) ** 2)
    values = [t.value for t in study.trials]
    startup, guided = values[:4], values[4:]
    assert min(guided) < 0.1 * min(startup), f"no clearly better trial than the start-up ones: {values}"
    assert sum(v < 1.0 for v in guided) >= 3, f"the search does not return to the good region: {values}"


# ----------------------------------------------------------------------------- auto
NUMERIC: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "low": 1.0e-4, "high": 0.3, "log": True},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
    {"name": "hidden", "type": "int", "low": 16, "high": 64, "step": 16},
    {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
]


def _numeric_accuracy(p: dict[str, Any]) -> float:
    return -((math.log10(p["lr"]) + 2) ** 2) - (p["dropout"] - 0.2) ** 2 + (0.2 if p["optimizer"] == "adam" else 0.0)


def _drive(spec: TuningJobSpec, n_trials: int) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=samplers.build_sampler(spec), direction="maximize")
        for _ in range(n_trials):
            trial = study.ask()
            study.tell(trial, _numeric_accuracy(space.suggest(trial, spec)))
    return study


def test_an_unnamed_sampler_is_auto_for_one_objective() -> None:
    doc = digits_job(objective={"metric": "accuracy", "direction": "maximize"}, parameters=NUMERIC)
    doc["spec"]["algorithm"].pop("sampler")
    spec = TuningJob.model_validate(doc).spec
    assert samplers.check(spec) == []
    assert type(samplers.build_sampler(spec)).__name__ == "AutoSampler"


def test_auto_is_gp_on_a_numeric_space_then_tpe() -> None:
    # Until gp_trials complete trials, auto suggests exactly what gp does (same seed, same
    # start-up count), so gp's benchmark rows are auto's; then TPE takes over, using every trial.
    settings = {"n_startup_trials": 3}
    auto = _drive(_spec("auto", parameters=NUMERIC, settings={**settings, "gp_trials": 6}), 9)
    gp = _drive(_spec("gp", parameters=NUMERIC, settings=settings), 6)
    assert [t.params for t in auto.trials[:6]] == [t.params for t in gp.trials]
    assert [t.user_attrs["sampled_by"] for t in auto.trials] == ["gp"] * 6 + ["tpe"] * 3
    tpe_tail = [t.params for t in auto.trials[6:]]
    assert all(p not in [t.params for t in gp.trials] for p in tpe_tail)


def test_auto_is_tpe_where_parameters_are_conditional() -> None:
    # A GP would sample beta1 (when optimizer is adam) at random; TPE's group models it.
    auto = _drive(_spec("auto", parameters=PARAMETERS[:2] + PARAMETERS[3:]), 6)
    tpe = _drive(_spec("tpe", parameters=PARAMETERS[:2] + PARAMETERS[3:]), 6)
    assert {t.user_attrs["sampled_by"] for t in auto.trials} == {"tpe"}
    assert [t.params for t in auto.trials] == [t.params for t in tpe.trials]


def test_auto_gp_asks_several_trials_before_any_is_told() -> None:
    # Parallel trials: GP's qLogEI sees the running ones, so they are not all the same point.
    spec = _spec("auto", parameters=NUMERIC, settings={"n_startup_trials": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=samplers.build_sampler(spec), direction="maximize")
        for _ in range(3):
            trial = study.ask()
            study.tell(trial, _numeric_accuracy(space.suggest(trial, spec)))
        running = [study.ask() for _ in range(3)]
        params = [space.suggest(t, spec) for t in running]
    assert {t.user_attrs["sampled_by"] for t in study.get_trials(states=(TrialState.RUNNING,))} == {"gp"}
    assert len({tuple(sorted(p.items())) for p in params}) == 3, params


@pytest.mark.parametrize("value", [-1, 2.5, "many", True])
def test_auto_refuses_a_bad_gp_trials(value: Any) -> None:
    problems = samplers.check(_spec("auto", parameters=NUMERIC, settings={"gp_trials": value}))
    assert problems and problems[0][0] == "settings" and "gp_trials" in problems[0][1], problems


@pytest.mark.parametrize(
    ("parameter", "settings", "fragment"),
    [
        ({"name": "x", "type": "float", "low": 0.0, "high": 500.0, "step": 1e-6}, {}, "the grid has 500000001 points"),
        ({"name": "n", "type": "int", "low": 0, "high": 1e18, "step": 1}, {}, "the grid has 1000000000000000001"),
        ({"name": "x", "type": "float", "low": 0.0, "high": 1.0}, {"points": 10**9}, "points must be <= 1000000"),
        ({"name": "x", "type": "float", "low": 0.0, "high": 1.0}, {"points": math.inf}, "must be an integer"),
    ],
    ids=["fine-float-step", "wide-int-range", "points-huge", "points-infinite"],
)
def test_a_grid_too_large_is_refused_before_it_is_listed(parameter: dict, settings: dict, fragment: str) -> None:
    """Found by tests/k8s/test_fuzz.py: listing a grid of 500 million values hung validate and the
    operator, and points: .inf raised OverflowError out of validate. Both refused at once now."""
    from openautoglm.validation import InvalidTuningJob, validate_document

    doc = digits_job(parameters=[parameter], algorithm={"sampler": "grid", "settings": settings})
    doc["spec"]["earlyStopping"] = {"pruner": "none"}
    doc["spec"]["trial"] = {"command": ["train"]}
    with pytest.raises(InvalidTuningJob) as err:
        validate_document(doc)
    assert [p.path for p in err.value.problems] == ["spec.algorithm.settings"]
    assert fragment in err.value.problems[0].message

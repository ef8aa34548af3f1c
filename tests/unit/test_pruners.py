"""Every pruner of the registry passes one contract: a clearly bad curve is stopped early."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from helpers import digits_job

from openautoglm import pruners
from openautoglm.spec import TuningJob, TuningJobSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

EPOCHS = 6
GOOD_TRIALS = 8

#: Settings per registry entry that let it prune in a short study (one value per epoch).
#: A new registry entry must get a row here, or test_contract_covers_the_registry fails.
CONTRACT_SETTINGS: dict[str, dict[str, Any]] = {
    "none": {},
    "median": {"n_startup_trials": 2},
    "percentile": {"percentile": 25.0, "n_startup_trials": 2},
    "successive-halving": {"min_resource": 1, "reduction_factor": 2},
    # max_resource defaults to spec.trial.epochs.
    "hyperband": {"min_resource": 1, "reduction_factor": 2},
    "threshold": {"lower": 0.3},
}
#: Pruners that compare with other trials or a bound, and so must let a good trial run.
KEEP_GOOD = {"none", "median", "percentile", "threshold"}


def _spec(name: str) -> TuningJobSpec:
    doc = digits_job(
        budget={"maxTrials": 20, "parallelism": 1},
        earlyStopping={"pruner": name, "settings": CONTRACT_SETTINGS[name]},
        trial={"task": "digits", "epochs": EPOCHS},
    )
    return TuningJob.model_validate(doc).spec


def _good_curve(k: int) -> list[float]:
    """Accuracy of the k-th finished trial: rising from ~0.5, slightly different per trial."""
    return [0.5 + 0.05 * epoch + 0.01 * (k % 4) for epoch in range(1, EPOCHS + 1)]


def _study(spec: TuningJobSpec) -> optuna.Study:
    study = optuna.create_study(
        study_name="pruner-contract",
        direction="maximize",
        pruner=pruners.build_pruner(spec),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    for k in range(GOOD_TRIALS):
        trial = study.ask()
        curve = _good_curve(k)
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            # The engine asks about every running trial; rung-based pruners record rungs here.
            trial.should_prune()
        study.tell(trial, curve[-1])
    return study


def _run_curve(study: optuna.Study, curve: list[float]) -> int | None:
    """Report a running trial's curve epoch by epoch, as the engine does; the epoch it was pruned at."""
    trial = study.ask()
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    study.tell(trial, curve[-1])
    return None


def test_contract_covers_the_registry() -> None:
    assert set(CONTRACT_SETTINGS) == set(pruners.PRUNERS), "give every registered pruner a CONTRACT_SETTINGS row"


@pytest.mark.parametrize("name", sorted(set(CONTRACT_SETTINGS) | set(pruners.PRUNERS)))
def test_pruner_contract(name: str) -> None:
    spec = _spec(name)
    assert pruners.check(spec) == [], "the contract settings are valid for the registry entry"
    study = _study(spec)

    pruned_at = _run_curve(study, [0.1] * EPOCHS)
    if name == "none":
        assert pruned_at is None
    else:
        assert pruned_at is not None, f"{name} let a clearly bad trial run all {EPOCHS} epochs"
        assert pruned_at < EPOCHS

    if name in KEEP_GOOD:
        best = [v + 0.1 for v in _good_curve(3)]
        assert _run_curve(study, best) is None, f"{name} pruned a trial better than all others"

    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) >= GOOD_TRIALS


def test_none_never_prunes_even_a_diverging_trial() -> None:
    study = _study(_spec("none"))
    assert _run_curve(study, [0.0, -1.0, -10.0, float("nan"), -100.0, -1000.0]) is None


def test_hyperband_resource_defaults_to_the_epochs() -> None:
    pruner = pruners.build_pruner(_spec("hyperband"))
    assert pruner._max_resource == EPOCHS


@pytest.mark.parametrize(
    ("name", "settings", "fragment"),
    [
        ("threshold", {}, "lower and/or upper"),
        ("hyperband", {"reduction_factor": 1}, "reduction_factor"),
        ("successive-halving", {"min_resource": 0}, "min_resource"),
        ("median", {"n_warmup_step": 1}, "unknown setting"),
    ],
)
def test_unusable_pruner_settings_are_problems(name: str, settings: dict[str, Any], fragment: str) -> None:
    doc = digits_job(earlyStopping={"pruner": name, "settings": settings})
    problems = pruners.check(TuningJob.model_validate(doc).spec)
    assert problems and any(fragment in msg for _, msg in problems), problems

"""import-katib: spec.algorithm and spec.earlyStopping (samplers, their settings, pruners)."""

from __future__ import annotations

import pytest
from katib_experiments import experiment, paths, reason, valid, with_algorithm

from openautoglm.katib import convert


# ============================================================================= algorithms
def test_random_seed() -> None:
    c = convert(with_algorithm("random", random_state=7))
    assert c.job["spec"]["algorithm"] == {"sampler": "random", "seed": 7}
    valid(c.job)


def test_grid() -> None:
    c = convert(with_algorithm("grid"))
    assert c.job["spec"]["algorithm"] == {"sampler": "grid"}
    assert any("5 evenly spaced values" in n for n in c.notes)
    valid(c.job)


def test_tpe_settings() -> None:
    c = convert(with_algorithm("tpe", n_startup_trials=4, n_ei_candidates=12, random_state=3))
    assert c.job["spec"]["algorithm"] == {
        "sampler": "tpe",
        "seed": 3,
        "settings": {"multivariate": False, "constant_liar": True, "n_startup_trials": 4, "n_ei_candidates": 12},
    }
    assert c.complete
    valid(c.job)
    # hyperopt's spelling and prior_weight (Katib's default KatibConfig runs tpe in hyperopt)
    c = convert(with_algorithm("tpe", n_EI_candidates=30, prior_weight=0.5))
    assert c.job["spec"]["algorithm"]["settings"] == {
        "multivariate": False,
        "constant_liar": True,
        "n_ei_candidates": 30,
        "prior_weight": 0.5,
    }
    valid(c.job)


def test_multivariate_tpe() -> None:
    c = convert(with_algorithm("multivariate-tpe", n_startup_trials=2))
    assert c.job["spec"]["algorithm"] == {
        "sampler": "tpe",
        "settings": {"multivariate": True, "constant_liar": True, "n_startup_trials": 2},
    }
    valid(c.job)


def test_tpe_unknown_and_unmappable_settings() -> None:
    c = convert(with_algorithm("tpe", gamma=0.25, n_startup_trials="many", foo=1))
    assert paths(c) == {
        "spec.algorithm.algorithmSettings[0]",
        "spec.algorithm.algorithmSettings[1]",
        "spec.algorithm.algorithmSettings[2]",
    }
    assert "gamma" in reason(c, "spec.algorithm.algorithmSettings[0]")


def test_bayesian_optimization() -> None:
    c = convert(
        with_algorithm(
            "bayesianoptimization",
            base_estimator="GP",
            n_initial_points=5,
            acq_func="gp_hedge",
            acq_optimizer="lbfgs",
            random_state=10,
        )
    )
    assert c.complete
    assert c.job["spec"]["algorithm"] == {"sampler": "gp", "seed": 10, "settings": {"n_startup_trials": 5}}
    assert any("acq_optimizer 'lbfgs' dropped" in n for n in c.notes)
    assert any("log scale" in n for n in c.notes)  # skopt's log-uniform doubles
    valid(c.job)
    c = convert(with_algorithm("bayesianoptimization", base_estimator="RF", acq_func="LCB"))
    assert paths(c) == {"spec.algorithm.algorithmSettings[0]", "spec.algorithm.algorithmSettings[1]"}


def test_cmaes() -> None:
    c = convert(with_algorithm("cmaes", sigma=0.2, restart_strategy="ipop", random_state=5))
    assert c.complete
    assert c.job["spec"]["algorithm"] == {"sampler": "cmaes", "seed": 5, "settings": {"sigma0": 0.2}}
    assert any("restart_strategy ipop dropped" in n for n in c.notes)
    valid(c.job)
    assert paths(convert(with_algorithm("cmaes", restart_strategy="sometimes"))) == {
        "spec.algorithm.algorithmSettings[0]"
    }


def test_sobol() -> None:
    c = convert(with_algorithm("sobol"))
    assert c.job["spec"]["algorithm"] == {"sampler": "qmc", "settings": {"qmc_type": "sobol"}}
    valid(c.job)


def test_hyperband() -> None:
    exp = with_algorithm("hyperband", resource_name="epochs", eta=3, r_l=9)
    exp["spec"]["parameters"].append(
        {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}}
    )
    exp["spec"]["trialTemplate"]["trialParameters"].append({"name": "numEpochs", "reference": "epochs"})
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"].append(
        "--epochs=${trialParameters.numEpochs}"
    )
    exp["spec"]["parallelTrialCount"] = 8
    c = convert(exp)
    assert c.complete, c.unmapped
    spec = c.job["spec"]
    assert spec["algorithm"] == {"sampler": "random"}
    # s_max = floor(log_3 9) = 2: rungs at 1, 3, 9 epochs, as Katib's brackets.
    assert spec["earlyStopping"] == {
        "pruner": "hyperband",
        "settings": {"min_resource": 1, "max_resource": 9, "reduction_factor": 3},
    }
    assert spec["parameters"][2] == {"name": "epochs", "type": "fixed", "value": 9}
    assert spec["trial"]["epochs"] == 9
    assert spec["trial"]["command"][-1] == "--epochs=${trialParameters.epochs}"
    assert any("'epochs' (hyperband's resource_name) removed from the search space" in n for n in c.notes)
    valid(c.job)


def test_hyperband_needs_its_resource() -> None:
    c = convert(with_algorithm("hyperband", resource_name="nope", r_l=9))
    assert paths(c) == {"spec.algorithm.algorithmSettings[0]"}
    c = convert(with_algorithm("hyperband", resource_name="lr"))
    assert paths(c) == {"spec.algorithm.algorithmSettings"}


@pytest.mark.parametrize("name", ["pbt", "enas", "darts", "bayes-opt-something"])
def test_unknown_algorithm(name: str) -> None:
    c = convert(with_algorithm(name, x=1))
    assert paths(c) == {"spec.algorithm.algorithmName"}
    assert f"{name!r} has no equivalent" in reason(c, "spec.algorithm.algorithmName")


def test_medianstop() -> None:
    exp = experiment(
        earlyStopping={
            "algorithmName": "medianstop",
            "algorithmSettings": [{"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "5"}],
        }
    )
    c = convert(exp)
    assert c.job["spec"]["earlyStopping"] == {
        "pruner": "median",
        "settings": {"n_startup_trials": 2, "n_warmup_steps": 5},
    }
    valid(c.job)
    c = convert(experiment(earlyStopping={"algorithmName": "medianstop"}))
    assert c.job["spec"]["earlyStopping"]["settings"] == {
        "n_startup_trials": 3,
        "n_warmup_steps": 4,
    }  # Katib's defaults


def test_other_early_stopping_is_unmapped() -> None:
    c = convert(experiment(earlyStopping={"algorithmName": "asha"}))
    assert paths(c) == {"spec.earlyStopping.algorithmName"}
    c = convert(
        experiment(
            earlyStopping={"algorithmName": "medianstop", "algorithmSettings": [{"name": "window", "value": "3"}]}
        )
    )
    assert paths(c) == {"spec.earlyStopping.algorithmSettings[0]"}


def test_lossy_default_sampler_is_in_the_notes() -> None:
    """Issue 22: --lossy used the default sampler for an algorithm without equivalent, silently."""
    c = convert(with_algorithm("pbt"))
    assert "sampler" not in c.job["spec"]["algorithm"]
    (note,) = [n for n in c.notes if n.startswith("--lossy:")]
    assert "algorithmName pbt" in note and "auto" in note
    assert not [n for n in convert(with_algorithm("random")).notes if n.startswith("--lossy:")]

"""import-katib: the Experiment's own fields (metadata, objective, parameters, budget, resume, NAS)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from katib_experiments import JOB_POD, experiment, load, paths, reason, valid, with_parameter

from openautoglm.katib import NotAnExperiment, convert, render


# ============================================================================= objective
def test_objective() -> None:
    exp = experiment(
        objective={
            "type": "maximize",
            "goal": "0.99",
            "objectiveMetricName": "Validation-accuracy",
            "additionalMetricNames": ["loss", "train.acc"],
            "metricStrategies": [{"name": "loss", "value": "latest"}, {"name": "Validation-accuracy", "value": "max"}],
        }
    )
    c = convert(exp)
    assert c.complete
    assert c.job["spec"]["objective"] == {
        "metric": "Validation-accuracy",
        "direction": "maximize",
        "target": 0.99,
        "additionalMetrics": ["loss", "train.acc"],
        # Katib's defaulter gives additional metrics the objective's min/max, not latest.
        "metricStrategies": {"loss": "latest", "Validation-accuracy": "max", "train.acc": "max"},
    }
    assert any("'train.acc'" in n and "default strategy 'max'" in n for n in c.notes)
    valid(c.job)


def test_objective_without_goal_and_bad_names() -> None:
    c = convert(experiment(objective={"type": "minimize", "objectiveMetricName": "loss"}))
    assert c.job["spec"]["objective"] == {"metric": "loss", "direction": "minimize"}
    c = convert(
        experiment(
            objective={
                "type": "minimize",
                "objectiveMetricName": "valid auc",
                "metricStrategies": [{"name": "other", "value": "min"}, {"name": "loss2", "value": "median"}],
            }
        )
    )
    assert paths(c) == {
        "spec.objective.objectiveMetricName",
        "spec.objective.metricStrategies[0].name",
        "spec.objective.metricStrategies[1].value",
    }
    c = convert(experiment(objective={"type": "best", "objectiveMetricName": "loss"}))
    assert paths(c) == {"spec.objective.type"}


# ============================================================================= parameters
def test_parameter_types() -> None:
    exp = experiment(
        parameters=[
            {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.05", "step": "0.01"}},
            {"name": "num-layers", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "5"}},
            {"name": "batch", "parameterType": "int", "feasibleSpace": {"min": 16, "max": 64, "step": "16"}},
            {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam"]}},
            {"name": "units", "parameterType": "discrete", "feasibleSpace": {"list": ["32", "64", "0.5"]}},
        ]
    )
    exp["spec"]["trialTemplate"]["trialParameters"] = [{"name": "learningRate", "reference": "lr"}]
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "python3",
        "train.py",
        "--lr=${trialParameters.learningRate}",
    ]
    c = convert(exp)
    assert c.complete, c.unmapped
    assert c.job["spec"]["parameters"] == [
        {"name": "lr", "type": "float", "low": 0.01, "high": 0.05, "step": 0.01},
        {"name": "num-layers", "type": "int", "low": 2, "high": 5},
        {"name": "batch", "type": "int", "low": 16, "high": 64, "step": 16},
        {"name": "optimizer", "type": "categorical", "choices": ["sgd", "adam"]},
        # discrete: a categorical of numbers
        {"name": "units", "type": "categorical", "choices": [32, 64, 0.5]},
    ]
    valid(c.job)


def test_log_uniform_becomes_log() -> None:
    c = convert(
        with_parameter(
            parameterType="double", feasibleSpace={"min": "0.0001", "max": "0.1", "distribution": "logUniform"}
        )
    )
    assert c.job["spec"]["parameters"][0] == {"name": "lr", "type": "float", "low": 0.0001, "high": 0.1, "log": True}
    assert c.complete
    valid(c.job)


def test_log_uniform_with_a_step_drops_the_step() -> None:
    c = convert(
        with_parameter(
            parameterType="double",
            feasibleSpace={"min": "0.001", "max": "0.1", "step": "0.001", "distribution": "logUniform"},
        )
    )
    assert c.job["spec"]["parameters"][0] == {"name": "lr", "type": "float", "low": 0.001, "high": 0.1, "log": True}
    assert any("step 0.001 dropped" in n for n in c.notes)
    valid(c.job)


def test_log_uniform_needs_a_positive_min() -> None:
    c = convert(
        with_parameter(parameterType="double", feasibleSpace={"min": "0", "max": "1", "distribution": "logUniform"})
    )
    # The command uses ${trialParameters.learningRate} of that parameter: named since issue 22
    # (--lossy dropped it silently), test_katib_cli.py::test_a_parameter_named_like_a_flag_...
    assert paths(c) == {"spec.parameters[0].feasibleSpace.distribution", f"{JOB_POD}.containers[0].command"}


def test_normal_and_log_normal_are_approximated() -> None:
    c = convert(
        with_parameter(parameterType="double", feasibleSpace={"min": "0.01", "max": "0.05", "distribution": "normal"})
    )
    assert c.complete
    assert c.job["spec"]["parameters"][0] == {"name": "lr", "type": "float", "low": 0.01, "high": 0.05}
    assert any("normal approximated by uniform" in n for n in c.notes)
    c = convert(
        with_parameter(parameterType="int", feasibleSpace={"min": "32", "max": "64", "distribution": "logNormal"})
    )
    assert c.complete
    assert c.job["spec"]["parameters"][0] == {"name": "lr", "type": "int", "low": 32, "high": 64, "log": True}
    assert any("logNormal approximated by log-uniform" in n for n in c.notes)


def test_equal_bounds_become_a_fixed_parameter() -> None:
    c = convert(with_parameter(parameterType="int", feasibleSpace={"min": "3", "max": "3"}))
    assert c.job["spec"]["parameters"][0] == {"name": "lr", "type": "fixed", "value": 3}
    valid(c.job)


@pytest.mark.parametrize(
    "param, path",
    [
        (
            {"name": "2lr", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
            "spec.parameters[0].name",
        ),
        (
            {"name": "lr", "parameterType": "float", "feasibleSpace": {"min": "0", "max": "1"}},
            "spec.parameters[0].parameterType",
        ),
        (
            {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "x", "max": "1"}},
            "spec.parameters[0].feasibleSpace.min",
        ),
        (
            {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "2", "max": "1"}},
            "spec.parameters[0].feasibleSpace.max",
        ),
        (
            {"name": "lr", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9", "step": "0.5"}},
            "spec.parameters[0].feasibleSpace.step",
        ),
        (
            {"name": "lr", "parameterType": "discrete", "feasibleSpace": {"list": ["1", "a"]}},
            "spec.parameters[0].feasibleSpace.list",
        ),
        (
            {"name": "lr", "parameterType": "categorical", "feasibleSpace": {"list": []}},
            "spec.parameters[0].feasibleSpace.list",
        ),
    ],
)
def test_unmappable_parameters(param: dict[str, Any], path: str) -> None:
    exp = experiment()
    exp["spec"]["parameters"][0] = param
    assert path in paths(convert(exp))


# ============================================================================= early stopping, budget
@pytest.mark.parametrize("katib, ours", [(3, 2), (1, 0), (8, 7)])
def test_max_failed_trial_count(katib: int, ours: int) -> None:
    # Katib fails the experiment when failed trials REACH the count; a TuningJob when MORE than it fail.
    c = convert(experiment(maxFailedTrialCount=katib))
    assert c.job["spec"]["budget"]["maxFailedTrials"] == ours
    assert any(f"maxFailedTrials {ours}" in n for n in c.notes)


def test_max_failed_trial_count_zero_and_unset() -> None:
    c = convert(experiment(maxFailedTrialCount=0))
    assert c.job["spec"]["budget"]["maxFailedTrials"] == 0
    assert any("maxFailedTrialCount 0" in n for n in c.notes)
    exp = experiment()
    del exp["spec"]["maxFailedTrialCount"]
    c = convert(exp)
    assert c.job["spec"]["budget"]["maxFailedTrials"] == 8  # never fails: as many as maxTrials
    valid(c.job)


def test_budget_defaults() -> None:
    exp = experiment()
    del exp["spec"]["parallelTrialCount"], exp["spec"]["maxTrialCount"]
    c = convert(exp)
    assert c.job["spec"]["budget"] == {"parallelism": 3, "maxFailedTrials": 2}
    assert any("Katib's default 3" in n for n in c.notes) and any("maxTrialCount unset" in n for n in c.notes)
    c = convert(experiment(parallelTrialCount=5, maxTrialCount=2, maxFailedTrialCount=1))
    assert c.job["spec"]["budget"] == {"maxTrials": 2, "parallelism": 2, "maxFailedTrials": 0}
    valid(c.job)


# ============================================================================= metadata, resume, NAS, input
def test_long_name_is_shortened() -> None:
    exp = experiment()
    exp["metadata"]["name"] = "a-very-long-experiment-name-that-exceeds-forty-characters"
    c = convert(exp)
    name = c.job["metadata"]["name"]
    assert len(name) <= 40 and name.startswith("a-very-long-experiment-name")
    assert c.job["metadata"]["namespace"] == "team"
    assert any("renamed" in n for n in c.notes)
    valid(c.job)
    exp["metadata"]["name"] = "My_Experiment"
    assert convert(exp).job["metadata"]["name"] == "my-experiment"


def test_resume_policy_and_nas() -> None:
    assert convert(experiment(resumePolicy="Never")).complete
    # LongRunning and FromVolume: test_resume_policies_are_dropped_with_a_note (issue 22)
    c = convert(experiment(nasConfig={"graphConfig": {"numLayers": 1}}))
    assert paths(c) == {"spec.nasConfig"}
    assert reason(c, "spec.nasConfig") == "not supported (neural architecture search)"
    assert paths(convert(experiment(unknownThing=1))) == {"spec.unknownThing"}


@pytest.mark.parametrize("policy", ["LongRunning", "FromVolume"])
def test_resume_policies_are_dropped_with_a_note(policy: str) -> None:
    """Issue 22: they were refused as "a finished TuningJob cannot be resumed with a larger budget",
    untrue since spec edits: a raised budget.maxTrials continues a finished job."""
    c = convert(experiment(resumePolicy=policy))
    assert c.complete, c.unmapped
    (note,) = [n for n in c.notes if n.startswith(f"resumePolicy {policy} dropped")]
    assert "budget.maxTrials" in note and "continues" in note
    valid(c.job)
    assert reason(convert(experiment(resumePolicy="Sometimes")), "spec.resumePolicy") == "unknown policy 'Sometimes'"


def test_not_an_experiment() -> None:
    with pytest.raises(NotAnExperiment):
        convert({"apiVersion": "openautoglm.io/v1alpha1", "kind": "TuningJob"})
    with pytest.raises(NotAnExperiment):
        convert({**experiment(), "apiVersion": "kubeflow.org/v1alpha3"})


def test_convert_is_pure() -> None:
    exp = experiment()
    before = copy.deepcopy(exp)
    assert convert(exp) == convert(exp)
    assert exp == before


def test_render_has_the_notes_as_comments() -> None:
    c = convert(load("hp-tuning/hyperband.yaml"))
    text = render(c, "hyperband.yaml")
    assert text.startswith("# TuningJob converted from Katib Experiment kubeflow/hyperband (hyperband.yaml)")
    assert "#   - hyperband (eta 2, r_l 2) became random sampling" in text
    assert yaml.safe_load(text) == c.job

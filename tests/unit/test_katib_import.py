"""`openautoglm import-katib`: Katib Experiments become TuningJobs, or every unmappable field is named.

The vendored examples (tests/data/katib, Katib commit 33c8ff4) each have the exact set of paths the
converter cannot map; every converted job must pass our validation and the CRD's admission.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from openautoglm import cli
from openautoglm.katib import NotAnExperiment, convert, render, shell_words, strip_mpi_launcher
from openautoglm.validation import InvalidTuningJob, validate_document

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "katib"

TRIAL_SPEC = "spec.trialTemplate.trialSpec"
JOB_POD = f"{TRIAL_SPEC}.spec.template.spec"
META_REFS = ["Name", "Namespace", "Kind", "APIVersion", "Labels[custom-key]", "Annotations[custom-key]"]

#: file -> (exact set of unmapped paths, whether the --lossy TuningJob is valid)
EXAMPLES: dict[str, tuple[set[str], bool]] = {
    "early-stopping/median-stop.yaml": (set(), True),
    "early-stopping/median-stop-with-json-format.yaml": (set(), True),
    "hp-tuning/bayesian-optimization.yaml": (set(), True),
    "hp-tuning/cma-es.yaml": (set(), True),
    "hp-tuning/grid.yaml": (set(), True),
    "hp-tuning/hyperband.yaml": (set(), True),
    "hp-tuning/hyperopt-distribution.yaml": (set(), True),
    "hp-tuning/multivariate-tpe.yaml": (set(), True),
    "hp-tuning/optuna-distribution.yaml": (set(), True),
    "hp-tuning/random.yaml": (set(), True),
    "hp-tuning/simple-pbt.yaml": ({"spec.algorithm.algorithmName", "spec.resumePolicy"}, True),
    "hp-tuning/sobol.yaml": (set(), True),
    "hp-tuning/tpe.yaml": (set(), True),
    "kubeflow-trainer/trainjob-pytorch.yaml": ({f"{TRIAL_SPEC}.kind"}, False),
    "kubeflow-training-operator/mpijob-horovod.yaml": (set(), True),
    "kubeflow-training-operator/pytorchjob-mnist.yaml": (
        {
            f"{TRIAL_SPEC}.spec.pytorchReplicaSpecs.Master.restartPolicy",
            f"{TRIAL_SPEC}.spec.pytorchReplicaSpecs.Worker.restartPolicy",
        },
        True,
    ),
    "kubeflow-training-operator/tfjob-mnist-with-summaries.yaml": (
        {"spec.metricsCollectorSpec.collector.kind", f"{TRIAL_SPEC}.kind"},
        False,
    ),
    "kubeflow-training-operator/xgboostjob-lightgbm.yaml": (
        {
            "spec.objective.objectiveMetricName",
            "spec.objective.additionalMetricNames[0]",
            "spec.objective.additionalMetricNames[1]",
            "spec.objective.additionalMetricNames[2]",
            f"{TRIAL_SPEC}.kind",
        },
        False,
    ),
    "metrics-collector/custom-metrics-collector.yaml": ({"spec.metricsCollectorSpec.collector.kind"}, True),
    "metrics-collector/file-metrics-collector.yaml": (set(), True),
    "metrics-collector/file-metrics-collector-with-json-format.yaml": (set(), True),
    "metrics-collector/metrics-collection-strategy.yaml": (set(), True),
    "nas/enas-cpu.yaml": (
        {
            "spec.nasConfig",
            "spec.parameters",
            "spec.algorithm.algorithmName",
            "spec.trialTemplate.trialParameters[0].reference",
            "spec.trialTemplate.trialParameters[1].reference",
        },
        False,
    ),
    "resume-experiment/from-volume-resume.yaml": ({"spec.resumePolicy"}, True),
    "resume-experiment/long-running-resume.yaml": ({"spec.resumePolicy"}, True),
    "trial-template/trial-configmap-source.yaml": ({"spec.trialTemplate.configMap"}, False),
    "trial-template/trial-metadata-substitution.yaml": (
        {f"spec.trialTemplate.trialParameters[{i}].reference" for i in range(2, 8)}
        | {f"{JOB_POD}.containers[0].env[{i}].value" for i in range(6)},
        True,
    ),
}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DATA / name).read_text())


def valid(job: dict[str, Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Optuna's CmaEsSampler(sigma0=...) notice
        return validate_document(copy.deepcopy(job))


def paths(conversion: Any) -> set[str]:
    return {p for p, _ in conversion.unmapped}


def reason(conversion: Any, path: str) -> str:
    found = [r for p, r in conversion.unmapped if p == path]
    assert found, f"{path} not unmapped; unmapped: {conversion.unmapped}"
    return found[0]


def experiment(**spec: Any) -> dict[str, Any]:
    """A minimal valid Katib Experiment (like hp-tuning/random.yaml); keyword arguments replace spec fields."""
    base: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "exp", "namespace": "team"},
        "spec": {
            "objective": {"type": "minimize", "goal": 0.001, "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": 2,
            "maxTrialCount": 8,
            "maxFailedTrialCount": 3,
            "parameters": [
                {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.05"}},
                {"name": "momentum", "parameterType": "double", "feasibleSpace": {"min": "0.5", "max": "0.9"}},
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": "learningRate", "reference": "lr"},
                    {"name": "momentum", "reference": "momentum"},
                ],
                "trialSpec": job_spec(),
            },
        },
    }
    base["spec"].update(spec)
    return base


def job_spec(container: dict[str, Any] | None = None, **pod: Any) -> dict[str, Any]:
    c = (
        container
        if container is not None
        else {
            "name": "training-container",
            "image": "train:1",
            "command": [
                "python3",
                "train.py",
                "--lr=${trialParameters.learningRate}",
                "--momentum=${trialParameters.momentum}",
            ],
        }
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [c], "restartPolicy": "Never", **pod}}},
    }


def with_container(**fields: Any) -> dict[str, Any]:
    c = {"name": "training-container", "image": "train:1", **fields}
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"] = job_spec(c)
    return exp


def with_pod(**pod: Any) -> dict[str, Any]:
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"] = job_spec(None, **pod)
    return exp


def with_algorithm(name: str, **settings: Any) -> dict[str, Any]:
    return experiment(
        algorithm={
            "algorithmName": name,
            "algorithmSettings": [{"name": k, "value": str(v)} for k, v in settings.items()],
        }
    )


def with_parameter(**p: Any) -> dict[str, Any]:
    exp = experiment()
    exp["spec"]["parameters"][0] = {"name": "lr", **p}
    return exp


# ============================================================================= the vendored examples
def test_every_vendored_example_is_in_the_table() -> None:
    found = {str(p.relative_to(DATA)) for p in DATA.rglob("*.yaml")}
    assert found == set(EXAMPLES)
    assert len([f for f in found if f.startswith(("hp-tuning/", "early-stopping/"))]) == 13
    readme = (DATA / "README.md").read_text()
    assert "33c8ff4e5d1814b59abd308e6819e839e9906bc2" in readme and "Apache License 2.0" in readme
    assert (DATA / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_vendored_example(name: str) -> None:
    expected, lossy_valid = EXAMPLES[name]
    c = convert(load(name))
    assert paths(c) == expected, c.unmapped
    assert len(c.unmapped) == len(paths(c)), "a path is reported twice"
    assert all(reason for _, reason in c.unmapped)
    if not expected or lossy_valid:
        job = valid(c.job)
        assert job.name == load(name)["metadata"]["name"]
        assert job.metadata.namespace == "kubeflow"
    else:
        with pytest.raises(InvalidTuningJob):
            valid(c.job)


def test_random_example_exactly() -> None:
    c = convert(load("hp-tuning/random.yaml"))
    assert c.job == {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "random", "namespace": "kubeflow"},
        "spec": {
            "objective": {"metric": "loss", "direction": "minimize", "target": 0.001},
            "budget": {"maxTrials": 12, "parallelism": 3, "maxFailedTrials": 2},
            "algorithm": {"sampler": "random"},
            "parameters": [
                {"name": "lr", "type": "float", "low": 0.01, "high": 0.05},
                {"name": "momentum", "type": "float", "low": 0.5, "high": 0.9},
            ],
            "trial": {
                "command": [
                    "python3",
                    "/opt/pytorch-mnist/mnist.py",
                    "--epochs=1",
                    "--batch-size=16",
                    "--lr=${trialParameters.lr}",
                    "--momentum=${trialParameters.momentum}",
                ],
                "image": "ghcr.io/kubeflow/katib/pytorch-mnist-cpu:latest",
                "workers": 1,
                "resources": {"limits": {"memory": "1Gi", "cpu": "0.5"}},
            },
            "metrics": {"collector": {"kind": "stdout"}},
        },
    }
    assert len(c.notes) == 1 and "maxFailedTrials 2" in c.notes[0]


def test_vendored_examples_keep_their_algorithm() -> None:
    def alg(name: str) -> dict[str, Any]:
        return convert(load(name)).job["spec"]["algorithm"]

    assert alg("hp-tuning/tpe.yaml") == {"sampler": "tpe", "settings": {"multivariate": False, "constant_liar": True}}
    assert alg("hp-tuning/multivariate-tpe.yaml") == {
        "sampler": "tpe",
        "settings": {"multivariate": True, "constant_liar": True},
    }
    assert alg("hp-tuning/bayesian-optimization.yaml") == {"sampler": "gp", "seed": 10}
    assert alg("hp-tuning/cma-es.yaml") == {"sampler": "cmaes"}
    assert alg("hp-tuning/sobol.yaml") == {"sampler": "qmc", "settings": {"qmc_type": "sobol"}}
    assert alg("hp-tuning/grid.yaml") == {"sampler": "grid"}


def test_file_and_json_collectors_of_the_examples() -> None:
    mc = convert(load("metrics-collector/file-metrics-collector.yaml")).job["spec"]["metrics"]["collector"]
    assert mc == {
        "kind": "file",
        "path": "/katib/mnist.log",
        "format": "text",
        "filter": r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}",
    }
    mc = convert(load("early-stopping/median-stop-with-json-format.yaml")).job["spec"]["metrics"]["collector"]
    assert mc == {"kind": "file", "path": "/katib/mnist.json", "format": "json"}


def _admission() -> Any:
    pytest.importorskip("celpy")
    spec = importlib.util.spec_from_file_location(
        "katib_test_admission", REPO / "tests" / "k8s" / "harness" / "admission.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONVERTED = sorted(n for n, (unmapped, lossy_valid) in EXAMPLES.items() if not unmapped or lossy_valid)


@pytest.mark.parametrize("name", CONVERTED)
def test_converted_examples_pass_the_crd_admission(name: str) -> None:
    """Strict admission (kubectl apply's fieldValidation=Strict) by the committed CRD file.

    CAVEAT: the fields a conversion produces (spec.metrics.collector, spec.objective.additionalMetrics
    and metricStrategies, spec.trial.podTemplate, '-' in parameter names) came with a regeneration of
    crds/openautoglm.io_tuningjobs.yaml; against an older file this test xfails, saying so.
    """
    admission = _admission()
    properties = admission.schema()["properties"]["spec"]["properties"]
    if "collector" not in properties["metrics"].get("properties", {}):
        pytest.xfail("crds/openautoglm.io_tuningjobs.yaml not regenerated yet (no spec.metrics.collector)")
    job = convert(load(name)).job
    assert admission.review(job, strict=True) == []


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
    assert paths(c) == {"spec.parameters[0].feasibleSpace.distribution"}


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


# ============================================================================= early stopping, budget
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


# ============================================================================= metrics collector
def mc(collector: dict[str, Any] | None = None, **source: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if collector is not None:
        spec["collector"] = collector
    if source:
        spec["source"] = source
    return experiment(metricsCollectorSpec=spec)


def test_stdout_collector_with_a_filter() -> None:
    c = convert(mc({"kind": "StdOut"}, filter={"metricsFormat": [r"([\w-]+):\s*([+-]?\d+\.?\d*)"]}))
    assert c.job["spec"]["metrics"] == {"collector": {"kind": "stdout", "filter": r"([\w-]+):\s*([+-]?\d+\.?\d*)"}}
    valid(c.job)


def test_several_filters_are_unmapped() -> None:
    c = convert(mc(filter={"metricsFormat": [r"(\w+)=(\d+)", r"(\w+): (\d+)"]}))
    assert paths(c) == {"spec.metricsCollectorSpec.source.filter.metricsFormat"}
    c = convert(mc(filter={"metricsFormat": [r"(\w+)=\d+"]}))
    assert paths(c) == {"spec.metricsCollectorSpec.source.filter.metricsFormat[0]"}


def test_file_collector() -> None:
    c = convert(mc({"kind": "File"}, fileSystemPath={"path": "/out/m.log", "kind": "File", "format": "TEXT"}))
    assert c.job["spec"]["metrics"]["collector"] == {"kind": "file", "path": "/out/m.log", "format": "text"}
    valid(c.job)
    c = convert(mc({"kind": "File"}, fileSystemPath={"path": "/out/m.json", "kind": "File", "format": "JSON"}))
    assert c.job["spec"]["metrics"]["collector"] == {"kind": "file", "path": "/out/m.json", "format": "json"}
    c = convert(mc({"kind": "File"}, fileSystemPath={"path": "/out", "kind": "Directory"}))
    assert paths(c) == {"spec.metricsCollectorSpec.source.fileSystemPath.kind"}


def test_prometheus_collector() -> None:
    c = convert(mc({"kind": "PrometheusMetric"}, httpGet={"port": 8000, "path": "/stats"}))
    assert c.job["spec"]["metrics"] == {"collector": {"kind": "prometheus", "port": 8000, "metricsPath": "/stats"}}
    valid(c.job)
    c = convert(mc({"kind": "PrometheusMetric"}))
    assert c.job["spec"]["metrics"]["collector"] == {"kind": "prometheus", "port": 8080, "metricsPath": "/metrics"}
    c = convert(mc({"kind": "PrometheusMetric"}, httpGet={"port": 9090}))  # the supervisor's port: ours moves
    assert c.job["spec"]["metrics"] == {
        "port": 9091,
        "collector": {"kind": "prometheus", "port": 9090, "metricsPath": "/metrics"},
    }
    valid(c.job)
    c = convert(mc({"kind": "PrometheusMetric"}, httpGet={"port": "metrics", "scheme": "HTTPS"}))
    assert paths(c) == {
        "spec.metricsCollectorSpec.source.httpGet.port",
        "spec.metricsCollectorSpec.source.httpGet.scheme",
    }


def test_push_collector() -> None:
    c = convert(mc({"kind": "Push"}))
    assert c.job["spec"]["metrics"] == {"collector": {"kind": "push"}}
    assert any("openautoglm_trial.report" in n for n in c.notes)
    valid(c.job)


@pytest.mark.parametrize("kind", ["TensorFlowEvent", "Custom", "None", "Magic"])
def test_unmappable_collectors(kind: str) -> None:
    assert paths(convert(mc({"kind": kind}))) == {"spec.metricsCollectorSpec.collector.kind"}


# ============================================================================= the trial: command
def test_trial_parameters_are_rewritten_to_their_reference() -> None:
    c = convert(experiment())
    assert c.job["spec"]["trial"]["command"] == [
        "python3",
        "train.py",
        "--lr=${trialParameters.lr}",
        "--momentum=${trialParameters.momentum}",
    ]


def test_command_and_args_make_one_argv() -> None:
    c = convert(with_container(command=["python3"], args=["train.py", "--lr", "${trialParameters.learningRate}"]))
    assert c.job["spec"]["trial"]["command"] == ["python3", "train.py", "--lr", "${trialParameters.lr}"]


def test_undeclared_placeholder_and_trial_metadata() -> None:
    c = convert(with_container(command=["python3", "train.py", "--x=${trialParameters.nope}"]))
    assert paths(c) == {f"{JOB_POD}.containers[0].command"}
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialParameters"].append({"name": "trialName", "reference": "${trialSpec.Name}"})
    c = convert(exp)
    assert paths(c) == {"spec.trialTemplate.trialParameters[2].reference"}


def test_kubelet_variable_expansion_is_unmapped() -> None:
    c = convert(with_container(command=["python3", "train.py", "--out=$(OUT_DIR)/x"]))
    assert paths(c) == {f"{JOB_POD}.containers[0].command"}
    assert "$(VAR)" in reason(c, f"{JOB_POD}.containers[0].command")
    c = convert(with_container(command=["python3", "train.py", "--price=$$(x)"]))
    assert c.complete


def test_shell_string_is_split() -> None:
    script = (
        "python3 /opt/train.py --lr=${trialParameters.learningRate} --name 'my run' \\\n"
        '  --momentum "${trialParameters.momentum}"'
    )
    c = convert(with_container(command=["sh", "-c", script]))
    assert c.complete, c.unmapped
    assert c.job["spec"]["trial"]["command"] == [
        "python3",
        "/opt/train.py",
        "--lr=${trialParameters.lr}",
        "--name",
        "my run",
        "--momentum",
        "${trialParameters.momentum}",
    ]
    assert any("split into the exec-form command" in n for n in c.notes)
    valid(c.job)
    c = convert(with_container(command=["/bin/bash", "-c"], args=["exec python3 train.py"]))
    assert c.job["spec"]["trial"]["command"] == ["python3", "train.py"]


@pytest.mark.parametrize(
    "script, what",
    [
        ("cd /app && python3 train.py", "'&'"),
        ("python3 train.py | tee log", "'|'"),
        ("python3 train.py; echo done", "';'"),
        ("python3 train.py > /tmp/out", "'>'"),
        ("python3 train.py --dir=$(pwd)", "expansion"),
        ("python3 train.py --home=$HOME", "expansion"),
        ('python3 train.py --home="$HOME"', "expansion"),
        ("python3 `which train`", "command substitution"),
        ("python3 train.py\npython3 eval.py", "several command lines"),
        ("python3 train_*.py", "glob"),
        ("LR=0.1 python3 train.py", "variable assignment"),
        ("python3 'train.py", "unterminated"),
    ],
)
def test_shell_string_with_operators_is_refused(script: str, what: str) -> None:
    c = convert(with_container(command=["sh", "-c", script]))
    assert paths(c) == {f"{JOB_POD}.containers[0].command"}
    assert what in reason(c, f"{JOB_POD}.containers[0].command")


def test_shell_words() -> None:
    assert shell_words("python a.py --x='a b' --y=\"${trialParameters.y}\"") == (
        ["python", "a.py", "--x=a b", "--y=${trialParameters.y}"],
        None,
    )
    # Katib replaces placeholders as text before any shell: inside single quotes too.
    assert shell_words("python a.py '${trialParameters.y}'")[0] == ["python", "a.py", "${trialParameters.y}"]
    assert shell_words("python a.py 'a|b;c'")[0] == ["python", "a.py", "a|b;c"]
    assert shell_words("")[1] == "the shell script is empty"


def test_missing_command_is_unmapped() -> None:
    c = convert(with_container(args=["--lr=${trialParameters.learningRate}"]))
    assert paths(c) == {f"{JOB_POD}.containers[0].command"}
    assert "ENTRYPOINT" in reason(c, f"{JOB_POD}.containers[0].command")


# ============================================================================= the trial: container and pod
def test_container_fields() -> None:
    exp = with_container(
        command=["python3", "train.py"],
        resources={"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}},
        env=[
            {"name": "MODE", "value": "fast"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
        ],
        envFrom=[{"configMapRef": {"name": "common"}}],
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        workingDir="/app",
        imagePullPolicy="Always",
        ports=[{"containerPort": 8000}],
        livenessProbe={"httpGet": {"port": 8000, "path": "/"}},
    )
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}
    ]
    c = convert(exp)
    assert c.complete, c.unmapped
    trial = c.job["spec"]["trial"]
    assert trial["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"nvidia.com/gpu": "1", "memory": "8Gi"},
    }
    assert trial["env"] == [{"name": "MODE", "value": "fast"}]
    assert trial["podTemplate"]["spec"]["containers"] == [
        {
            "name": "worker",
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}],
            "envFrom": [{"configMapRef": {"name": "common"}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "workingDir": "/app",
            "imagePullPolicy": "Always",
        }
    ]
    assert c.job["spec"]["trial"]["podTemplate"]["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}
    ]
    assert any("container ports dropped" in n for n in c.notes)
    assert any("livenessProbe dropped" in n for n in c.notes)
    valid(c.job)


def test_no_resources_note() -> None:
    c = convert(experiment())
    assert "resources" not in c.job["spec"]["trial"]
    assert any("BestEffort" in n for n in c.notes)


def test_reserved_env_and_placeholders_in_env() -> None:
    c = convert(
        with_container(
            command=["python3", "t.py"],
            env=[{"name": "HOROVOD_RANK", "value": "0"}, {"name": "LR", "value": "${trialParameters.learningRate}"}],
        )
    )
    assert paths(c) == {f"{JOB_POD}.containers[0].env[0].name", f"{JOB_POD}.containers[0].env[1].value"}


def test_pod_fields_pass_through() -> None:
    pod = {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "serviceAccountName": "trainer",
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "batch",
        "runtimeClassName": "nvidia",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
        "initContainers": [{"name": "fetch", "image": "busybox", "command": ["true"]}],
        "activeDeadlineSeconds": 3600,
    }
    exp = with_pod(**pod)
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["metadata"] = {"labels": {"team": "ml"}}
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"].append(
        {"name": "logger", "image": "fluent-bit", "securityContext": {"runAsUser": 1000}}
    )
    c = convert(exp)
    assert c.complete, c.unmapped
    trial = c.job["spec"]["trial"]
    assert trial["timeoutSeconds"] == 3600
    overlay = trial["podTemplate"]
    assert overlay["metadata"] == {"labels": {"team": "ml"}}
    expected = {k: v for k, v in pod.items() if k != "activeDeadlineSeconds"}
    assert {k: v for k, v in overlay["spec"].items() if k != "containers"} == expected
    assert overlay["spec"]["containers"] == [
        {"name": "logger", "image": "fluent-bit", "securityContext": {"runAsUser": 1000}}
    ]  # a sidecar
    valid(c.job)


@pytest.mark.parametrize(
    "pod, path",
    [
        ({"restartPolicy": "OnFailure"}, f"{JOB_POD}.restartPolicy"),
        ({"hostNetwork": True}, f"{JOB_POD}.hostNetwork"),
        ({"hostPID": True}, f"{JOB_POD}.hostPID"),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/var"}}]}, f"{JOB_POD}.volumes[0].hostPath"),
        ({"securityContext": {"runAsUser": 0}}, f"{JOB_POD}.securityContext.runAsUser"),
        ({"dnsPolicy": "None"}, f"{JOB_POD}.dnsPolicy"),
    ],
)
def test_forbidden_pod_fields(pod: dict[str, Any], path: str) -> None:
    assert path in paths(convert(with_pod(**pod)))


@pytest.mark.parametrize(
    "security, path",
    [
        ({"privileged": True}, "privileged"),
        ({"allowPrivilegeEscalation": True}, "allowPrivilegeEscalation"),
        ({"capabilities": {"add": ["NET_ADMIN"]}}, "capabilities.add[0]"),
        ({"runAsNonRoot": False}, "runAsNonRoot"),
    ],
)
def test_container_escalations_are_unmapped(security: dict[str, Any], path: str) -> None:
    c = convert(with_container(command=["python3", "t.py"], securityContext=security))
    assert paths(c) == {f"{JOB_POD}.containers[0].securityContext.{path}"}


def test_restricted_security_context_passes_through() -> None:
    security = {"runAsUser": 1000, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    c = convert(with_container(command=["python3", "t.py"], securityContext=security))
    assert c.complete, c.unmapped
    assert c.job["spec"]["trial"]["podTemplate"]["spec"]["containers"] == [
        {"name": "worker", "securityContext": security}
    ]
    valid(c.job)


def test_lossy_overlay_drops_what_the_operator_refuses() -> None:
    exp = with_pod(
        hostNetwork=True, volumes=[{"name": "h", "hostPath": {"path": "/var"}}, {"name": "tmp", "emptyDir": {}}]
    )
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"].append(
        {"name": "proxy", "image": "envoy", "securityContext": {"privileged": True, "runAsUser": 1000}}
    )
    c = convert(exp)
    assert paths(c) == {
        f"{JOB_POD}.hostNetwork",
        f"{JOB_POD}.volumes[0].hostPath",
        f"{JOB_POD}.containers[1].securityContext.privileged",
    }
    assert c.job["spec"]["trial"]["podTemplate"]["spec"] == {  # what --lossy writes
        "containers": [{"name": "proxy", "image": "envoy", "securityContext": {"runAsUser": 1000}}],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    valid(c.job)


def test_pod_restart_policy_never_is_the_operators() -> None:
    assert convert(with_pod()).complete  # restartPolicy: Never


def test_job_fields() -> None:
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"].update(
        {"backoffLimit": 0, "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60}
    )
    c = convert(exp)
    assert c.complete and c.job["spec"]["trial"]["timeoutSeconds"] == 600
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"].update({"backoffLimit": 4, "completions": 3})
    assert paths(convert(exp)) == {f"{TRIAL_SPEC}.spec.backoffLimit", f"{TRIAL_SPEC}.spec.completions"}


def test_trial_template_fields() -> None:
    exp = experiment()
    exp["spec"]["trialTemplate"].update(
        {
            "retain": True,
            "successCondition": "status.x",
            "failureCondition": "status.y",
            "primaryPodLabels": {"role": "master"},
        }
    )
    c = convert(exp)
    assert c.complete
    assert any("retain dropped" in n for n in c.notes)
    assert any("successCondition dropped" in n for n in c.notes)
    assert any("primaryPodLabels dropped" in n for n in c.notes)


def test_config_map_template_is_unmapped() -> None:
    exp = experiment()
    del exp["spec"]["trialTemplate"]["trialSpec"]
    exp["spec"]["trialTemplate"]["configMap"] = {
        "configMapName": "t",
        "configMapNamespace": "k",
        "templatePath": "a.yaml",
    }
    c = convert(exp)
    assert paths(c) == {"spec.trialTemplate.configMap"}


def test_primary_container_must_exist() -> None:
    exp = experiment()
    exp["spec"]["trialTemplate"]["primaryContainerName"] = "main"
    assert paths(convert(exp)) == {f"{JOB_POD}.containers"}


# ============================================================================= PyTorchJob, MPIJob, others
def pytorch_job(workers: int, worker_command: list[str] | None = None, policy: str = "Never") -> dict[str, Any]:
    def replica(n: int, command: list[str]) -> dict[str, Any]:
        return {
            "replicas": n,
            "restartPolicy": policy,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "pytorch",
                            "image": "mnist:1",
                            "command": command,
                            "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
                        }
                    ]
                }
            },
        }

    command = ["python3", "mnist.py", "--lr=${trialParameters.learningRate}", "--momentum=${trialParameters.momentum}"]
    exp = experiment()
    exp["spec"]["trialTemplate"]["primaryContainerName"] = "pytorch"
    exp["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": replica(1, command),
                "Worker": replica(workers, worker_command or command),
            }
        },
    }
    return exp


def test_pytorchjob_workers_count() -> None:
    c = convert(pytorch_job(3))
    assert c.complete, c.unmapped
    trial = c.job["spec"]["trial"]
    assert trial["workers"] == 4  # Master + 3 Workers
    assert trial["image"] == "mnist:1"
    assert trial["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
    assert trial["command"] == [
        "python3",
        "mnist.py",
        "--lr=${trialParameters.lr}",
        "--momentum=${trialParameters.momentum}",
    ]
    assert any("not torch.distributed's" in n for n in c.notes)
    valid(c.job)


def test_pytorchjob_replicas_must_match_and_not_restart() -> None:
    c = convert(pytorch_job(1, worker_command=["python3", "other.py"]))
    assert paths(c) == {f"{TRIAL_SPEC}.spec.pytorchReplicaSpecs.Worker.template"}
    c = convert(pytorch_job(1, policy="OnFailure"))
    assert paths(c) == {
        f"{TRIAL_SPEC}.spec.pytorchReplicaSpecs.Master.restartPolicy",
        f"{TRIAL_SPEC}.spec.pytorchReplicaSpecs.Worker.restartPolicy",
    }


def mpi_job(launcher_command: list[str], launcher_args: list[str], workers: int = 2, **spec: Any) -> dict[str, Any]:
    exp = experiment()
    exp["spec"]["trialTemplate"]["primaryContainerName"] = "mpi-launcher"
    exp["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "MPIJob",
        "spec": {
            "slotsPerWorker": 1,
            "cleanPodPolicy": "Running",
            **spec,
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "mpi-launcher",
                                    "image": "hvd:1",
                                    "command": launcher_command,
                                    "args": launcher_args,
                                    "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
                                    "resources": {"limits": {"cpu": "500m"}},
                                }
                            ]
                        }
                    },
                },
                "Worker": {
                    "replicas": workers,
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "mpi-worker",
                                    "image": "hvd:1",
                                    "resources": {"limits": {"cpu": "4", "memory": "8Gi"}},
                                }
                            ]
                        }
                    },
                },
            },
        },
    }
    return exp


def test_mpijob_launcher_is_stripped() -> None:
    exp = mpi_job(
        ["mpirun"],
        [
            "-np",
            "3",
            "--allow-run-as-root",
            "-bind-to",
            "none",
            "-map-by",
            "slot",
            "-x",
            "NCCL_DEBUG",
            "-x",
            "MODE=fast",
            "-mca",
            "pml",
            "ob1",
            "--mca",
            "btl",
            "^openib",
            "python",
            "/examples/train.py",
            "--lr",
            "${trialParameters.learningRate}",
            "--momentum=${trialParameters.momentum}",
        ],
        workers=3,
    )
    c = convert(exp)
    assert c.complete, c.unmapped
    trial = c.job["spec"]["trial"]
    assert trial["command"] == [
        "python",
        "/examples/train.py",
        "--lr",
        "${trialParameters.lr}",
        "--momentum=${trialParameters.momentum}",
    ]
    assert trial["workers"] == 3
    assert trial["image"] == "hvd:1"
    assert trial["resources"] == {"limits": {"cpu": "4", "memory": "8Gi"}}  # the Worker's, where the program runs
    # -x NAME=VALUE sets it; -x NAME forwards the launcher's value.
    assert trial["env"] == [{"name": "MODE", "value": "fast"}, {"name": "NCCL_DEBUG", "value": "INFO"}]
    assert any("removed; the operator starts the 3 ranks itself" in n for n in c.notes)
    valid(c.job)


def test_mpijob_horovodrun_and_shell_form() -> None:
    c = convert(mpi_job(["horovodrun"], ["-np", "2", "-H", "localhost:2", "--gloo", "python", "train.py"]))
    assert c.job["spec"]["trial"]["command"] == ["python", "train.py"]
    c = convert(
        mpi_job(["sh", "-c"], ["mpirun -np 2 --allow-run-as-root python train.py --lr=${trialParameters.learningRate}"])
    )
    assert c.complete, c.unmapped
    assert c.job["spec"]["trial"]["command"] == ["python", "train.py", "--lr=${trialParameters.lr}"]


def test_mpijob_refusals() -> None:
    launcher = f"{TRIAL_SPEC}.spec.mpiReplicaSpecs.Launcher.template.spec.containers[0]"
    c = convert(mpi_job(["mpirun"], ["--weird-option", "python", "train.py"]))
    assert paths(c) == {f"{launcher}.args"}
    assert "--weird-option" in reason(c, f"{launcher}.args")
    c = convert(mpi_job(["python"], ["launch.py"]))
    assert paths(c) == {f"{launcher}.command"}
    c = convert(mpi_job(["mpirun"], ["python", "train.py"], slotsPerWorker=4))
    assert paths(c) == {f"{TRIAL_SPEC}.spec.slotsPerWorker"}


def test_strip_mpi_launcher() -> None:
    program, info, why = strip_mpi_launcher(["mpirun", "-n", "4", "-genv", "A", "1", "--", "python", "x.py", "-n", "2"])
    assert (program, why) == (["python", "x.py", "-n", "2"], None)
    assert info["np"] == 4 and info["env"] == {"A": "1"}
    assert strip_mpi_launcher(["mpirun", "-np"])[2] == "-np has no value"
    assert strip_mpi_launcher(["mpirun", "--allow-run-as-root"])[2] == "no program after the mpirun options"


@pytest.mark.parametrize(
    "api, kind",
    [
        ("kubeflow.org/v1", "TFJob"),
        ("kubeflow.org/v1", "XGBoostJob"),
        ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
        ("argoproj.io/v1alpha1", "Workflow"),
    ],
)
def test_other_trial_kinds_are_unmapped(api: str, kind: str) -> None:
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"] = {"apiVersion": api, "kind": kind, "spec": {}}
    assert paths(convert(exp)) == {f"{TRIAL_SPEC}.kind"}


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
    assert paths(convert(experiment(resumePolicy="LongRunning"))) == {"spec.resumePolicy"}
    c = convert(experiment(nasConfig={"graphConfig": {"numLayers": 1}}))
    assert paths(c) == {"spec.nasConfig"}
    assert reason(c, "spec.nasConfig") == "not supported (neural architecture search)"
    assert paths(convert(experiment(unknownThing=1))) == {"spec.unknownThing"}


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


# ============================================================================= the CLI
def test_cli_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = DATA / "hp-tuning" / "tpe.yaml"
    assert cli.main(["import-katib", str(src)]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out) == convert(load("hp-tuning/tpe.yaml")).job  # the YAML round-trips
    assert err == ""
    job_file = tmp_path / "job.yaml"
    job_file.write_text(out)
    assert cli.main(["validate", str(job_file)]) == 0
    capsys.readouterr()
    assert cli.main(["import-katib", str(src), "-o", str(tmp_path / "out.yaml")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "wrote" in err
    assert yaml.safe_load((tmp_path / "out.yaml").read_text()) == convert(load("hp-tuning/tpe.yaml")).job


def test_cli_lists_unmappable_fields(capsys: pytest.CaptureFixture[str]) -> None:
    src = DATA / "hp-tuning" / "simple-pbt.yaml"
    assert cli.main(["import-katib", str(src)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "spec.algorithm.algorithmName: 'pbt' has no equivalent" in err
    assert "spec.resumePolicy: FromVolume" in err
    assert "--lossy" in err


def test_cli_lossy(capsys: pytest.CaptureFixture[str]) -> None:
    src = DATA / "hp-tuning" / "simple-pbt.yaml"
    assert cli.main(["import-katib", "--lossy", str(src)]) == 0
    out, err = capsys.readouterr()
    job = yaml.safe_load(out)
    assert job == convert(load("hp-tuning/simple-pbt.yaml")).job
    assert "algorithm" not in job["spec"] or "sampler" not in job["spec"]["algorithm"]
    assert "spec.algorithm.algorithmName" in err and "dropped (--lossy)" in err
    assert "# NOT converted (dropped by --lossy):" in out


def test_cli_lossy_without_a_trial_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import-katib", "--lossy", str(DATA / "trial-template" / "trial-configmap-source.yaml")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "spec.trial" in err and "Nothing written" in err


def test_cli_rejects_other_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "job.yaml"
    f.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap"}))
    assert cli.main(["import-katib", str(f)]) == 2
    assert "exactly one Katib Experiment" in capsys.readouterr().err


def test_console_script() -> None:
    """The installed `openautoglm` entry point (or the module when it is not on PATH), reading stdin."""
    exe = shutil.which("openautoglm")
    argv = ([exe] if exe else [sys.executable, "-m", "openautoglm.cli"]) + ["import-katib", "-"]
    proc = subprocess.run(
        argv,
        input=(DATA / "early-stopping" / "median-stop.yaml").read_text(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    job = yaml.safe_load(proc.stdout)
    assert job["spec"]["earlyStopping"] == {
        "pruner": "median",
        "settings": {"n_startup_trials": 1, "n_warmup_steps": 2},
    }

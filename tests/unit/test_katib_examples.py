"""import-katib on the vendored examples (tests/data/katib, Katib commit 33c8ff4): each has the exact
set of paths the converter cannot map; every converted job passes our validation and the CRD's admission.
"""

from __future__ import annotations

from typing import Any

import pytest
from katib_experiments import DATA, JOB_POD, TRIAL_SPEC, load, paths, valid
from katib_experiments import admission as katib_admission

from openautoglm.katib import convert
from openautoglm.validation import InvalidTuningJob

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
    # resumePolicy FromVolume is dropped with a note since issue 22 (a raised maxTrials continues a job)
    "hp-tuning/simple-pbt.yaml": ({"spec.algorithm.algorithmName"}, True),
    "hp-tuning/sobol.yaml": (set(), True),
    "hp-tuning/tpe.yaml": (set(), True),
    "kubeflow-trainer/trainjob-pytorch.yaml": ({f"{TRIAL_SPEC}.kind"}, False),
    "kubeflow-training-operator/mpijob-horovod.yaml": (set(), True),
    # restartPolicy OnFailure: a note on trial.retries since issue 22 (was refused as "never restarted")
    "kubeflow-training-operator/pytorchjob-mnist.yaml": (set(), True),
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
            # the command that uses them: named since issue 22 (--lossy dropped it silently)
            f"{TRIAL_SPEC}.spec.template.spec.containers[0].command",
        },
        False,
    ),
    # resumePolicy: dropped with a note since issue 22
    "resume-experiment/from-volume-resume.yaml": (set(), True),
    "resume-experiment/long-running-resume.yaml": (set(), True),
    "trial-template/trial-configmap-source.yaml": ({"spec.trialTemplate.configMap"}, False),
    "trial-template/trial-metadata-substitution.yaml": (
        {f"spec.trialTemplate.trialParameters[{i}].reference" for i in range(2, 8)}
        | {f"{JOB_POD}.containers[0].env[{i}].value" for i in range(6)},
        True,
    ),
}


# ============================================================================= the vendored examples
def test_every_vendored_example_is_in_the_table() -> None:
    found = {str(p.relative_to(DATA)) for p in DATA.rglob("*.yaml")}
    # The 27 of examples/v1beta1 vendored first; that the directory holds nothing else than the
    # 41 Experiments of kubeflow/katib is test_katib_corpus's CORPUS table.
    assert set(EXAMPLES) <= found
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
    # Since issue 22 also what Katib's unset backoffLimit meant and what image to build.
    assert len(c.notes) == 3 and "maxFailedTrials 2" in c.notes[0]
    assert c.notes[1].startswith("trialSpec.spec.backoffLimit unset") and "FROM openautoglm/trial" in c.notes[2]


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


CONVERTED = sorted(n for n, (unmapped, lossy_valid) in EXAMPLES.items() if not unmapped or lossy_valid)


@pytest.mark.parametrize("name", CONVERTED)
def test_converted_examples_pass_the_crd_admission(name: str) -> None:
    """Strict admission (kubectl apply's fieldValidation=Strict) by the committed CRD file.

    CAVEAT: the fields a conversion produces (spec.metrics.collector, spec.objective.additionalMetrics
    and metricStrategies, spec.trial.podTemplate, '-' in parameter names) came with a regeneration of
    crds/openautoglm.io_tuningjobs.yaml; against an older file this test xfails, saying so.
    """
    admission = katib_admission()
    properties = admission.schema()["properties"]["spec"]["properties"]
    if "collector" not in properties["metrics"].get("properties", {}):
        pytest.xfail("crds/openautoglm.io_tuningjobs.yaml not regenerated yet (no spec.metrics.collector)")
    job = convert(load(name)).job
    assert admission.review(job, strict=True) == []

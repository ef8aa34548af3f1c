"""Every Katib Experiment of kubeflow/katib through `openautoglm import-katib`, as a migrating user tries it.

tests/data/katib holds all 41 Experiments of kubeflow/katib at the vendored commit: the YAMLs under
examples/ and test/e2e, and the Experiments its SDK and pipeline notebooks build, written out. Each file
has one expected outcome, the one tests/data/katib/README.md lists and the top-level README counts:

- ``converts``: ``import-katib`` writes a valid TuningJob as the file is;
- ``lossy``: refused as it is, written (and valid) with ``--lossy``;
- ``refused``: refused even with ``--lossy``, for a reason a Katib user recognises.

Whatever the outcome, the converter answers with an exit status, never an exception.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pytest
import yaml
from katib_experiments import admission as katib_admission

from openautoglm import cli
from openautoglm.katib import Conversion, NotAnExperiment, convert
from openautoglm.validation import validate_document

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "katib"

Outcome = Literal["converts", "lossy", "refused"]


class Expected(NamedTuple):
    outcome: Outcome
    #: for a refused file: words of the reason, in Katib's terms, that both runs must print
    reason: str = ""


CONVERTS = Expected("converts")
LOSSY = Expected("lossy")
NAS = Expected("refused", "neural architecture search")
SHELL_SCRIPT = Expected("refused", "shell")  # the SDK's tune(): `bash -c` with a heredoc script

#: tests/data/katib file -> what import-katib does with it.
CORPUS: dict[str, Expected] = {
    # examples/v1beta1/ (the YAMLs)
    "argo/argo-workflow.yaml": Expected("refused", "Workflow"),
    "early-stopping/median-stop.yaml": CONVERTS,
    "early-stopping/median-stop-with-json-format.yaml": CONVERTS,
    "fpga/xgboost-example.yaml": CONVERTS,
    "hp-tuning/bayesian-optimization.yaml": CONVERTS,
    "hp-tuning/cma-es.yaml": CONVERTS,
    "hp-tuning/grid.yaml": CONVERTS,
    "hp-tuning/hyperband.yaml": CONVERTS,
    "hp-tuning/hyperopt-distribution.yaml": CONVERTS,
    "hp-tuning/multivariate-tpe.yaml": CONVERTS,
    "hp-tuning/optuna-distribution.yaml": CONVERTS,
    "hp-tuning/random.yaml": CONVERTS,
    "hp-tuning/simple-pbt.yaml": LOSSY,  # the pbt algorithm (its resumePolicy alone would convert)
    "hp-tuning/sobol.yaml": CONVERTS,
    "hp-tuning/tpe.yaml": CONVERTS,
    "kubeflow-trainer/trainjob-pytorch.yaml": Expected("refused", "TrainJob"),
    "kubeflow-training-operator/mpijob-horovod.yaml": CONVERTS,
    # issue 22: restartPolicy OnFailure refused as "never restarted", ignoring trial.retries (today: lossy);
    # issue 25: converts to trial.launcher torchrun (it ran with Horovod's environment before)
    "kubeflow-training-operator/pytorchjob-mnist.yaml": CONVERTS,
    "kubeflow-training-operator/tfjob-mnist-with-summaries.yaml": Expected("refused", "TFJob"),
    "kubeflow-training-operator/xgboostjob-lightgbm.yaml": Expected("refused", "XGBoostJob"),
    "metrics-collector/custom-metrics-collector.yaml": LOSSY,
    "metrics-collector/file-metrics-collector.yaml": CONVERTS,
    "metrics-collector/file-metrics-collector-with-json-format.yaml": CONVERTS,
    "metrics-collector/metrics-collection-strategy.yaml": CONVERTS,
    "nas/darts-cpu.yaml": NAS,
    "nas/darts-gpu.yaml": NAS,
    "nas/enas-cpu.yaml": NAS,
    "nas/enas-gpu.yaml": NAS,
    "resume-experiment/from-volume-resume.yaml": CONVERTS,  # issue 22: resumePolicy refused (today: lossy)
    "resume-experiment/long-running-resume.yaml": CONVERTS,  # issue 22: resumePolicy refused (today: lossy)
    "tekton/pipeline-run.yaml": Expected("refused", "PipelineRun"),
    "trial-template/trial-configmap-source.yaml": Expected("refused", "ConfigMap"),
    "trial-template/trial-metadata-substitution.yaml": LOSSY,
    # test/e2e/v1beta1/testdata/
    "e2e/invalid-experiment.yaml": LOSSY,  # algorithm 'invalid-algorithm'
    "e2e/valid-experiment.yaml": CONVERTS,
    # written out of the notebooks: examples/v1beta1/kubeflow-pipelines/*.ipynb, examples/v1beta1/sdk/*.ipynb
    "kubeflow-pipelines/early-stopping.yaml": CONVERTS,
    "kubeflow-pipelines/kubeflow-e2e-mnist.yaml": Expected("refused", "TFJob"),
    "sdk/cmaes-and-resume-policies.yaml": CONVERTS,  # issue 22: resumePolicy refused (today: lossy)
    "sdk/mnist-with-push-metrics-collection.yaml": SHELL_SCRIPT,
    "sdk/nas-with-darts.yaml": NAS,
    "sdk/tune-train-from-func.yaml": SHELL_SCRIPT,
}

#: How many of the 41 have each outcome: what tests/data/katib/README.md and the README say.
COUNTS: dict[Outcome, int] = {"converts": 23, "lossy": 4, "refused": 14}

#: How the README quotes each count ("23 convert as they are, 4 more with `--lossy`, 14 are refused").
README_COUNTS: dict[Outcome, str] = {
    "converts": r"(\d+) convert as they are",
    "lossy": r"(\d+) more with `--lossy`",
    "refused": r"(\d+) are refused",
}


#: What a hand-edited Experiment has where a mapping, a list, a string or a number belongs.
MALFORMED: tuple[Any, ...] = (None, "oops", [None], 7)


class Run(NamedTuple):
    status: int
    out: str
    err: str


def corpus(*outcomes: Outcome) -> list[str]:
    return sorted(name for name, expected in CORPUS.items() if expected.outcome in outcomes)


def vendored() -> set[str]:
    return {str(p.relative_to(DATA)) for p in DATA.rglob("*.yaml")}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DATA / name).read_text())


def node_paths(node: Any, path: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """The path of the node and of every value under it."""
    children: list[tuple[str | int, Any]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    return [path] + [p for key, child in children for p in node_paths(child, (*path, key))]


def replaced(document: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    variant = copy.deepcopy(document)
    parent: Any = variant
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return variant


@functools.cache
def conversion(name: str) -> Conversion:
    """convert() of the file: a Conversion whatever the file says, never an exception."""
    try:
        return convert(load(name))
    except Exception as err:  # the point of the test: nothing escapes
        pytest.fail(f"convert({name}) raised {err!r}")


@functools.cache
def import_katib(name: str, *flags: str) -> Run:
    """`openautoglm import-katib [FLAGS] FILE`, in-process: its exit status and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["import-katib", *flags, str(DATA / name)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except Exception as exc:  # the point of the test: nothing escapes
            pytest.fail(f"openautoglm {' '.join(argv)} raised {exc!r}")
    return Run(status, out.getvalue(), err.getvalue())


def assert_valid(job: dict[str, Any], written: str, tmp_path: Path) -> None:
    """The TuningJob passes the model (spec.py) and `openautoglm validate` of the file import-katib wrote."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Optuna's CmaEsSampler(sigma0=...) notice
        validate_document(copy.deepcopy(job))
    assert yaml.safe_load(written) == job
    path = tmp_path / "tuningjob.yaml"
    path.write_text(written)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["validate", str(path)]) == 0


# ============================================================================= the table
def test_the_table_is_every_vendored_experiment() -> None:
    assert vendored() == set(CORPUS)
    assert len(CORPUS) == 41


def test_the_table_has_the_counts() -> None:
    assert Counter(e.outcome for e in CORPUS.values()) == COUNTS
    assert all(e.reason for e in CORPUS.values() if e.outcome == "refused")


def test_the_data_readme_lists_every_file_with_its_outcome() -> None:
    readme = (DATA / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([^`]+\.yaml)` \|[^|\n]*\| (converts|lossy|refused) \|", readme, re.MULTILINE))
    assert rows == {name: e.outcome for name, e in CORPUS.items()}
    for outcome, pattern in README_COUNTS.items():
        assert [int(n) for n in re.findall(pattern, readme)] == [COUNTS[outcome]], outcome


def test_the_readme_quotes_the_counts() -> None:
    """issue 22: the README's count ("17 as they are and 5 more with --lossy") disagreed with the tests."""
    readme = (REPO / "README.md").read_text()
    for outcome, pattern in README_COUNTS.items():
        quoted = {int(n) for n in re.findall(pattern, readme)}
        assert quoted == {COUNTS[outcome]}, f"README quotes {sorted(quoted)} for {outcome}, COUNTS says {COUNTS}"


# ============================================================================= each Experiment
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_experiment(name: str, tmp_path: Path) -> None:
    expected = CORPUS[name]
    c = conversion(name)
    plain, lossy = import_katib(name), import_katib(name, "--lossy")
    if expected.outcome == "converts":
        assert c.complete, c.unmapped
        assert plain.status == 0, plain.err
        assert lossy == plain
        assert_valid(c.job, plain.out, tmp_path)
    elif expected.outcome == "lossy":
        assert c.unmapped
        assert (plain.status, plain.out) == (2, ""), plain.err
        assert lossy.status == 0, lossy.err
        assert_valid(c.job, lossy.out, tmp_path)
    else:
        assert any(expected.reason in f"{path}: {reason}" for path, reason in c.unmapped), c.unmapped
        assert (plain.status, plain.out) == (2, ""), plain.err
        assert (lossy.status, lossy.out) == (2, ""), lossy.err
        assert expected.reason in plain.err
        assert expected.reason in lossy.err


def trial_kind(name: str) -> Any:
    """The kind of the Experiment's trialSpec (None when it has none, e.g. a ConfigMap template)."""
    return (((load(name).get("spec") or {}).get("trialTemplate") or {}).get("trialSpec") or {}).get("kind")


#: The vendored Experiments whose trials are PyTorchJobs.
PYTORCHJOBS = sorted(name for name in CORPUS if trial_kind(name) == "PyTorchJob")


def test_the_corpus_has_pytorchjobs() -> None:
    assert "kubeflow-training-operator/pytorchjob-mnist.yaml" in PYTORCHJOBS


@pytest.mark.parametrize("name", PYTORCHJOBS)
def test_every_pytorchjob_converts_as_it_is_to_torchrun(name: str) -> None:
    """issue 25: a PyTorchJob's replicas start with torchrun's environment (init_process_group() as
    the training operator starts it), without --lossy; the TuningJob passes validate (test_experiment)
    and the CRD's admission (kubectl apply with fieldValidation=Strict)."""
    assert CORPUS[name] == CONVERTS
    c = conversion(name)
    assert c.complete, c.unmapped
    trial = c.job["spec"]["trial"]
    replicas = load(name)["spec"]["trialTemplate"]["trialSpec"]["spec"]["pytorchReplicaSpecs"]
    assert trial["launcher"] == "torchrun"
    assert trial["workers"] == sum(int(r.get("replicas", 1)) for r in replicas.values())
    assert import_katib(name).status == 0
    assert katib_admission().review(copy.deepcopy(c.job), strict=True) == []


@pytest.mark.parametrize("name", corpus("refused"))
def test_lossy_says_what_it_cannot_write_in_katibs_terms(name: str) -> None:
    """issue 22: --lossy failed with "give exactly one of task or command", which no Katib user wrote."""
    err = import_katib(name, "--lossy").err
    assert "exactly one of task" not in err
    assert "spec.trial." not in err, "a TuningJob path, not the Experiment's"


@pytest.mark.parametrize("name", corpus("converts", "lossy"))
def test_every_conversion_says_what_image_to_build(name: str) -> None:
    """issue 22: the TuningJob still names Katib's training image, which lacks the trial runtime."""
    assert any("FROM" in note for note in conversion(name).notes), conversion(name).notes


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_no_malformed_variant_makes_the_converter_raise(name: str) -> None:
    """issue 22: malformed input gave tracebacks (`parameters: oops`, `metricStrategies: [null, x]`).

    Each value under the Experiment's spec, in turn, replaced by null, a string, a list or a number: the
    converter names what it cannot map (or says it is not an Experiment), it does not raise.
    """
    experiment = load(name)
    raised = []
    for path in node_paths(experiment["spec"], ("spec",)):
        for value in MALFORMED:
            try:
                convert(replaced(experiment, path, value))
            except NotAnExperiment:
                pass
            except Exception as err:  # the point of the test: nothing escapes
                raised.append(f"{'.'.join(map(str, path))}: {value!r} -> {err!r}")
    assert not raised, f"{len(raised)} variants raise, e.g.\n" + "\n".join(raised[:5])

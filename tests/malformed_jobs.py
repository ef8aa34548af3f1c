"""Malformed TuningJobs: one table of what `openautoglm validate` (the model) and the CRD (the API
server) each answer.

Every row mutates a valid ``digits_job()`` (tests/helpers.py) and gives, for each side, the field path
its message is at and a fragment of the message; ``None`` means that side admits the job, and the
row's ``reason`` says why it cannot refuse it, so every difference between the two is written down
here. tests/unit/test_spec.py checks the ``validate`` column, tests/k8s/test_crd.py the ``crd`` column
(with strict field validation, kubectl apply's default since 1.27).

Where only validate refuses, the operator still does: it validates every job before running it, so
such a job ends Failed (InvalidSpec) with the same message instead of a 422. Generated jobs are
compared the same way, by rule instead of by row, in tests/k8s/test_fuzz.py (MODEL_ONLY, CRD_ONLY).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helpers import DELETE, digits_job, mutate

#: (field path, fragment of the message at that path)
Says = tuple[str, str]
#: A change to a job document, in place.
Mutation = Callable[[dict[str, Any]], object]

MULTI = [{"metric": "accuracy", "direction": "maximize"}, {"metric": "loss", "direction": "minimize"}]


@dataclass(frozen=True)
class Malformed:
    id: str
    mutation: Mutation
    #: What validate says; None: it admits the job (the CRD is stricter, ``reason`` says why).
    validate: Says | None
    #: What the API server says with the CRD; None: it admits the job (``reason`` says why it cannot refuse it).
    crd: Says | None
    reason: str = ""

    def job(self) -> dict[str, Any]:
        doc = digits_job()
        self.mutation(doc)
        return doc


def _set(path: str, value: Any) -> Mutation:
    return lambda doc: mutate(doc, path, value)


def _steps(*fns: Mutation) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        for fn in fns:
            fn(doc)

    return apply


def _append_param(param: dict[str, Any]) -> Mutation:
    return lambda doc: doc["spec"]["parameters"].append(param)


#: Your own program instead of the digits task (metric collectors are for programs only).
COMMAND = _steps(_set("spec.trial.task", DELETE), _set("spec.trial.command", ["python", "train.py"]))

#: Why the CRD cannot refuse what validate refuses, where rows share the reason.
_SAMPLER_SETTINGS = (
    "sampler settings are checked by building the Optuna sampler (samplers registry): "
    "invisible to CEL on the API server"
)
_PRUNER_SETTINGS = (
    "pruner settings are checked by building the Optuna pruner (pruners registry): invisible to CEL on the API server"
)
_WARM_START_VALUES = (
    "warm-start values are mixed scalars (no schema type): CEL cannot compare one with its parameter's range and type"
)

# Parameters of digits_job(): [0] lr float log, [1] batch_size categorical, [2] hidden int step 16,
# [3] optimizer categorical, [4] beta1 float when optimizer, [5] momentum float step 0.1 when optimizer.
MALFORMED: list[Malformed] = [
    # --- document
    Malformed(
        "api-version",
        _set("apiVersion", "openautoglm.io/v1"),
        validate=("apiVersion", "openautoglm.io/v1alpha1"),
        crd=("apiVersion", "must be openautoglm.io/v1alpha1"),
    ),
    Malformed("kind", _set("kind", "Experiment"), validate=("kind", "TuningJob"), crd=("kind", "must be TuningJob")),
    Malformed(
        "name-uppercase",
        _set("metadata.name", "Digits"),
        validate=("metadata.name", "lower-case"),
        crd=("metadata.name", "DNS-1035"),
    ),
    Malformed(
        "name-too-long",
        _set("metadata.name", "d" * 41),
        validate=("metadata.name", "at most 40"),
        crd=("metadata.name", "at most 40 characters"),
    ),
    Malformed(
        "name-missing",
        _set("metadata.name", DELETE),
        validate=("metadata.name", "required"),
        crd=("metadata.name", "Required value: name or generateName is required"),
    ),
    Malformed("spec-missing", _set("spec", DELETE), validate=("spec", "required"), crd=("spec", "Required value")),
    Malformed(
        "unknown-spec-field",
        _set("spec.budjet", {"maxTrials": 8}),
        validate=("spec.budjet", "unknown field"),
        crd=("spec.budjet", 'unknown field "spec.budjet"'),
    ),
    Malformed(
        "name-starts-with-digit",
        _set("metadata.name", "1digits"),
        validate=("metadata.name", "starting with a letter"),
        crd=("metadata.name", "DNS-1035"),
    ),
    # --- objective
    Malformed(
        "objective-no-metric",
        _set("spec.objective.metric", DELETE),
        validate=("spec.objective.metric", "required"),
        crd=("spec.objective.metric", "Required value"),
    ),
    Malformed(
        "objective-no-direction",
        _set("spec.objective.direction", DELETE),
        validate=("spec.objective.direction", "required"),
        crd=("spec.objective.direction", "Required value"),
    ),
    Malformed(
        "objective-bad-direction",
        _set("spec.objective.direction", "up"),
        validate=("spec.objective.direction", "'maximize' or 'minimize'"),
        crd=("spec.objective.direction", 'Unsupported value: "up"'),
    ),
    Malformed(
        "multi-objective-with-target",
        _steps(_set("spec.objective", {"metrics": MULTI, "target": 0.9}), _set("spec.earlyStopping.pruner", "none")),
        validate=("spec.objective.target", "single objective"),
        crd=("spec.objective.target", "Forbidden: a target applies to a single objective only"),
    ),
    Malformed(
        "duplicate-objective-metrics",
        _steps(_set("spec.objective", {"metrics": [MULTI[0], MULTI[0]]}), _set("spec.earlyStopping.pruner", "none")),
        validate=("spec.objective.metrics", "unique"),
        crd=("spec.objective.metrics[1]", "Duplicate value"),
    ),
    Malformed(
        "objective-never-reported",
        _set("spec.objective.metric", "f1"),
        validate=("spec.objective.metric", "never reports 'f1'"),
        crd=("spec.objective", "the digits task reports only accuracy, loss, train_loss"),
    ),
    Malformed(
        "additional-metric-never-reported",
        _set("spec.objective.additionalMetrics", ["loss", "bleu"]),
        validate=("spec.objective.additionalMetrics[1]", "never reports 'bleu'"),
        crd=("spec.objective.additionalMetrics", "the digits task reports only accuracy, loss, train_loss"),
    ),
    Malformed(
        "additional-metric-is-objective",
        _set("spec.objective.additionalMetrics", ["accuracy"]),
        validate=("spec.objective.additionalMetrics[0]", "already an objective metric"),
        crd=("spec.objective.additionalMetrics", "objective metric"),
    ),
    Malformed(
        "strategy-for-unrecorded-metric",
        _set("spec.objective.metricStrategies", {"loss": "min"}),
        validate=("spec.objective.metricStrategies.loss", "neither an objective metric nor one of additionalMetrics"),
        crd=("spec.objective.metricStrategies", "objective metric or one of additionalMetrics"),
    ),
    Malformed(
        "strategy-not-min-max-latest",
        _steps(
            _set("spec.objective.additionalMetrics", ["loss"]), _set("spec.objective.metricStrategies", {"loss": "avg"})
        ),
        validate=("spec.objective.metricStrategies.loss", "'min', 'max' or 'latest'"),
        crd=("spec.objective.metricStrategies.loss", "Unsupported value"),
    ),
    Malformed(
        "objective-missing",
        _set("spec.objective", DELETE),
        validate=("spec.objective", "required field is missing"),
        crd=("spec.objective", "Required value"),
    ),
    Malformed(
        "bad-metric-name",
        _set("spec.objective.metric", "val acc"),
        validate=("spec.objective.metric", "should match pattern"),
        crd=("spec.objective.metric", "should match"),
    ),
    Malformed(
        "one-item-metrics",
        _steps(_set("spec.objective", {"metrics": MULTI[:1]}), _set("spec.earlyStopping.pruner", "none")),
        validate=("spec.objective.metrics", "at least 2 items"),
        crd=("spec.objective.metrics", "at least 2 items"),
    ),
    Malformed(
        "metric-and-metrics",
        _steps(_set("spec.objective.metrics", MULTI), _set("spec.earlyStopping.pruner", "none")),
        validate=("spec.objective.metric", "give either metric/direction or a list of objectives, not both"),
        crd=("spec.objective.metric", "not both"),
    ),
    Malformed(
        "additional-metric-twice",
        _set("spec.objective.additionalMetrics", ["loss", "loss"]),
        validate=("spec.objective.additionalMetrics", "names must be unique"),
        crd=("spec.objective.additionalMetrics[1]", "Duplicate value"),
    ),
    # --- budget
    Malformed(
        "parallelism-above-max-trials",
        _set("spec.budget.parallelism", 5),
        validate=("spec.budget.parallelism", "<= maxTrials (4)"),
        crd=("spec.budget.parallelism", "must be <= maxTrials"),
    ),
    Malformed(
        "negative-max-failed-trials",
        _set("spec.budget.maxFailedTrials", -1),
        validate=("spec.budget.maxFailedTrials", "greater than or equal to 0"),
        crd=("spec.budget.maxFailedTrials", "greater than or equal to 0"),
    ),
    Malformed(
        "max-trials-zero",
        _set("spec.budget.maxTrials", 0),
        validate=("spec.budget.maxTrials", "greater than or equal to 1"),
        crd=("spec.budget.maxTrials", "greater than or equal to 1"),
    ),
    Malformed(
        "max-trials-string",
        _set("spec.budget.maxTrials", "ten"),
        validate=("spec.budget.maxTrials", "Input should be a valid integer"),
        crd=("spec.budget.maxTrials", "must be of type integer"),
    ),
    Malformed(
        "timeout-zero",
        _set("spec.budget.timeoutSeconds", 0),
        validate=("spec.budget.timeoutSeconds", "Input should be greater than or equal to 1"),
        crd=("spec.budget.timeoutSeconds", "greater than or equal to 1"),
    ),
    Malformed(
        "parallelism-above-default-max-trials",
        _set("spec.budget", {"parallelism": 11}),
        validate=("spec.budget.parallelism", "must be <= maxTrials (10), got 11"),
        crd=("spec.budget.parallelism", "must be <= maxTrials"),
    ),
    # --- algorithm
    Malformed(
        "unknown-sampler",
        _set("spec.algorithm.sampler", "bayes"),
        validate=("spec.algorithm.sampler", "unknown sampler 'bayes'"),
        crd=("spec.algorithm.sampler", "supported values"),
    ),
    Malformed(
        "unknown-sampler-setting",
        _set("spec.algorithm.settings", {"n_startup_trial": 3}),
        validate=("spec.algorithm.settings.n_startup_trial", "unknown setting of the tpe sampler"),
        crd=None,
        reason=(
            "sampler settings are a free-form object whose names come from each sampler's Optuna "
            "class (samplers registry): invisible to CEL on the API server"
        ),
    ),
    Malformed(
        "sampler-rejects-value",
        _set("spec.algorithm", {"sampler": "qmc", "settings": {"qmc_type": "lattice"}}),
        validate=("spec.algorithm.settings", "rejected by the qmc sampler"),
        crd=None,
        reason=_SAMPLER_SETTINGS,
    ),
    Malformed(
        "nsga2-population-too-small",
        _set("spec.algorithm", {"sampler": "nsga2", "settings": {"population_size": 1}}),
        validate=("spec.algorithm.settings", "population_size"),
        crd=None,
        reason=_SAMPLER_SETTINGS,
    ),
    Malformed(
        "grid-points-too-few",
        _set("spec.algorithm", {"sampler": "grid", "settings": {"points": 1}}),
        validate=("spec.algorithm.settings", "points must be >= 2"),
        crd=None,
        reason=_SAMPLER_SETTINGS,
    ),
    Malformed(
        "single-objective-sampler-with-several",
        _steps(
            _set("spec.objective", {"metrics": MULTI}),
            _set("spec.earlyStopping", {"pruner": "none"}),
            _set("spec.algorithm.sampler", "cmaes"),
        ),
        validate=("spec.algorithm.sampler", "single objective"),
        crd=("spec.algorithm.sampler", "handles a single objective; with several objectives use one of"),
    ),
    Malformed(
        "grid-start-from-defaults",
        _steps(_set("spec.algorithm.sampler", "grid"), _set("spec.algorithm.startFromDefaults", True)),
        validate=("spec.algorithm.startFromDefaults", "grid sampler"),
        crd=("spec.algorithm.startFromDefaults", "grid sampler"),
    ),
    Malformed(
        "negative-seed",
        _set("spec.algorithm.seed", -1),
        validate=("spec.algorithm.seed", "Input should be greater than or equal to 0"),
        crd=("spec.algorithm.seed", "greater than or equal to 0"),
    ),
    Malformed(
        "start-from-defaults-with-a-program",
        _steps(COMMAND, _set("spec.algorithm.startFromDefaults", True)),
        validate=("spec.algorithm.startFromDefaults", "a program's defaults are not known here"),
        crd=("spec.algorithm.startFromDefaults", "only for a built-in task"),
    ),
    # --- earlyStopping
    Malformed(
        "unknown-pruner",
        _set("spec.earlyStopping.pruner", "asha"),
        validate=("spec.earlyStopping.pruner", "unknown pruner 'asha'"),
        crd=("spec.earlyStopping.pruner", "supported values"),
    ),
    Malformed(
        "unknown-pruner-setting",
        _set("spec.earlyStopping.settings", {"n_startup": 2}),
        validate=("spec.earlyStopping.settings.n_startup", "unknown setting of the median pruner"),
        crd=None,
        reason=(
            "pruner settings are a free-form object whose names come from each pruner's Optuna class "
            "(pruners registry): invisible to CEL on the API server"
        ),
    ),
    Malformed(
        "pruner-with-several-objectives",
        _set("spec.objective", {"metrics": MULTI}),
        validate=("spec.earlyStopping.pruner", "single objective"),
        crd=("spec.earlyStopping.pruner", "single objective"),
    ),
    Malformed(
        "threshold-without-bounds",
        _set("spec.earlyStopping", {"pruner": "threshold"}),
        validate=("spec.earlyStopping.settings", "lower and/or upper"),
        crd=None,
        reason=_PRUNER_SETTINGS,
    ),
    Malformed(
        "percentile-out-of-range",
        _set("spec.earlyStopping", {"pruner": "percentile", "settings": {"percentile": 150}}),
        validate=("spec.earlyStopping.settings", "rejected by the percentile pruner"),
        crd=None,
        reason=_PRUNER_SETTINGS,
    ),
    Malformed(
        "hyperband-reduction-factor-1",
        _set("spec.earlyStopping", {"pruner": "hyperband", "settings": {"reduction_factor": 1}}),
        validate=("spec.earlyStopping.settings", "reduction_factor"),
        crd=None,
        reason=_PRUNER_SETTINGS,
    ),
    Malformed(
        "max-grad-norm-zero",
        _set("spec.earlyStopping.maxGradNorm", 0),
        validate=("spec.earlyStopping.maxGradNorm", "Input should be greater than 0"),
        crd=("spec.earlyStopping.maxGradNorm", "should be greater than 0"),
    ),
    Malformed(
        "patience-zero",
        _set("spec.earlyStopping.patience", 0),
        validate=("spec.earlyStopping.patience", "Input should be greater than or equal to 1"),
        crd=("spec.earlyStopping.patience", "greater than or equal"),
    ),
    # --- parameters
    Malformed(
        "float-low-not-below-high",
        _set("spec.parameters[0].high", 1.0e-3),
        validate=("spec.parameters[0].high", "greater than low"),
        crd=("spec.parameters[0].high", "greater than low"),
    ),
    Malformed(
        "float-infinite",
        _set("spec.parameters[0].high", float("inf")),
        validate=("spec.parameters[0].high", "finite"),
        crd=("spec.parameters[0].high", "finite"),
    ),
    Malformed(
        "log-with-zero-low",
        _set("spec.parameters[0].low", 0.0),
        validate=("spec.parameters[0].low", "> 0 on a log scale"),
        crd=("spec.parameters[0].low", "> 0 on a log scale"),
    ),
    Malformed(
        "step-with-log",
        _set("spec.parameters[0].step", 0.01),
        validate=("spec.parameters[0].step", "log"),
        crd=("spec.parameters[0].step", "log"),
    ),
    Malformed(
        "step-larger-than-range",
        _set("spec.parameters[5].step", 2.0),
        validate=("spec.parameters[5].step", "<= high - low"),
        crd=("spec.parameters[5].step", "<= high - low"),
    ),
    Malformed(
        "int-non-integer-low",
        _set("spec.parameters[2].low", 16.5),
        validate=("spec.parameters[2].low", "integer"),
        crd=("spec.parameters[2].low", "integer"),
    ),
    Malformed(
        "int-non-integer-step",
        _set("spec.parameters[2].step", 1.5),
        validate=("spec.parameters[2].step", "integer"),
        crd=("spec.parameters[2].step", "integer"),
    ),
    Malformed(
        "unknown-parameter-type",
        _set("spec.parameters[0].type", "double"),
        validate=("spec.parameters[0].type", "'float'"),
        crd=("spec.parameters[0].type", "Unsupported value"),
    ),
    Malformed(
        "categorical-without-choices",
        _set("spec.parameters[1].choices", DELETE),
        validate=("spec.parameters[1].choices", "required"),
        crd=("spec.parameters[1].choices", "Required value"),
    ),
    Malformed(
        "choice-not-a-number",
        _set("spec.parameters[1].choices", [32, float("nan")]),
        validate=("spec.parameters[1].choices[1]", "finite"),
        crd=("spec.parameters[1].choices[1]", "must be a finite number (JSON has no NaN or Infinity)"),
    ),
    Malformed(
        "fixed-value-infinite",
        _set("spec.parameters[1]", {"name": "batch_size", "type": "fixed", "value": float("inf")}),
        validate=("spec.parameters[1].value", "finite"),
        crd=("spec.parameters[1].value", "must be a finite number (JSON has no NaN or Infinity)"),
    ),
    Malformed(
        "duplicate-choices",
        _set("spec.parameters[1].choices", [32, 64, 32]),
        validate=("spec.parameters[1].choices", "unique"),
        crd=("spec.parameters[1].choices[2]", "Duplicate value"),
    ),
    Malformed(
        "duplicate-string-choices",
        _set("spec.parameters[3].choices", ["adam", "sgd", "adam"]),
        validate=("spec.parameters[3].choices", "must be unique"),
        crd=("spec.parameters[3].choices[2]", 'Duplicate value: "adam"'),
    ),
    Malformed(
        "duplicate-mixed-choices",
        _append_param({"name": "tag", "type": "categorical", "choices": ["a", 1, 1.0, True, "1", 1]}),
        validate=("spec.parameters[6].choices", "must be unique"),
        crd=("spec.parameters[6].choices[5]", "Duplicate value: 1"),
    ),
    Malformed(
        "fixed-without-value",
        _set("spec.parameters[1]", {"name": "batch_size", "type": "fixed"}),
        validate=("spec.parameters[1].value", "required"),
        crd=("spec.parameters[1].value", "Required value"),
    ),
    Malformed(
        "parameter-name-bad-characters",
        _set("spec.parameters[0].name", "learning rate"),
        validate=("spec.parameters[0].name", "only letters"),
        crd=("spec.parameters[0].name", "should match"),
    ),
    Malformed(
        "parameter-name-leading-dash",
        _set("spec.parameters[0].name", "-lr"),
        validate=("spec.parameters[0].name", "start with a letter"),
        crd=("spec.parameters[0].name", "should match '^[A-Za-z_][A-Za-z0-9_.-]*$'"),
    ),
    Malformed(
        "duplicate-parameter-names",
        _append_param({"name": "lr", "type": "float", "low": 0.1, "high": 0.2}),
        validate=("spec.parameters[6].name", "duplicate parameter name 'lr'"),
        crd=("spec.parameters[6]", "Duplicate value"),
    ),
    Malformed(
        "no-parameters",
        _set("spec.parameters", []),
        validate=("spec.parameters", "at least 1"),
        crd=("spec.parameters", "at least 1 items"),
    ),
    Malformed(
        "when-unknown-parameter",
        _set("spec.parameters[4].when", {"solver": "adam"}),
        validate=("spec.parameters[4].when.solver", "defined before"),
        crd=("spec.parameters", "categorical or fixed parameter"),
    ),
    Malformed(
        "when-later-parameter",
        _set("spec.parameters[2].when", {"optimizer": "adam"}),
        validate=("spec.parameters[2].when.optimizer", "defined before 'hidden'"),
        crd=None,
        reason=(
            "the order of parameters needs an index in a comprehension (Kubernetes' two-variable "
            "form, which cel-python lacks): the CRD checks that a condition names a categorical or "
            "fixed parameter, not where it is"
        ),
    ),
    Malformed(
        "when-on-float-parameter",
        _set("spec.parameters[4].when", {"lr": 0.1}),
        validate=("spec.parameters[4].when.lr", "conditions need a categorical one"),
        crd=("spec.parameters", "categorical or fixed parameter"),
    ),
    Malformed(
        "when-value-not-a-choice",
        _set("spec.parameters[4].when", {"optimizer": "rmsprop"}),
        validate=("spec.parameters[4].when.optimizer", "'rmsprop' is not one of optimizer's choices"),
        crd=None,
        reason=(
            "checking each condition value against the named parameter's choices costs 200 parameters"
            " x 8 conditions x 200 parameters x 1000 choices: over the API server's CEL budget"
        ),
    ),
    Malformed(
        "parameter-unknown-to-task",
        _append_param({"name": "lr_decay", "type": "float", "low": 0.1, "high": 0.9}),
        validate=("spec.parameters[6].name", "not a hyperparameter of the digits task"),
        crd=None,
        reason=(
            "not a CEL rule yet, though it could be one: each task's hyperparameter names listed as "
            "its bounds are (issue 22 closed the task and duplicate-choice gaps only)"
        ),
    ),
    Malformed(
        "parameter-outside-task-bounds",
        _set("spec.parameters[5].high", 1.5),
        validate=("spec.parameters[5].high", "must be <= "),
        crd=("spec.parameters", "momentum: the digits task accepts float values from 0.0 to 0.9999"),
    ),
    Malformed(
        "categorical-outside-task-choices",
        _set("spec.parameters[3].choices", ["adam", "sgd", "lion"]),
        validate=("spec.parameters[3].choices[2]", "must be one of"),
        crd=("spec.parameters", "optimizer: the digits task accepts one of adam, sgd"),
    ),
    Malformed(
        "float-range-for-int-hyperparameter",
        _append_param({"name": "layers", "type": "float", "low": 1, "high": 3}),
        validate=("spec.parameters[6].type", "is an int hyperparameter of the digits task"),
        crd=("spec.parameters", "layers: the digits task accepts int values from 1 to 3"),
    ),
    Malformed(
        "int-choice-outside-task-bounds",
        _append_param({"name": "layers", "type": "int", "low": 1, "high": 4}),
        validate=("spec.parameters[6].high", "must be <= 3"),
        crd=("spec.parameters", "layers: the digits task accepts int values from 1 to 3"),
    ),
    Malformed(
        "parameter-name-too-long",
        _set("spec.parameters[0].name", "x" * 64),
        validate=("spec.parameters[0].name", "String should have at most 63 characters"),
        crd=("spec.parameters[0].name", "Too long"),
    ),
    Malformed(
        "log-not-boolean",
        _set("spec.parameters[0].log", "yes"),
        validate=("spec.parameters[0].log", "Input should be a valid boolean"),
        crd=("spec.parameters[0].log", "must be of type boolean"),
    ),
    Malformed(
        "step-zero",
        _set("spec.parameters[2].step", 0),
        validate=("spec.parameters[2].step", "Input should be greater than 0"),
        crd=("spec.parameters[2].step", "should be greater than 0"),
    ),
    Malformed(
        "too-many-choices",
        _set("spec.parameters[1].choices", list(range(1001))),
        validate=("spec.parameters[1].choices", "at most 1000 items"),
        crd=("spec.parameters[1].choices", "Too many"),
    ),
    Malformed(
        "empty-when",
        _set("spec.parameters[4].when", {}),
        validate=("spec.parameters[4].when", "must name at least one parameter"),
        crd=("spec.parameters[4].when", "at least 1 properties"),
    ),
    Malformed(
        "float-without-low",
        _set("spec.parameters[0].low", DELETE),
        validate=("spec.parameters[0].low", "required for a float parameter"),
        crd=("spec.parameters[0].low", "Required value"),
    ),
    Malformed(
        "int-without-high",
        _set("spec.parameters[2].high", DELETE),
        validate=("spec.parameters[2].high", "required for a int parameter"),
        crd=("spec.parameters[2].high", "Required value"),
    ),
    Malformed(
        "int-step-2-with-log",
        _set("spec.parameters[2].log", True),
        validate=("spec.parameters[2].step", "cannot be combined with log: true"),
        crd=("spec.parameters[2].step", "log"),
    ),
    Malformed(
        "int-non-integer-high",
        _set("spec.parameters[2].high", 64.25),
        validate=("spec.parameters[2].high", "must be an integer for an int parameter, got 64.25"),
        crd=("spec.parameters[2].high", "integer"),
    ),
    Malformed(
        "range-on-categorical",
        _set("spec.parameters[1].low", 1),
        validate=("spec.parameters[1].low", "only for float/int parameters, not categorical"),
        crd=("spec.parameters[1]", "only for float and int"),
    ),
    Malformed(
        "log-on-categorical",
        _set("spec.parameters[1].log", True),
        validate=("spec.parameters[1].log", "only for float/int parameters, not categorical"),
        crd=("spec.parameters[1]", "only for float and int"),
    ),
    Malformed(
        "choices-on-float",
        _set("spec.parameters[0].choices", [0.1]),
        validate=("spec.parameters[0].choices", "only for categorical parameters, not float"),
        crd=("spec.parameters[0].choices", "Forbidden"),
    ),
    Malformed(
        "choice-is-a-mapping",
        _set("spec.parameters[1].choices", [32, {"size": 64}]),
        validate=("spec.parameters[1].choices[1].str", "Input should be a valid string"),
        crd=("spec.parameters[1].choices", "scalars"),
    ),
    Malformed(
        "fixed-null-value",
        _set("spec.parameters[1]", {"name": "batch_size", "type": "fixed", "value": None}),
        validate=("spec.parameters[1].value", "required for a fixed parameter"),
        crd=("spec.parameters[1].value", "Required value"),
    ),
    Malformed(
        "fixed-list-value",
        _set("spec.parameters[1]", {"name": "batch_size", "type": "fixed", "value": [32]}),
        validate=("spec.parameters[1].value.str", "Input should be a valid string"),
        crd=("spec.parameters[1].value", "scalar"),
    ),
    Malformed(
        "value-on-categorical",
        _set("spec.parameters[1].value", 32),
        validate=("spec.parameters[1].value", "only for fixed parameters, not categorical"),
        crd=("spec.parameters[1].value", "Forbidden"),
    ),
    Malformed(
        "when-value-is-a-mapping",
        _set("spec.parameters[4].when", {"optimizer": {"in": ["adam"]}}),
        validate=("spec.parameters[4].when.optimizer.str", "Input should be a valid string"),
        crd=("spec.parameters[4].when", "scalar or a list"),
    ),
    # --- trial
    Malformed(
        "task-and-command",
        _set("spec.trial.command", ["python", "train.py"]),
        validate=("spec.trial.task", "exactly one"),
        crd=("spec.trial.task", "exactly one"),
    ),
    Malformed(
        "neither-task-nor-command",
        _set("spec.trial.task", DELETE),
        validate=("spec.trial.task", "exactly one"),
        crd=("spec.trial.task", "exactly one"),
    ),
    Malformed(
        "unknown-task",
        _set("spec.trial.task", "mnist"),
        validate=("spec.trial.task", "unknown task 'mnist'"),
        crd=("spec.trial.task", 'Unsupported value: "mnist": supported values: "digits"'),
    ),
    Malformed(
        "unknown-task-chess",
        _set("spec.trial.task", "chess"),
        validate=("spec.trial.task", "unknown task 'chess'"),
        crd=("spec.trial.task", 'Unsupported value: "chess": supported values: "digits"'),
    ),
    Malformed(
        "epochs-zero",
        _set("spec.trial.epochs", 0),
        validate=("spec.trial.epochs", "greater than or equal to 1"),
        crd=("spec.trial.epochs", "greater than or equal to 1"),
    ),
    Malformed(
        "workers-zero",
        _set("spec.trial.workers", 0),
        validate=("spec.trial.workers", "greater than or equal to 1"),
        crd=("spec.trial.workers", "should be greater than or equal to 1"),
    ),
    Malformed(
        "workers-65",
        _set("spec.trial.workers", 65),
        validate=("spec.trial.workers", "less than or equal to 64"),
        crd=("spec.trial.workers", "less than or equal to 64"),
    ),
    Malformed(
        "retries-negative",
        _set("spec.trial.retries", -1),
        validate=("spec.trial.retries", "greater than or equal to 0"),
        crd=("spec.trial.retries", "greater than or equal to 0"),
    ),
    Malformed(
        "retries-11",
        _set("spec.trial.retries", 11),
        validate=("spec.trial.retries", "less than or equal to 10"),
        crd=("spec.trial.retries", "less than or equal to 10"),
    ),
    Malformed(
        "checkpoint-keep-unknown",
        _set("spec.trial.checkpoint", {"claim": "ckpt", "keep": "latest"}),
        validate=("spec.trial.checkpoint.keep", "'best', 'all' or 'none'"),
        crd=("spec.trial.checkpoint.keep", 'Unsupported value: "latest"'),
    ),
    Malformed(
        "checkpoint-claim-not-a-name",
        _set("spec.trial.checkpoint", {"claim": "My_Claim"}),
        validate=("spec.trial.checkpoint.claim", "should match pattern"),
        crd=("spec.trial.checkpoint.claim", "should match"),
    ),
    Malformed(
        "checkpoint-without-claim",
        _set("spec.trial.checkpoint", {"keep": "best"}),
        validate=None,
        crd=("spec.trial.checkpoint.claim", "checkpoints must outlive the trial's pods"),
        reason="openautoglm tune keeps checkpoints in its work directory: only a cluster needs the claim "
        "(the operator refuses such a job too, should one predate the rule)",
    ),
    Malformed(
        "checkpoint-dir-without-checkpoint",
        _steps(COMMAND, _set("spec.trial.command", ["python", "train.py", "--ckpt=${trial.checkpointDir}"])),
        validate=("spec.trial.command[2]", "${trial.checkpointDir} needs trial.checkpoint"),
        crd=None,
        reason="trial.command is unbounded in the CRD (a list of strings of any length): a CEL rule scanning "
        "every item exceeds the API server's cost budget; the operator validates every job and fails this one "
        "(InvalidSpec) with validate's message",
    ),
    Malformed(
        "pending-timeout-zero",
        _set("spec.trial.pendingTimeoutSeconds", 0),
        validate=("spec.trial.pendingTimeoutSeconds", "greater than or equal to 1"),
        crd=("spec.trial.pendingTimeoutSeconds", "greater than or equal to 1"),
    ),
    Malformed(
        "kueue-without-queue",
        _set("spec.trial.scheduling", {"kueue": {}}),
        validate=("spec.trial.scheduling.kueue.queueName", "required field is missing"),
        crd=("spec.trial.scheduling.kueue.queueName", "Required value"),
    ),
    Malformed(
        "kueue-queue-not-a-label",
        _set("spec.trial.scheduling", {"kueue": {"queueName": "Team A"}}),
        validate=("spec.trial.scheduling.kueue.queueName", "should match pattern"),
        crd=("spec.trial.scheduling.kueue.queueName", "should match"),
    ),
    Malformed(
        "launcher-unknown",
        _set("spec.trial.launcher", "mpirun"),
        validate=("spec.trial.launcher", "'horovod' or 'torchrun'"),
        crd=("spec.trial.launcher", 'Unsupported value: "mpirun"'),
    ),
    Malformed(
        "torchrun-env-set-by-hand",
        _steps(
            _set("spec.trial.launcher", "torchrun"), _set("spec.trial.env", [{"name": "MASTER_PORT", "value": "1"}])
        ),
        validate=("spec.trial.env[0].name", "MASTER_PORT is set by the torchrun launcher"),
        crd=("spec.trial.env", "set by the torchrun launcher"),
    ),
    Malformed(
        "ddp-under-horovod",
        _set("spec.trial.taskSettings", {"distributed": "ddp"}),
        validate=("spec.trial.taskSettings.distributed", "'ddp' needs trial.launcher: torchrun"),
        crd=None,
        reason="taskSettings is a free-form object in the CRD (each task has its own settings): CEL cannot see "
        "its fields; the operator validates every job and fails this one (InvalidSpec) with validate's message",
    ),
    Malformed(
        "zero-under-horovod",
        _set("spec.trial.taskSettings", {"zero": True}),
        validate=("spec.trial.taskSettings.zero", "it needs distributed: ddp (launcher: torchrun)"),
        crd=None,
        reason="taskSettings is a free-form object in the CRD: CEL cannot see its fields; the operator "
        "validates every job and fails this one (InvalidSpec) with validate's message",
    ),
    Malformed(
        "reserved-env-var",
        _set("spec.trial.env", [{"name": "OPENAUTOGLM_X", "value": "1"}]),
        validate=("spec.trial.env[0].name", "set by the operator"),
        crd=("spec.trial.env[0].name", "OPENAUTOGLM_* and HOROVOD_* are set by the operator"),
    ),
    Malformed(
        "unknown-nested-field",
        _set("spec.trial.worker", 2),
        validate=("spec.trial.worker", "unknown field"),
        crd=("spec.trial.worker", 'unknown field "spec.trial.worker"'),
    ),
    Malformed(
        "trial-missing",
        _set("spec.trial", DELETE),
        validate=("spec.trial", "required field is missing"),
        crd=("spec.trial", "Required value"),
    ),
    Malformed(
        "empty-image",
        _set("spec.trial.image", ""),
        validate=("spec.trial.image", "String should have at least 1 character"),
        crd=("spec.trial.image", "at least 1 chars long"),
    ),
    Malformed(
        "empty-command",
        _steps(_set("spec.trial.task", DELETE), _set("spec.trial.command", [])),
        validate=("spec.trial.command", "at least 1 item"),
        crd=("spec.trial.command", "at least 1 items"),
    ),
    Malformed(
        "env-name-not-identifier",
        _set("spec.trial.env", [{"name": "1X", "value": "1"}]),
        validate=("spec.trial.env[0].name", "must be a valid environment variable name"),
        crd=("spec.trial.env[0].name", "should match"),
    ),
    Malformed(
        "duplicate-env-names",
        _set("spec.trial.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        validate=("spec.trial.env", "names must be unique"),
        crd=("spec.trial.env[1]", "Duplicate value"),
    ),
    Malformed(
        "reserved-env-var-horovod",
        _set("spec.trial.env", [{"name": "HOROVOD_RANK", "value": "0"}]),
        validate=("spec.trial.env[0].name", "OPENAUTOGLM_* and HOROVOD_* are set by the operator"),
        crd=("spec.trial.env[0].name", "set by the operator"),
    ),
    # --- resources
    Malformed(
        "bad-resource-quantity",
        _set("spec.trial.resources.limits.cpu", "1 core"),
        validate=("spec.trial.resources.limits.cpu", "Kubernetes quantity"),
        crd=("spec.trial.resources.limits.cpu", "should match"),
    ),
    Malformed(
        "limit-below-request",
        _set("spec.trial.resources", {"requests": {"memory": "1Gi"}, "limits": {"memory": "128Mi"}}),
        validate=("spec.trial.resources.limits.memory", "must be >= requests.memory (1Gi)"),
        crd=("spec.trial.resources.limits", ">= its request"),
    ),
    Malformed(
        "gpu-overcommitted",
        _set("spec.trial.resources", {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}}),
        validate=("spec.trial.resources.requests.nvidia.com/gpu", "must equal limits"),
        crd=("spec.trial.resources.requests", "must equal its limit"),
    ),
    Malformed(
        "gpu-without-limit",
        _set("spec.trial.resources", {"requests": {"nvidia.com/gpu": "1"}}),
        validate=("spec.trial.resources.limits.nvidia.com/gpu", "an extended resource needs a limit"),
        crd=("spec.trial.resources.limits", "needs a limit"),
    ),
    # --- metrics
    Malformed(
        "metrics-port-zero",
        _set("spec.metrics.port", 0),
        validate=("spec.metrics.port", "greater than or equal to 1"),
        crd=("spec.metrics.port", "greater than or equal to 1"),
    ),
    Malformed(
        "collector-with-built-in-task",
        _set("spec.metrics.collector", {"kind": "stdout"}),
        validate=("spec.metrics.collector", "only for trial.command"),
        crd=("spec.metrics.collector", "only for trial.command"),
    ),
    Malformed(
        "interval-zero",
        _set("spec.metrics.intervalSeconds", 0),
        validate=("spec.metrics.intervalSeconds", "Input should be greater than or equal to 0.5"),
        crd=("spec.metrics.intervalSeconds", "should be greater than or equal to 0.5"),
    ),
    Malformed(
        "unknown-metrics-source",
        _set("spec.metrics.source", "pushgateway"),
        validate=("spec.metrics.source", "got 'pushgateway'"),
        crd=("spec.metrics.source", "Unsupported value"),
    ),
    Malformed(
        "prometheus-url-scheme",
        _steps(_set("spec.metrics.source", "prometheus"), _set("spec.metrics.prometheus", {"url": "ftp://prom"})),
        validate=("spec.metrics.prometheus.url", "should match pattern"),
        crd=("spec.metrics.prometheus.url", "should match"),
    ),
    Malformed(
        "collector-unknown-kind",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "statsd"})),
        validate=("spec.metrics.collector.kind", "got 'statsd'"),
        crd=("spec.metrics.collector.kind", "Unsupported value"),
    ),
    Malformed(
        "file-collector-without-path",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "file"})),
        validate=("spec.metrics.collector.path", "required for the file collector: the file your program writes"),
        crd=("spec.metrics.collector.path", "Required value"),
    ),
    Malformed(
        "path-for-stdout-collector",
        _steps(COMMAND, _set("spec.metrics.collector", {"path": "/tmp/metrics.log"})),
        validate=("spec.metrics.collector.path", "only for the file collector, not stdout"),
        crd=("spec.metrics.collector.path", "Forbidden"),
    ),
    Malformed(
        "prometheus-collector-without-port",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "prometheus"})),
        validate=(
            "spec.metrics.collector.port",
            "required for the prometheus collector: the port of your program's /metrics",
        ),
        crd=("spec.metrics.collector.port", "Required value"),
    ),
    Malformed(
        "port-for-push-collector",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "push", "port": 8000})),
        validate=("spec.metrics.collector.port", "only for the prometheus collector, not push"),
        crd=("spec.metrics.collector.port", "Forbidden"),
    ),
    Malformed(
        "filter-for-json-file",
        _steps(
            COMMAND,
            _set(
                "spec.metrics.collector",
                {"kind": "file", "path": "/tmp/m.jsonl", "format": "json", "filter": "(\\w+)=(\\S+)"},
            ),
        ),
        validate=("spec.metrics.collector.filter", "only for the stdout collector and text files"),
        crd=("spec.metrics.collector.filter", "Forbidden"),
    ),
    Malformed(
        "collector-port-is-the-metrics-port",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "prometheus", "port": 9090})),
        validate=("spec.metrics.collector.port", "9090 is taken by the trial supervisor"),
        crd=("spec.metrics.collector.port", "taken by the trial supervisor"),
    ),
    Malformed(
        "collector-port-is-the-rendezvous-port",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "prometheus", "port": 29400})),
        validate=("spec.metrics.collector.port", "29400 is taken by the trial supervisor"),
        crd=("spec.metrics.collector.port", "taken by the trial supervisor"),
    ),
    # --- storage
    Malformed(
        "postgres-url-and-secret",
        _set("spec.storage", {"postgres": {"url": "postgresql://u@db/tune", "secretRef": {"name": "db"}}}),
        validate=("spec.storage.postgres.url", "exactly one of url or secretRef"),
        crd=("spec.storage.postgres.url", "exactly one of url or secretRef"),
    ),
    Malformed(
        "journal-and-postgres",
        _set("spec.storage", {"journal": {}, "postgres": {"url": "postgresql://u@db/tune"}}),
        validate=("spec.storage.postgres", "choose one storage"),
        crd=("spec.storage.postgres", "choose one storage"),
    ),
    Malformed(
        "postgres-url-scheme",
        _set("spec.storage", {"postgres": {"url": "mysql://db/tune"}}),
        validate=("spec.storage.postgres.url", "should match pattern"),
        crd=("spec.storage.postgres.url", "should match"),
    ),
    Malformed(
        "secret-ref-without-name",
        _set("spec.storage", {"postgres": {"secretRef": {"key": "dsn"}}}),
        validate=("spec.storage.postgres.secretRef.name", "required field is missing"),
        crd=("spec.storage.postgres.secretRef.name", "Required value"),
    ),
    Malformed(
        "postgres-neither",
        _set("spec.storage", {"postgres": {}}),
        validate=("spec.storage.postgres.url", "give exactly one of url or secretRef"),
        crd=("spec.storage.postgres.url", "exactly one"),
    ),
    # --- warmStart
    Malformed(
        "warm-start-unknown-parameter",
        _set("spec.warmStart", [{"params": {"lr": 0.01, "lr_decay": 0.5}}]),
        validate=("spec.warmStart[0].params.lr_decay", "not a parameter of the search space"),
        crd=("spec.warmStart", "parameters of the search space"),
    ),
    Malformed(
        "warm-start-not-a-choice",
        _set("spec.warmStart", [{"params": {"optimizer": "rmsprop"}}]),
        validate=("spec.warmStart[0].params.optimizer", "not one of optimizer's choices"),
        crd=None,
        reason=(
            "checking each warm-start value against its parameter's choices costs 10 entries x 200 "
            "parameters x 200 parameters x 1000 choices: over the API server's CEL budget"
        ),
    ),
    Malformed(
        "warm-start-out-of-range",
        _set("spec.warmStart", [{"params": {"lr": 0.5}}]),
        validate=("spec.warmStart[0].params.lr", "within lr's range"),
        crd=None,
        reason=_WARM_START_VALUES,
    ),
    Malformed(
        "grid-warm-start-partial",
        _steps(_set("spec.algorithm.sampler", "grid"), _set("spec.warmStart", [{"params": {"lr": 0.01}}])),
        validate=("spec.warmStart[0].params", "every parameter"),
        crd=("spec.warmStart", "every parameter"),
    ),
    Malformed(
        "warm-start-not-a-number",
        _set("spec.warmStart", [{"params": {"lr": "fast"}}]),
        validate=("spec.warmStart[0].params.lr", "must be a finite number"),
        crd=None,
        reason=_WARM_START_VALUES,
    ),
    Malformed(
        "warm-start-int-fraction",
        _set("spec.warmStart", [{"params": {"hidden": 20.5}}]),
        validate=("spec.warmStart[0].params.hidden", "must be an integer"),
        crd=None,
        reason=_WARM_START_VALUES,
    ),
    Malformed(
        "too-many-warm-starts",
        _set("spec.warmStart", [{"params": {"lr": 0.01}}] * 11),
        validate=None,
        crd=("spec.warmStart", "Too many"),
        reason=(
            "the CRD alone caps warmStart at 10 entries: the warm-start rules' CEL cost (10 x 200 x "
            "200) must stay in the API server's budget"
        ),
    ),
    Malformed(
        "warm-start-without-params",
        _set("spec.warmStart", [{}]),
        validate=("spec.warmStart[0].params", "required field is missing"),
        crd=("spec.warmStart[0].params", "Required value"),
    ),
    Malformed(
        "warm-start-value-is-a-list",
        _set("spec.warmStart", [{"params": {"lr": [0.01]}}]),
        validate=("spec.warmStart[0].params.lr.str", "Input should be a valid string"),
        crd=("spec.warmStart[0].params[lr]", "scalar"),
    ),
    # --- podTemplate
    Malformed(
        "pod-template-wrong-type",
        _set("spec.trial.podTemplate", {"spec": {"nodeSelector": ["gpu=h100"]}}),
        validate=("spec.trial.podTemplate.spec.nodeSelector", "must be of type object, got array"),
        crd=("spec.trial.podTemplate.spec.nodeSelector", "must be of type object"),
    ),
    Malformed(
        "pod-template-privileged-sidecar",
        _set(
            "spec.trial.podTemplate",
            {"spec": {"containers": [{"name": "side", "image": "busybox", "securityContext": {"privileged": True}}]}},
        ),
        validate=("spec.trial.podTemplate.spec.containers[0].securityContext.privileged", "must not be true"),
        crd=("spec.trial.podTemplate.spec.containers[0].securityContext.privileged", "must not be true"),
    ),
    Malformed(
        "pod-template-worker-command",
        _set("spec.trial.podTemplate", {"spec": {"containers": [{"name": "worker", "command": ["sh"]}]}}),
        validate=("spec.trial.podTemplate.spec.containers[0].command", "the operator runs spec.trial.command"),
        crd=("spec.trial.podTemplate.spec.containers[0].command", "Forbidden"),
    ),
]

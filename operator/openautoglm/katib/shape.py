"""The shape of a Katib Experiment: which of its fields are mappings, lists, strings or numbers.

Kubernetes refuses an Experiment whose ``spec.parameters`` is a string, whose container
``command`` is one line instead of a list, or that has ``null`` in a list; the converter refuses
it too, naming every such field, before it reads any (:class:`MalformedExperiment`). What is
checked is what the converter relies on: the fields it reads, as Katib's v1beta1 types and the Pod
schema declare them. Everything else only has to be JSON (string keys, no YAML-only values), as
whatever ``kubectl apply`` sends is; the pod fields that go to the overlay are checked again by
:mod:`openautoglm.podtemplate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, Final

from openautoglm.katib.findings import NotAnExperiment

#: Deeper than this is no Experiment (and may be a YAML alias that contains itself).
MAX_DEPTH: Final = 64


class MalformedExperiment(NotAnExperiment):
    """The Experiment has fields of the wrong type: Kubernetes would refuse it as it is."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {path}: {reason}" for path, reason in problems)
        n = len(problems)
        super().__init__(
            f"{n} field{'s' * (n != 1)} of the wrong type (Kubernetes would refuse the Experiment):\n{lines}"
        )


@dataclasses.dataclass(frozen=True)
class Scalar:
    """A string, or (``numbers``) a string, number or boolean: Katib writes numbers both ways."""

    numbers: bool = True

    def expected(self) -> str:
        return "a string or a number" if self.numbers else "a string"


@dataclasses.dataclass(frozen=True)
class ListOf:
    item: Shape
    #: What to say about a value that is not a list.
    hint: str = ""


@dataclasses.dataclass(frozen=True)
class Map:
    """A mapping with known ``fields``; any other key's value has the shape ``rest``."""

    fields: Mapping[str, Shape] = dataclasses.field(default_factory=dict)
    rest: Shape | None = None  # None: any JSON value


@dataclasses.dataclass(frozen=True)
class ByKind:
    """A Kubernetes object whose shape depends on its ``kind`` (a trial's Job, PyTorchJob ...)."""

    kinds: Mapping[str, Shape]
    other: Shape


Shape = Scalar | ListOf | Map | ByKind


def _each(shape: Shape, *keys: str) -> dict[str, Shape]:
    """The fields ``keys``, all of ``shape``."""
    return dict.fromkeys(keys, shape)


SCALAR: Final = Scalar()
STRING: Final = Scalar(numbers=False)
STRINGS: Final = Map(rest=STRING)  # labels, annotations
_SETTINGS: Final = ListOf(Map({"name": SCALAR, "value": SCALAR}))
_ARGV: Final = ListOf(SCALAR, hint="the exec form, e.g. [python3, train.py]: Kubernetes refuses a string")
_CONTAINER: Final = Map(
    {
        "name": SCALAR,
        "image": SCALAR,
        "command": _ARGV,
        "args": _ARGV,
        "env": ListOf(Map({"name": SCALAR, "value": SCALAR})),
        "resources": Map({"requests": Map(rest=SCALAR), "limits": Map(rest=SCALAR)}),
        "ports": ListOf(Map({"hostPort": SCALAR})),
    }
)
_METADATA: Final = Map({"labels": STRINGS, "annotations": STRINGS})
_POD_TEMPLATE: Final = Map(
    {
        "metadata": _METADATA,
        "spec": Map(
            {
                "containers": ListOf(_CONTAINER),
                "restartPolicy": SCALAR,
                "activeDeadlineSeconds": SCALAR,
                "serviceAccount": SCALAR,
                "dnsPolicy": SCALAR,
            }
        ),
    }
)
_REPLICAS: Final = Map(rest=Map({"replicas": SCALAR, "restartPolicy": SCALAR, "template": _POD_TEMPLATE}))
_RUN_POLICY: Final = Map({"activeDeadlineSeconds": SCALAR, "backoffLimit": SCALAR})
_OBJECT: Final[dict[str, Shape]] = {"apiVersion": SCALAR, "kind": SCALAR, "metadata": _METADATA}
_TRIAL_SPEC: Final = ByKind(
    {
        "Job": Map(
            _OBJECT
            | {
                "spec": Map(
                    {
                        "template": _POD_TEMPLATE,
                        **_each(SCALAR, "activeDeadlineSeconds", "backoffLimit", "parallelism", "completions"),
                    }
                )
            }
        ),
        "PyTorchJob": Map(_OBJECT | {"spec": Map({"pytorchReplicaSpecs": _REPLICAS, "runPolicy": _RUN_POLICY})}),
        "MPIJob": Map(
            _OBJECT | {"spec": Map({"mpiReplicaSpecs": _REPLICAS, "runPolicy": _RUN_POLICY, "slotsPerWorker": SCALAR})}
        ),
    },
    other=Map(_OBJECT),
)
#: The fields of a v1beta1 Experiment the converter reads.
EXPERIMENT: Final = Map(
    {
        "metadata": Map({**_each(STRING, "name", "generateName", "namespace"), **_METADATA.fields}),
        "spec": Map(
            {
                "parameters": ListOf(
                    Map(
                        {
                            "name": SCALAR,
                            "parameterType": SCALAR,
                            "feasibleSpace": Map(
                                _each(SCALAR, "min", "max", "step", "distribution") | {"list": ListOf(SCALAR)}
                            ),
                        }
                    )
                ),
                "objective": Map(
                    _each(SCALAR, "type", "goal", "objectiveMetricName")
                    | {
                        "additionalMetricNames": ListOf(SCALAR),
                        "metricStrategies": ListOf(Map({"name": SCALAR, "value": SCALAR})),
                    }
                ),
                "algorithm": Map({"algorithmName": SCALAR, "algorithmSettings": _SETTINGS}),
                "earlyStopping": Map({"algorithmName": SCALAR, "algorithmSettings": _SETTINGS}),
                **_each(SCALAR, "parallelTrialCount", "maxTrialCount", "maxFailedTrialCount", "resumePolicy"),
                "metricsCollectorSpec": Map(
                    {
                        "collector": Map({"kind": SCALAR}),
                        "source": Map(
                            {
                                "fileSystemPath": Map(_each(SCALAR, "kind", "path", "format")),
                                "filter": Map({"metricsFormat": ListOf(SCALAR)}),
                                "httpGet": Map(_each(SCALAR, "port", "path", "scheme")),
                            }
                        ),
                    }
                ),
                "trialTemplate": Map(
                    _each(SCALAR, "retain", "primaryContainerName", "successCondition", "failureCondition")
                    | {
                        "trialParameters": ListOf(Map(_each(SCALAR, "name", "reference", "description"))),
                        "configMap": Map(rest=SCALAR),
                        "primaryPodLabels": STRINGS,
                        "trialSpec": _TRIAL_SPEC,
                    }
                ),
            }
        ),
    }
)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json(value: Any, path: str, depth: int) -> Iterator[tuple[str, str]]:
    """Problems of a value whose shape the converter does not rely on: it must be JSON."""
    if depth > MAX_DEPTH:
        yield path, f"nested deeper than {MAX_DEPTH} levels"
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                yield path, f"the key {_describe(k)} is not a string"
            else:
                yield from _json(v, f"{path}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json(v, f"{path}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        yield path, f"{_describe(value)} is not a JSON value (quote it)"


def problems(value: Any, shape: Shape | None = EXPERIMENT, path: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """``(path, reason)`` for every field of ``value`` that does not have ``shape`` (None: any JSON)."""
    if shape is None or depth > MAX_DEPTH:
        yield from _json(value, path, depth)
    elif isinstance(shape, ByKind):
        kind = value.get("kind") if isinstance(value, dict) else None
        chosen = shape.kinds.get(kind, shape.other) if isinstance(kind, str) else shape.other
        yield from problems(value, chosen, path, depth)
    elif isinstance(shape, Scalar):
        allowed = (str, int, float, bool) if shape.numbers else (str,)
        if not isinstance(value, allowed):
            yield path, f"must be {shape.expected()}, got {_describe(value)}"
    elif isinstance(shape, ListOf):
        if not isinstance(value, list):
            hint = f" ({shape.hint})" if shape.hint else ""
            yield path, f"must be a list{hint}, got {_describe(value)}"
            return
        for i, item in enumerate(value):
            if item is None:
                yield f"{path}[{i}]", "must not be null"
            else:
                yield from problems(item, shape.item, f"{path}[{i}]", depth + 1)
    elif not isinstance(value, dict):
        yield path, f"must be a mapping, got {_describe(value)}"
    else:
        for k, v in value.items():
            if not isinstance(k, str):
                yield path, f"the key {_describe(k)} is not a string"
            elif v is not None:  # Kubernetes drops a null field: as if absent
                yield from problems(v, shape.fields.get(k, shape.rest), f"{path}.{k}" if path else k, depth + 1)


def check(experiment: dict[str, Any]) -> None:
    """Raise :class:`MalformedExperiment` naming every field of the wrong type."""
    found = list(problems(experiment))
    if found:
        raise MalformedExperiment(found)

"""The structural schema of the TuningJob CRD: the pydantic model's JSON schema, converted.

1. ``TuningJobSpec.model_json_schema(by_alias=True, mode="validation")``, with default factories
   evaluated (pydantic leaves them out) so every model default becomes a ``default:``;
2. converted to a Kubernetes structural schema (:class:`_StructuralConverter`): ``$ref`` inlined, titles
   dropped, ``anyOf [X, null]`` -> X, ``dict[str, Any]`` -> an object that preserves unknown fields,
   scalar unions -> ``x-kubernetes-preserve-unknown-fields`` (``x-kubernetes-int-or-string``
   for exactly int|string), JSON Schema 2020 ``exclusiveMinimum: N`` -> OpenAPI 3.0
   ``minimum: N, exclusiveMinimum: true``, ``#:`` comments of the model -> descriptions;
3. completed with what the model says in code rather than in its JSON schema (:func:`extras`:
   regexes and registries of spec.py, samplers, pruners and the trial runtime's tasks; unique names
   as list-type maps, unique values as list-type sets), and with bounds that only keep the CEL
   rules' estimated cost within the API server's budget (:data:`CRD_ONLY_BOUNDS`).

``spec.trial.podTemplate`` (a free-form dict in the model) gets the Kubernetes 1.33 PodTemplateSpec
schema vendored in ``openautoglm/podtemplatespec-v1.33.json`` (:mod:`openautoglm.podschema`), with
the bounds of :data:`openautoglm.podtemplate.BOUNDS`, so an unknown pod field is refused by the API
server's strict field validation.

A nullable optional field (``X | None = None``) is *not* marked ``nullable``: the API server then
prunes an explicit null, which is exactly what None means to the model (absent), and the CEL rules
can rely on ``has()``. Only a field whose default is not None (``maxGradNorm``: null switches it
off) is ``nullable: true``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from openautoglm import podschema
from openautoglm import podtemplate as pt
from openautoglm import spec as spec_module
from openautoglm.spec import ENV_NAME_RE, PARAM_NAME_RE, QUANTITY_RE, TuningJobSpec

# Paths below name schema nodes from the root of openAPIV3Schema: ``spec.parameters[]`` is an
# item of the list, ``spec.warmStart[].params{}`` a value of the map.

#: Bounds the model does not have. The API server estimates each CEL rule's worst-case cost from
#: the schema's bounds and refuses a CRD whose rule exceeds 10M (100M for all rules together).
#: Worst cases, at ~20 per inner step (a select, a comparison of strings of <= 63 chars): the ``when``
#: rule 200 parameters x 8 keys x 200 parameters (~6.4M), the warm-start rule 10 x 200 x 200 (~8M).
CRD_ONLY_BOUNDS: Final[dict[str, dict[str, Any]]] = {
    "spec.parameters[].when": {"maxProperties": 8},
    "spec.warmStart": {"maxItems": 10},
    # Not a restriction: every key must name one of at most 200 parameters.
    "spec.warmStart[].params": {"maxProperties": 200},
    # Not a restriction: every key must name one of at most 8 objectives + 32 additional metrics.
    "spec.objective.metricStrategies": {"maxProperties": 40},
    # More kinds of resources than a node has: the requests/limits rules range over them.
    "spec.trial.resources.requests": {"maxProperties": 32},
    "spec.trial.resources.limits": {"maxProperties": 32},
}
POD_TEMPLATE: Final = "spec.trial.podTemplate"


def extras() -> dict[str, dict[str, Any]]:
    """What spec.py and the registries say in code (regexes, names, uniqueness checks), as schema keywords.

    ``trial.task`` is an enum of the trial runtime's task registry, as validate checks it (an image
    cannot bring a task of its own: a program is ``trial.command``). Categorical ``choices`` are a
    list-type set, so the API server refuses a repeated value (compared as Go compares decoded JSON:
    ``1``, ``1.0``, ``true`` and ``"1"`` differ, as they do for validate); a pairwise CEL check would
    cost 1000 x 1000 per parameter, far over the budget. A set's items may be mixed scalars (only
    object and list items must be atomic). What the set changes: CEL compares sets regardless of
    order, so a parameter's ``self == oldSelf`` admits an edit that only reorders its choices, which
    the operator refuses (Optuna's categorical distribution, and the study's fingerprint, are
    ordered); and server-side apply cannot track a null item of a set (a ``null`` choice: kubectl
    apply works, ``--server-side`` is refused).
    """
    from openautoglm.pruners import PRUNERS
    from openautoglm.samplers import SAMPLERS
    from openautoglm_trial.tasks import TASKS

    return {
        "spec.algorithm.sampler": {"enum": list(SAMPLERS)},
        "spec.earlyStopping.pruner": {"enum": list(PRUNERS)},
        "spec.trial.task": {"enum": list(TASKS)},
        "spec.parameters": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        "spec.parameters[].name": {"pattern": PARAM_NAME_RE.pattern},
        "spec.parameters[].choices": {"x-kubernetes-list-type": "set"},
        "spec.parameters[].when": {"minProperties": 1},
        "spec.objective.metrics": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["metric"]},
        "spec.objective.additionalMetrics": {"x-kubernetes-list-type": "set"},
        "spec.trial.env": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        "spec.trial.env[].name": {"pattern": ENV_NAME_RE.pattern},
        "spec.trial.resources.requests{}": {"pattern": QUANTITY_RE.pattern},
        "spec.trial.resources.limits{}": {"pattern": QUANTITY_RE.pattern},
    }


class _WithFactoryDefaults(GenerateJsonSchema):
    """Also emit defaults given by ``default_factory`` (pydantic leaves them out)."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()
        return super().get_default_value(schema)


def _field_docs() -> dict[str, dict[str, str]]:
    """``#:`` comments above the fields of every model in spec.py: {model: {alias: text}}."""
    docs: dict[str, dict[str, str]] = {}
    for name, cls in vars(spec_module).items():
        if not (isinstance(cls, type) and issubclass(cls, BaseModel) and cls.__module__ == spec_module.__name__):
            continue
        aliases = {f: info.alias or f for f, info in cls.model_fields.items()}
        found: dict[str, str] = {}
        pending: list[str] = []
        for line in inspect.getsource(cls).splitlines():
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            m = re.match(r"\s+(\w+)\s*:", line)
            if pending and m and m.group(1) in aliases:
                found[aliases[m.group(1)]] = " ".join(pending).replace("``", "")
            pending = []
        docs[name] = found
    return docs


_KEY_ORDER: Final = [
    "description",
    "type",
    "format",
    "enum",
    "default",
    "nullable",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
]
_BOUNDS: Final = [
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "enum",
    "format",
]


def ordered(node: Any) -> Any:
    """``node`` with every schema's keys in reading order (description, type, bounds, then the
    x-kubernetes extensions), so the generated file reads like a hand-written one and diffs stay small."""
    if isinstance(node, list):
        return [ordered(v) for v in node]
    if not isinstance(node, dict):
        return node
    if "type" in node or "properties" in node or "x-kubernetes-preserve-unknown-fields" in node:
        rank = {k: i for i, k in enumerate(_KEY_ORDER)}
        keys = sorted(node, key=lambda k: rank.get(k, len(rank)))
    else:
        keys = list(node)
    out = {}
    for k in keys:
        # Property names, defaults and enum values are data: keep their order, order their schemas.
        if k in ("properties",):
            out[k] = {p: ordered(s) for p, s in node[k].items()}
        elif k in ("default", "enum"):
            out[k] = node[k]
        else:
            out[k] = ordered(node[k])
    return out


class _StructuralConverter:
    """Converts the model's JSON schema (pydantic, JSON Schema 2020) to a Kubernetes structural schema."""

    def __init__(self, defs: dict[str, Any]):
        self.defs = defs
        self.docs = _field_docs()

    def _flatten(self, node: dict[str, Any]) -> tuple[dict[str, Any], str | None, bool, list[dict[str, Any]]]:
        """Inline $ref and single-variant anyOf; return (node, model name, null allowed, union variants)."""
        node = dict(node)
        model = None
        allows_null = False
        while True:
            if "$ref" in node:
                model = node.pop("$ref").rsplit("/", 1)[-1]
                node = {**self.defs[model], **node}
                continue
            if "anyOf" in node:
                variants = node.pop("anyOf")
                non_null = [v for v in variants if v.get("type") != "null"]
                allows_null = allows_null or len(non_null) < len(variants)
                if len(non_null) == 1:
                    node = {**non_null[0], **node}
                    continue
                return node, model, allows_null, non_null
            return node, model, allows_null, []

    def convert(self, raw: dict[str, Any], description: str | None = None) -> dict[str, Any]:
        node, model, allows_null, union = self._flatten(raw)
        out: dict[str, Any] = {}
        if description or node.get("description"):
            out["description"] = description or " ".join(node["description"].replace("``", "").split())
        if union:
            if {v.get("type") for v in union} == {"integer", "string"}:
                out["x-kubernetes-int-or-string"] = True
            else:
                # A scalar (or scalar-or-list) union: no single structural type describes it.
                out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            kind = node.get("type")
            out["type"] = kind
            for key in _BOUNDS:
                if key in node:
                    out[key] = node[key]
            for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
                if key in node:  # JSON Schema 2020 -> OpenAPI 3.0
                    out[bound] = node[key]
                    out[key] = True
            if kind == "object":
                docs = self.docs.get(model or "", {})
                props = node.get("properties") or {}
                if props:
                    out["properties"] = {k: self.convert(v, docs.get(k)) for k, v in props.items()}
                    if node.get("required"):
                        out["required"] = list(node["required"])
                extra = node.get("additionalProperties")
                if isinstance(extra, dict):
                    out["additionalProperties"] = self.convert(extra)
                elif extra is True or (extra is None and not props):
                    out["x-kubernetes-preserve-unknown-fields"] = True
            elif kind == "array":
                out["items"] = self.convert(node["items"])
        default = node.get("default")
        if default is not None:
            out["default"] = _minimal_default(default, out)
            if allows_null:
                out["nullable"] = True  # null means something else than absent: it overrides the default
        return out


def _minimal_default(value: Any, schema: dict[str, Any]) -> Any:
    """Drop what the nested defaults (or pruning of nulls) fill in anyway: Budget() -> {}."""
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    out = {}
    for key, v in value.items():
        sub = schema["properties"].get(key, {})
        if v is None and not sub.get("nullable"):
            continue
        v = _minimal_default(v, sub)
        if "default" in sub and v == sub["default"]:
            continue
        out[key] = v
    return out


def node_at(root: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema node at a path like ``spec.parameters[].when`` (KeyError if the model lost it)."""
    node = root
    for part in filter(None, path.split(".")):
        name = part.rstrip("[]{}")
        node = node["properties"][name]
        suffix = part[len(name) :]
        if suffix == "[]":
            node = node["items"]
        elif suffix == "{}":
            node = node["additionalProperties"]
    return node


def spec_schema() -> dict[str, Any]:
    """The structural schema of ``spec``, converted from the model (without extras and rules)."""
    raw = TuningJobSpec.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    out = _StructuralConverter(raw.get("$defs", {})).convert(raw)
    out["description"] = (
        "What to tune (parameters), towards what (objective), how (algorithm, earlyStopping), "
        "within which budget, and how one trial runs (trial)."
    )
    return out


def pod_template_schema() -> dict[str, Any]:
    """The vendored PodTemplateSpec schema with the bounds of podtemplate.BOUNDS (for the rules' cost)."""
    schema = podschema.schema()
    for path, limit in pt.BOUNDS.items():
        node = node_at(schema, path)
        node["maxItems" if node.get("type") == "array" else "maxProperties"] = limit
    return schema


def status_schema() -> dict[str, Any]:
    """The status the operator writes. Unknown fields are kept (kopf stores its own state there)."""
    from openautoglm.engine.status import PARETO_LIMIT, RECENT_TRIALS

    checkpoint = {
        "description": "Where the trial's checkpoint is kept (trial.checkpoint): a directory on the claim.",
        "type": "object",
        "properties": {"claim": {"type": "string"}, "path": {"type": "string"}},
    }
    trial = {
        "type": "object",
        "properties": {
            "metricsProblem": {
                "description": "Why the trial's /metrics (or result) could not be read, if it could not: too large, "
                "too slow, malformed. The trial is judged by its termination message.",
                "type": "string",
            },
            "waiting": {
                "description": "Why a rank of the running trial is not running yet: Unschedulable (with the "
                "scheduler's message), SchedulingGated (queued in Kueue), ImagePullBackOff, ContainerCreating, "
                "or requeued (trial.pendingTimeoutSeconds).",
                "type": "string",
            },
            "requeues": {
                "description": "Times the trial gave back its pods unscheduled (trial.pendingTimeoutSeconds).",
                "type": "integer",
            },
            "checkpoint": checkpoint,
        },
        "x-kubernetes-preserve-unknown-fields": True,
    }
    integer = {"type": "integer"}
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "description": "Observed state of the TuningJob, written by the operator. Its size does not grow "
        "with the number of trials.",
        "type": "object",
        "properties": {
            "phase": {"description": "Pending, Running, Succeeded or Failed.", "type": "string"},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "progress": {"description": "Finished trials / maxTrials, e.g. 6/16.", "type": "string"},
            "observedGeneration": {"type": "integer", "format": "int64"},
            "startTime": timestamp,
            "completionTime": timestamp,
            "elapsedSeconds": {"type": "number"},
            "checkpointsPending": {
                "description": "A finished job's checkpoints that trial.checkpoint.keep lets go are still being "
                "removed (its janitor pod runs); absent once they are gone.",
                "type": "boolean",
            },
            "trials": {
                "description": "Trial counters.",
                "type": "object",
                "properties": {
                    k: integer for k in ("running", "completed", "pruned", "failed", "finished", "max", "retried")
                },
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "bestTrial": {
                "description": "The best finished trial (single objective).",
                "type": "object",
                "properties": {
                    "number": integer,
                    "value": {"type": "number"},
                    "params": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "checkpoint": checkpoint,
                },
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "paretoFront": {
                "description": "Several objectives: the non-dominated trials.",
                "type": "array",
                "maxItems": PARETO_LIMIT,
                "items": trial,
            },
            "operator": {
                "description": "With several operator replicas (leader election): the replica driving the job, "
                "since when, and whom it took over from and how (LeaseExpired or LeaseReleased).",
                "type": "object",
                "properties": {
                    "replica": {"type": "string"},
                    "leaderSince": timestamp,
                    "previousReplica": {"type": "string"},
                    "handover": {"type": "string", "enum": ["LeaseExpired", "LeaseReleased"]},
                },
            },
            "recentTrials": {
                "description": "The latest trials.",
                "type": "array",
                "maxItems": RECENT_TRIALS,
                "items": trial,
            },
            "conditions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "status"],
                    "properties": {
                        "type": {"type": "string"},
                        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                        "reason": {"type": "string"},
                        "message": {"type": "string"},
                        "lastTransitionTime": timestamp,
                        "observedGeneration": {"type": "integer", "format": "int64"},
                    },
                },
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
        "x-kubernetes-preserve-unknown-fields": True,
    }

"""The TuningJob CRD: generated from the model, structural, and admitting what the model admits.

Admission is checked with tests/k8s/harness/admission.py, which reads the committed CRD file and applies
it as the API server would (pruning, defaulting, OpenAPI validation, CEL rules via cel-python).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import admission
import kubernetes_validate
import pytest
import yaml
from helpers import DELETE, digits_job, mutate

from openautoglm import crd, podschema
from openautoglm.pruners import PRUNERS
from openautoglm.samplers import SAMPLERS
from openautoglm.spec import TuningJob
from openautoglm.validation import InvalidTuningJob, validate_document

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
SAMPLES = sorted(p for p in (REPO / "deploy" / "samples").glob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES_VERSION = "1.33.0"
MULTI = [{"metric": "accuracy", "direction": "maximize"}, {"metric": "loss", "direction": "minimize"}]


def _schema() -> dict[str, Any]:
    return admission.schema()


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (``a.b[]``, ``a.b{}``)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")


# ----------------------------------------------------------------------------- the file and the model
def test_committed_crd_is_what_the_model_gives() -> None:
    assert crd.CRD_FILE.read_text() == crd.render(), "run `python -m openautoglm.crd`"
    assert yaml.safe_load(crd.CRD_FILE.read_text()) == crd.build_crd()


def test_check_command_detects_drift(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "openautoglm.crd", "--check"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    stale = tmp_path / "crd.yaml"
    stale.write_text(crd.render().replace("maximum: 64", "maximum: 65"))
    bad = subprocess.run(
        [sys.executable, "-m", "openautoglm.crd", "--check", "--output", str(stale)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "maximum: 65" in bad.stderr and "out of date" in bad.stderr


def test_kustomization_lists_the_crd() -> None:
    kustomization = yaml.safe_load((REPO / "crds" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [crd.CRD_FILE.name]


def test_crd_object_is_a_valid_apiextensions_v1_crd() -> None:
    kubernetes_validate.validate(crd.build_crd(), KUBERNETES_VERSION, strict=True)


def test_names_scope_subresources_and_printer_columns() -> None:
    spec = crd.build_crd()["spec"]
    assert crd.build_crd()["metadata"]["name"] == "tuningjobs.openautoglm.io"
    assert spec["group"] == "openautoglm.io" and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "TuningJob",
        "listKind": "TuningJobList",
        "plural": "tuningjobs",
        "singular": "tuningjob",
        "shortNames": ["tj"],
        "categories": ["openautoglm"],
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "State": ("string", ".status.phase"),
        "Trials": ("string", ".status.progress"),
        "Best": ("number", ".status.bestTrial.value"),
        "Age": ("date", ".metadata.creationTimestamp"),
    }
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    # Every printer column points at a declared field of the right type.
    assert status["properties"]["phase"]["type"] == "string"
    assert status["properties"]["progress"]["type"] == "string"
    assert status["properties"]["bestTrial"]["properties"]["value"]["type"] == "number"
    assert set(status["properties"]) >= {
        "conditions",
        "observedGeneration",
        "trials",
        "bestTrial",
        "paretoFront",
        "recentTrials",
        "startTime",
        "completionTime",
        "elapsedSeconds",
        "reason",
        "message",
    }


def test_enums_come_from_the_registries() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["algorithm"]["properties"]["sampler"]["enum"] == list(SAMPLERS)
    assert spec["earlyStopping"]["properties"]["pruner"]["enum"] == list(PRUNERS)
    assert "enum" not in spec["trial"]["properties"]["task"], "command images bring their own tasks"


# ----------------------------------------------------------------------------- structural schema
def test_schema_is_structural() -> None:
    problems = []
    for path, node in _nodes(_schema()):
        for key in ("anyOf", "oneOf", "allOf", "not"):
            if key in node:
                problems.append(f"{path}: {key} (a structural schema states types only outside logic junctors)")
        for key in ("$ref", "$defs", "title", "const", "prefixItems", "definitions"):
            if key in node:
                problems.append(f"{path}: {key} is not allowed in a CRD schema")
        untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        if "type" not in node and not untyped_ok:
            problems.append(f"{path}: no type")
        if node.get("type") not in (None, "object", "array", "string", "integer", "number", "boolean"):
            problems.append(f"{path}: type {node.get('type')!r}")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties are mutually exclusive")
        if node.get("additionalProperties") in (True, False):
            problems.append(f"{path}: additionalProperties must be a schema")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: an array needs items")
        if "exclusiveMinimum" in node and node["exclusiveMinimum"] is not True:
            problems.append(f"{path}: exclusiveMinimum is a boolean in OpenAPI 3.0")
        if node.get("nullable") and "default" in node and node["default"] is None:
            problems.append(f"{path}: a null default")
    assert not problems, "\n".join(problems)


def test_only_name_is_described_under_metadata() -> None:
    metadata = _schema()["properties"]["metadata"]
    assert metadata == {"type": "object", "properties": {"name": {"type": "string"}}}


def test_resources_have_no_defaults() -> None:
    # A default under requests (or limits) would sit next to the user's limits: {limits: {cpu: 500m}}
    # would be stored with requests {cpu: 1}, above its limit.
    resources = _schema()["properties"]["spec"]["properties"]["trial"]["properties"]["resources"]
    assert [path for path, node in _nodes(resources) if "default" in node and path] == []
    assert resources.get("default") == {}


def test_pod_template_is_the_kubernetes_pod_template_schema() -> None:
    template = _schema()["properties"]["spec"]["properties"]["trial"]["properties"]["podTemplate"]
    assert template["description"]
    spec = template["properties"]["spec"]["properties"]
    assert {"nodeSelector", "tolerations", "affinity", "volumes", "initContainers", "securityContext"} <= set(spec)
    assert spec["containers"]["items"]["required"] == ["name"] and spec["containers"]["maxItems"] == 16
    assert set(template["properties"]["metadata"]["properties"]) == {"labels", "annotations"}
    # Structural down to the leaves: unknown pod fields are pruned, or refused under strict validation.
    assert not [path for path, node in _nodes(template) if node.get("x-kubernetes-preserve-unknown-fields")]


def test_vendored_pod_schema_is_what_kubernetes_validate_bundles() -> None:
    assert podschema.derive(podschema.load_source()) == podschema.schema()
    assert podschema.SCHEMA_FILE.read_text() == podschema.render(podschema.schema())
    ok = subprocess.run(
        [sys.executable, "-m", "openautoglm.podschema", "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_crd_stays_small() -> None:
    # etcd takes objects up to 1.5 MiB; kubectl apply (client side) keeps the whole object in an
    # annotation of at most 256 KiB.
    assert len(crd.CRD_FILE.read_bytes()) < 1024 * 1024
    assert len(json.dumps(crd.build_crd(), separators=(",", ":"))) < 256 * 1024


def test_every_default_is_valid_for_its_field() -> None:
    checked = 0
    for path, node in _nodes(_schema()):
        if "default" in node:
            value = copy.deepcopy(node["default"])
            admission._default(value, node)  # nested defaults apply to a defaulted object too
            assert admission.validate_value(value, node, path) == [], path
            checked += 1
    assert checked >= 20


def test_list_map_keys_are_required_fields() -> None:
    for path, node in _nodes(_schema()):
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key], (path, key)
                assert item["properties"][key]["type"] in ("string", "integer"), (path, key)
                assert not item["properties"][key].get("nullable"), (path, key)


def test_rule_field_paths_name_declared_fields() -> None:
    for path, node in _nodes(_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"], rule
            assert rule.get("reason", "FieldValueInvalid") in (
                "FieldValueInvalid",
                "FieldValueRequired",
                "FieldValueForbidden",
                "FieldValueDuplicate",
            )
            if "fieldPath" in rule:
                target = node
                assert re.fullmatch(r"(\.[A-Za-z_]\w*)+", rule["fieldPath"]), rule
                for name in rule["fieldPath"].split(".")[1:]:
                    assert name in target.get("properties", {}), f"{path}: {rule['fieldPath']}"
                    target = target["properties"][name]


def test_every_rule_compiles() -> None:
    rules = [r["rule"] for _, node in _nodes(_schema()) for r in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 25
    for rule in rules:
        admission._program(rule)


# A worst-case estimate in the spirit of the API server's: each comprehension multiplies the cost of
# its body by the bound of what it ranges over; a rule's cost counts once per possible instance of
# its node (the product of the maxItems of the lists above it). Unbounded ranges fail the test.
_MACRO = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.(all|exists|exists_one|map|filter)\(\s*(\w+)\s*,")
_PER_STEP = 20  # generous: a field select, a string comparison of <= 63 chars, boolean operators


def _estimate(rule: str, node: dict[str, Any]) -> float:
    bound_vars: dict[str, dict[str, Any]] = {}
    spans: list[tuple[int, int, float]] = []
    for m in _MACRO.finditer(rule):
        head, *fields = m.group(1).split(".")
        target = node if head in ("self", "oldSelf") else bound_vars[head]
        for f in fields:
            target = target["properties"][f]
        size = target.get("maxItems", target.get("maxProperties"))
        assert size is not None, f"{rule}: ranges over an unbounded {m.group(1)}"
        bound_vars[m.group(3)] = target.get("items", {"type": "string"})
        depth, end = 0, m.end(2)
        for end in range(m.end(2), len(rule)):  # from the macro's "(" to its ")"
            depth += {"(": 1, ")": -1}.get(rule[end], 0)
            if depth == 0:
                break
        outer = [f for s, e, f in spans if s < m.start() and m.end() < e]
        spans.append((m.start(), end, size * (max(outer) if outer else 1)))
    return _PER_STEP * (1 + sum(f for _, _, f in spans))


def test_rule_costs_fit_the_api_server_budget() -> None:
    total = 0.0

    def walk(node: dict[str, Any], cardinality: float, path: str) -> None:
        nonlocal total
        for rule in node.get("x-kubernetes-validations", []):
            cost = _estimate(rule["rule"], node)
            assert cost <= 10_000_000, f"{path}: {rule['rule']} ~{cost:.0f}"
            total += cost * cardinality
        for name, sub in node.get("properties", {}).items():
            walk(sub, cardinality, f"{path}.{name}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], cardinality * node.get("maxProperties", 10_000), f"{path}{{}}")
        if "items" in node:
            walk(node["items"], cardinality * node.get("maxItems", 10_000), f"{path}[]")

    walk(_schema(), 1, "")
    assert total <= 100_000_000, f"~{total:.0f}"


# ----------------------------------------------------------------------------- admission
def _set(path: str, value: Any) -> Callable[[dict], None]:
    return lambda doc: mutate(doc, path, value)


def _steps(*fns: Callable[[dict], None]) -> Callable[[dict], None]:
    def apply(doc: dict) -> None:
        for fn in fns:
            fn(doc)

    return apply


def _add_param(param: dict) -> Callable[[dict], None]:
    return lambda doc: doc["spec"]["parameters"].append(param)


#: Your own program instead of the digits task (metric collectors are for programs only).
COMMAND = _steps(
    lambda doc: mutate(doc, "spec.trial.task", DELETE),
    lambda doc: mutate(doc, "spec.trial.command", ["python", "train.py"]),
)


# Parameters of digits_job(): [0] lr float log, [1] batch_size categorical, [2] hidden int step 16,
# [3] optimizer categorical, [4] beta1 float when optimizer, [5] momentum float step 0.1 when optimizer.
# (id, mutation, path the message must name, fragment of the message)
CRD_BAD: list[tuple[str, Callable[[dict], None], str, str]] = [
    # --- OpenAPI schema
    ("spec-missing", _set("spec", DELETE), "spec", "Required value"),
    ("objective-missing", _set("spec.objective", DELETE), "spec.objective", "Required value"),
    ("trial-missing", _set("spec.trial", DELETE), "spec.trial", "Required value"),
    ("max-trials-zero", _set("spec.budget.maxTrials", 0), "spec.budget.maxTrials", "greater than or equal to 1"),
    ("max-trials-string", _set("spec.budget.maxTrials", "ten"), "spec.budget.maxTrials", "must be of type integer"),
    (
        "negative-max-failed",
        _set("spec.budget.maxFailedTrials", -1),
        "spec.budget.maxFailedTrials",
        "greater than or equal to 0",
    ),
    ("timeout-zero", _set("spec.budget.timeoutSeconds", 0), "spec.budget.timeoutSeconds", "greater than or equal to 1"),
    ("bad-direction", _set("spec.objective.direction", "up"), "spec.objective.direction", 'Unsupported value: "up"'),
    ("bad-metric-name", _set("spec.objective.metric", "val acc"), "spec.objective.metric", "should match"),
    (
        "one-item-metrics",
        _steps(_set("spec.objective", {"metrics": MULTI[:1]}), _set("spec.earlyStopping.pruner", "none")),
        "spec.objective.metrics",
        "at least 2 items",
    ),
    (
        "duplicate-objective-metrics",
        _steps(_set("spec.objective", {"metrics": [MULTI[0], MULTI[0]]}), _set("spec.earlyStopping.pruner", "none")),
        "spec.objective.metrics[1]",
        "Duplicate value",
    ),
    ("unknown-sampler", _set("spec.algorithm.sampler", "bayes"), "spec.algorithm.sampler", "supported values"),
    ("negative-seed", _set("spec.algorithm.seed", -1), "spec.algorithm.seed", "greater than or equal to 0"),
    ("unknown-pruner", _set("spec.earlyStopping.pruner", "asha"), "spec.earlyStopping.pruner", "supported values"),
    (
        "max-grad-norm-zero",
        _set("spec.earlyStopping.maxGradNorm", 0),
        "spec.earlyStopping.maxGradNorm",
        "should be greater than 0",
    ),
    ("patience-zero", _set("spec.earlyStopping.patience", 0), "spec.earlyStopping.patience", "greater than or equal"),
    ("no-parameters", _set("spec.parameters", []), "spec.parameters", "at least 1 items"),
    ("parameter-type", _set("spec.parameters[0].type", "double"), "spec.parameters[0].type", "Unsupported value"),
    (
        "parameter-name-bad-characters",
        _set("spec.parameters[0].name", "learning rate"),
        "spec.parameters[0].name",
        "should match",
    ),
    ("parameter-name-too-long", _set("spec.parameters[0].name", "x" * 64), "spec.parameters[0].name", "Too long"),
    ("log-not-boolean", _set("spec.parameters[0].log", "yes"), "spec.parameters[0].log", "must be of type boolean"),
    ("step-zero", _set("spec.parameters[2].step", 0), "spec.parameters[2].step", "should be greater than 0"),
    (
        "too-many-choices",
        _set("spec.parameters[1].choices", list(range(1001))),
        "spec.parameters[1].choices",
        "Too many",
    ),
    (
        "duplicate-parameter-names",
        _add_param({"name": "lr", "type": "float", "low": 0.1, "high": 0.2}),
        "spec.parameters[6]",
        "Duplicate value",
    ),
    ("empty-when", _set("spec.parameters[4].when", {}), "spec.parameters[4].when", "at least 1 properties"),
    ("epochs-zero", _set("spec.trial.epochs", 0), "spec.trial.epochs", "greater than or equal to 1"),
    ("workers-65", _set("spec.trial.workers", 65), "spec.trial.workers", "less than or equal to 64"),
    ("retries-negative", _set("spec.trial.retries", -1), "spec.trial.retries", "greater than or equal to 0"),
    ("retries-11", _set("spec.trial.retries", 11), "spec.trial.retries", "less than or equal to 10"),
    ("empty-image", _set("spec.trial.image", ""), "spec.trial.image", "at least 1 chars long"),
    (
        "empty-command",
        _steps(_set("spec.trial.task", DELETE), _set("spec.trial.command", [])),
        "spec.trial.command",
        "at least 1 items",
    ),
    (
        "bad-resource-quantity",
        _set("spec.trial.resources.limits.cpu", "1 core"),
        "spec.trial.resources.limits.cpu",
        "should match",
    ),
    (
        "env-name-not-identifier",
        _set("spec.trial.env", [{"name": "1X", "value": "1"}]),
        "spec.trial.env[0].name",
        "should match",
    ),
    (
        "duplicate-env-names",
        _set("spec.trial.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.trial.env[1]",
        "Duplicate value",
    ),
    ("metrics-port-zero", _set("spec.metrics.port", 0), "spec.metrics.port", "greater than or equal to 1"),
    (
        "interval-zero",
        _set("spec.metrics.intervalSeconds", 0),
        "spec.metrics.intervalSeconds",
        "should be greater than or equal to 0.5",
    ),
    ("unknown-metrics-source", _set("spec.metrics.source", "pushgateway"), "spec.metrics.source", "Unsupported value"),
    (
        "prometheus-url-scheme",
        _steps(_set("spec.metrics.source", "prometheus"), _set("spec.metrics.prometheus", {"url": "ftp://prom"})),
        "spec.metrics.prometheus.url",
        "should match",
    ),
    (
        "postgres-url-scheme",
        _set("spec.storage", {"postgres": {"url": "mysql://db/tune"}}),
        "spec.storage.postgres.url",
        "should match",
    ),
    (
        "secret-ref-without-name",
        _set("spec.storage", {"postgres": {"secretRef": {"key": "dsn"}}}),
        "spec.storage.postgres.secretRef.name",
        "Required value",
    ),
    ("too-many-warm-starts", _set("spec.warmStart", [{"params": {"lr": 0.01}}] * 11), "spec.warmStart", "Too many"),
    ("warm-start-without-params", _set("spec.warmStart", [{}]), "spec.warmStart[0].params", "Required value"),
    ("float-infinite", _set("spec.parameters[0].high", float("inf")), "spec.parameters[0].high", "finite"),
    # --- CEL rules
    ("name-too-long", _set("metadata.name", "d" * 41), "metadata.name", "at most 40 characters"),
    ("name-uppercase", _set("metadata.name", "Digits"), "metadata.name", "DNS-1035"),
    ("name-starts-with-digit", _set("metadata.name", "1digits"), "metadata.name", "DNS-1035"),
    (
        "parallelism-above-max-trials",
        _set("spec.budget.parallelism", 5),
        "spec.budget.parallelism",
        "must be <= maxTrials",
    ),
    (
        "parallelism-above-default-max-trials",
        _set("spec.budget", {"parallelism": 11}),
        "spec.budget.parallelism",
        "must be <= maxTrials",
    ),
    ("objective-no-metric", _set("spec.objective.metric", DELETE), "spec.objective.metric", "Required value"),
    ("objective-no-direction", _set("spec.objective.direction", DELETE), "spec.objective.direction", "Required value"),
    (
        "metric-and-metrics",
        _steps(_set("spec.objective.metrics", MULTI), _set("spec.earlyStopping.pruner", "none")),
        "spec.objective.metric",
        "not both",
    ),
    (
        "multi-objective-with-target",
        _steps(_set("spec.objective", {"metrics": MULTI, "target": 0.9}), _set("spec.earlyStopping.pruner", "none")),
        "spec.objective.target",
        "single objective",
    ),
    (
        "pruner-with-several-objectives",
        _set("spec.objective", {"metrics": MULTI}),
        "spec.earlyStopping.pruner",
        "single objective",
    ),
    ("float-without-low", _set("spec.parameters[0].low", DELETE), "spec.parameters[0].low", "Required value"),
    ("int-without-high", _set("spec.parameters[2].high", DELETE), "spec.parameters[2].high", "Required value"),
    ("low-not-below-high", _set("spec.parameters[0].high", 1.0e-3), "spec.parameters[0].high", "greater than low"),
    ("log-with-zero-low", _set("spec.parameters[0].low", 0.0), "spec.parameters[0].low", "> 0 on a log scale"),
    ("step-with-log", _set("spec.parameters[0].step", 0.01), "spec.parameters[0].step", "log"),
    ("int-step-2-with-log", _set("spec.parameters[2].log", True), "spec.parameters[2].step", "log"),
    ("step-larger-than-range", _set("spec.parameters[5].step", 2.0), "spec.parameters[5].step", "<= high - low"),
    ("int-non-integer-low", _set("spec.parameters[2].low", 16.5), "spec.parameters[2].low", "integer"),
    ("int-non-integer-high", _set("spec.parameters[2].high", 64.25), "spec.parameters[2].high", "integer"),
    ("int-non-integer-step", _set("spec.parameters[2].step", 1.5), "spec.parameters[2].step", "integer"),
    ("range-on-categorical", _set("spec.parameters[1].low", 1), "spec.parameters[1]", "only for float and int"),
    ("log-on-categorical", _set("spec.parameters[1].log", True), "spec.parameters[1]", "only for float and int"),
    (
        "categorical-without-choices",
        _set("spec.parameters[1].choices", DELETE),
        "spec.parameters[1].choices",
        "Required value",
    ),
    ("choices-on-float", _set("spec.parameters[0].choices", [0.1]), "spec.parameters[0].choices", "Forbidden"),
    (
        "choice-is-a-mapping",
        _set("spec.parameters[1].choices", [32, {"size": 64}]),
        "spec.parameters[1].choices",
        "scalars",
    ),
    (
        "fixed-without-value",
        _set("spec.parameters[1]", {"name": "batch_size", "type": "fixed"}),
        "spec.parameters[1].value",
        "Required value",
    ),
    (
        "fixed-null-value",
        _set("spec.parameters[1]", {"name": "batch_size", "type": "fixed", "value": None}),
        "spec.parameters[1].value",
        "Required value",
    ),
    (
        "fixed-list-value",
        _set("spec.parameters[1]", {"name": "batch_size", "type": "fixed", "value": [32]}),
        "spec.parameters[1].value",
        "scalar",
    ),
    ("value-on-categorical", _set("spec.parameters[1].value", 32), "spec.parameters[1].value", "Forbidden"),
    (
        "when-unknown-parameter",
        _set("spec.parameters[4].when", {"solver": "adam"}),
        "spec.parameters",
        "categorical or fixed parameter",
    ),
    (
        "when-on-float-parameter",
        _set("spec.parameters[4].when", {"lr": 0.1}),
        "spec.parameters",
        "categorical or fixed parameter",
    ),
    (
        "when-value-is-a-mapping",
        _set("spec.parameters[4].when", {"optimizer": {"in": ["adam"]}}),
        "spec.parameters[4].when",
        "scalar or a list",
    ),
    ("task-and-command", _set("spec.trial.command", ["python", "train.py"]), "spec.trial.task", "exactly one"),
    ("neither-task-nor-command", _set("spec.trial.task", DELETE), "spec.trial.task", "exactly one"),
    (
        "reserved-env-var",
        _set("spec.trial.env", [{"name": "HOROVOD_RANK", "value": "0"}]),
        "spec.trial.env[0].name",
        "set by the operator",
    ),
    (
        "postgres-url-and-secret",
        _set("spec.storage", {"postgres": {"url": "postgresql://u@db/tune", "secretRef": {"name": "db"}}}),
        "spec.storage.postgres.url",
        "exactly one of url or secretRef",
    ),
    ("postgres-neither", _set("spec.storage", {"postgres": {}}), "spec.storage.postgres.url", "exactly one"),
    (
        "journal-and-postgres",
        _set("spec.storage", {"journal": {}, "postgres": {"url": "postgresql://u@db/tune"}}),
        "spec.storage.postgres",
        "choose one storage",
    ),
    (
        "warm-start-unknown-parameter",
        _set("spec.warmStart", [{"params": {"lr": 0.01, "lr_decay": 0.5}}]),
        "spec.warmStart",
        "parameters of the search space",
    ),
    (
        "grid-warm-start-partial",
        _steps(_set("spec.algorithm.sampler", "grid"), _set("spec.warmStart", [{"params": {"lr": 0.01}}])),
        "spec.warmStart",
        "every parameter",
    ),
    (
        "grid-start-from-defaults",
        _steps(_set("spec.algorithm.sampler", "grid"), _set("spec.algorithm.startFromDefaults", True)),
        "spec.algorithm.startFromDefaults",
        "grid sampler",
    ),
    (
        "warm-start-value-is-a-list",
        _set("spec.warmStart", [{"params": {"lr": [0.01]}}]),
        "spec.warmStart[0].params[lr]",
        "scalar",
    ),
    # --- objectives, metric collection, resources (schema, CEL with the quantity library)
    (
        "additional-metric-twice",
        _set("spec.objective.additionalMetrics", ["loss", "loss"]),
        "spec.objective.additionalMetrics[1]",
        "Duplicate value",
    ),
    (
        "additional-metric-is-objective",
        _set("spec.objective.additionalMetrics", ["accuracy"]),
        "spec.objective.additionalMetrics",
        "objective metric",
    ),
    (
        "strategy-for-unrecorded-metric",
        _set("spec.objective.metricStrategies", {"loss": "min"}),
        "spec.objective.metricStrategies",
        "objective metric or one of additionalMetrics",
    ),
    (
        "strategy-not-min-max-latest",
        _steps(
            _set("spec.objective.additionalMetrics", ["loss"]), _set("spec.objective.metricStrategies", {"loss": "avg"})
        ),
        "spec.objective.metricStrategies.loss",
        "Unsupported value",
    ),
    (
        "start-from-defaults-with-a-program",
        _steps(COMMAND, _set("spec.algorithm.startFromDefaults", True)),
        "spec.algorithm.startFromDefaults",
        "only for a built-in task",
    ),
    (
        "collector-with-built-in-task",
        _set("spec.metrics.collector", {"kind": "stdout"}),
        "spec.metrics.collector",
        "only for trial.command",
    ),
    (
        "collector-unknown-kind",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "statsd"})),
        "spec.metrics.collector.kind",
        "Unsupported value",
    ),
    (
        "file-collector-without-path",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "file"})),
        "spec.metrics.collector.path",
        "Required value",
    ),
    (
        "path-for-stdout-collector",
        _steps(COMMAND, _set("spec.metrics.collector", {"path": "/tmp/metrics.log"})),
        "spec.metrics.collector.path",
        "Forbidden",
    ),
    (
        "prometheus-collector-without-port",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "prometheus"})),
        "spec.metrics.collector.port",
        "Required value",
    ),
    (
        "port-for-push-collector",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "push", "port": 8000})),
        "spec.metrics.collector.port",
        "Forbidden",
    ),
    (
        "filter-for-json-file",
        _steps(
            COMMAND,
            _set(
                "spec.metrics.collector",
                {"kind": "file", "path": "/tmp/m.jsonl", "format": "json", "filter": "(\\w+)=(\\S+)"},
            ),
        ),
        "spec.metrics.collector.filter",
        "Forbidden",
    ),
    (
        "collector-port-is-the-metrics-port",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "prometheus", "port": 9090})),
        "spec.metrics.collector.port",
        "taken by the trial supervisor",
    ),
    (
        "collector-port-is-the-rendezvous-port",
        _steps(COMMAND, _set("spec.metrics.collector", {"kind": "prometheus", "port": 29400})),
        "spec.metrics.collector.port",
        "taken by the trial supervisor",
    ),
    (
        "limit-below-request",
        _set("spec.trial.resources", {"requests": {"memory": "1Gi"}, "limits": {"memory": "128Mi"}}),
        "spec.trial.resources.limits",
        ">= its request",
    ),
    (
        "gpu-without-limit",
        _set("spec.trial.resources", {"requests": {"nvidia.com/gpu": "1"}}),
        "spec.trial.resources.limits",
        "needs a limit",
    ),
    (
        "gpu-overcommitted",
        _set("spec.trial.resources", {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}}),
        "spec.trial.resources.requests",
        "must equal its limit",
    ),
    # --- the pod template (every case: tests/unit/test_podtemplate.py)
    (
        "pod-template-wrong-type",
        _set("spec.trial.podTemplate", {"spec": {"nodeSelector": ["gpu=h100"]}}),
        "spec.trial.podTemplate.spec.nodeSelector",
        "must be of type object",
    ),
    (
        "pod-template-privileged-sidecar",
        _set(
            "spec.trial.podTemplate",
            {"spec": {"containers": [{"name": "side", "image": "busybox", "securityContext": {"privileged": True}}]}},
        ),
        "spec.trial.podTemplate.spec.containers[0].securityContext.privileged",
        "must not be true",
    ),
    (
        "pod-template-worker-command",
        _set("spec.trial.podTemplate", {"spec": {"containers": [{"name": "worker", "command": ["sh"]}]}}),
        "spec.trial.podTemplate.spec.containers[0].command",
        "Forbidden",
    ),
]

#: Cases the CRD rejects and the model accepts: bounds that keep the CEL rules' cost in budget, and
#: values pydantic coerces (lax mode) where the API server checks JSON types.
CRD_STRICTER = {
    "too-many-warm-starts": "warmStart is capped at 10 entries (warm-start rule cost)",
}


def test_enough_bad_jobs() -> None:
    assert len(CRD_BAD) >= 32
    assert len({c[0] for c in CRD_BAD}) == len(CRD_BAD)


@pytest.mark.parametrize(("mutation", "path", "fragment"), [c[1:] for c in CRD_BAD], ids=[c[0] for c in CRD_BAD])
def test_bad_job_is_rejected_with_its_field_path(mutation: Callable[[dict], None], path: str, fragment: str) -> None:
    doc = digits_job()
    mutation(doc)
    problems = admission.review(doc)
    at_path = [p for p in problems if p.startswith(f"{path}: ")]
    assert at_path, f"nothing at {path}: {problems}"
    assert any(fragment in p for p in at_path), f"{fragment!r} not in {at_path}"


@pytest.mark.parametrize("case", CRD_BAD, ids=[c[0] for c in CRD_BAD])
def test_what_the_crd_rejects_the_model_rejects_too(case: tuple) -> None:
    case_id, mutation, _, _ = case
    doc = digits_job()
    mutation(doc)
    if case_id in CRD_STRICTER:
        validate_document(doc)  # still valid for the model: keep CRD_STRICTER accurate
        return
    with pytest.raises(InvalidTuningJob):
        validate_document(doc)


def test_when_keys_are_bounded_by_the_crd_only() -> None:
    # CRD_ONLY_BOUNDS: 8 conditions per parameter. Eight is accepted, nine is not.
    params = [{"name": f"c{i}", "type": "categorical", "choices": ["a", "b"]} for i in range(9)]
    cond = {"name": "x", "type": "float", "low": 0.0, "high": 1.0}
    doc = digits_job(parameters=[*params, {**cond, "when": {f"c{i}": "a" for i in range(8)}}])
    assert admission.review(doc) == []
    doc = digits_job(parameters=[*params, {**cond, "when": {f"c{i}": "a" for i in range(9)}}])
    assert any(p.startswith("spec.parameters[9].when: Too many") for p in admission.review(doc))


@pytest.mark.parametrize("path", EXAMPLES + SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_and_samples_are_admitted(path: Path) -> None:
    jobs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "TuningJob"]
    assert jobs
    for job in jobs:
        assert admission.review(job, strict=True) == []


def test_there_are_samples() -> None:
    assert SAMPLES, "deploy/samples/*.yaml is empty"


def _with(step: Callable[[dict], None], path: str, value: Any) -> dict[str, Any]:
    doc = digits_job()
    step(doc)
    return mutate(doc, path, value)


def test_valid_variants_are_admitted() -> None:
    variants = [
        digits_job(objective={"metrics": MULTI}, earlyStopping={"pruner": "none"}, algorithm={"sampler": "nsga2"}),
        digits_job(
            trial={
                "command": ["python", "train.py", "--epochs", "3"],
                "image": "me/trainer:1",
                "env": [{"name": "DATA", "value": "/data"}],
            }
        ),
        digits_job(storage={"postgres": {"secretRef": {"name": "optuna-db"}}}),
        digits_job(storage={"journal": {"path": "mine.v2.journal"}}),
        digits_job(metrics={"source": "prometheus", "prometheus": {"url": "http://prometheus:9090"}}),
        # The operator's own Prometheus, and a template with every placeholder inside label matchers.
        digits_job(metrics={"source": "prometheus"}),
        digits_job(
            metrics={
                "source": "prometheus",
                "prometheus": {
                    "query": 'max by (metric) (my_gauge{ns="{namespace}",j="{job}",t="{trial}",m=~"{metric}"})'
                },
            }
        ),
        digits_job(storage={"postgres": {"url": "postgresql://tuner@db:5432/optuna?sslmode=require"}}),
        digits_job(warmStart=[{"params": {"lr": 0.01, "batch_size": 64, "optimizer": "adam"}}]),
        mutate(digits_job(), "spec.parameters[1]", {"name": "batch_size", "type": "fixed", "value": 64}),
        mutate(digits_job(), "spec.parameters[4].when", {"optimizer": ["adam", "sgd"]}),
        mutate(
            digits_job(),
            "spec.parameters[2]",
            {"name": "hidden", "type": "int", "low": 16, "high": 256, "log": True, "step": 1},
        ),
        mutate(digits_job(), "spec.earlyStopping.maxGradNorm", None),
        digits_job(
            objective={
                "metric": "accuracy",
                "direction": "maximize",
                "additionalMetrics": ["loss", "train_loss"],
                "metricStrategies": {"accuracy": "latest", "loss": "min"},
            }
        ),
        mutate(
            digits_job(), "spec.trial.resources", {"limits": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}}
        ),
        mutate(digits_job(), "spec.trial.resources", {"requests": {"cpu": "250m"}}),
        mutate(
            digits_job(),
            "spec.trial.resources",
            {"requests": {"cpu": "0.5", "nvidia.com/gpu": "2"}, "limits": {"cpu": "500m", "nvidia.com/gpu": "2"}},
        ),
        *(
            _with(COMMAND, "spec.metrics.collector", collector)
            for collector in (
                {"kind": "stdout", "filter": "(\\w+):\\s*(\\S+)"},
                {"kind": "file", "path": "/tmp/m.jsonl", "format": "json"},
                {"kind": "prometheus", "port": 8000, "metricsPath": "/stats"},
                {"kind": "push", "stepMetric": "step"},
                {"kind": "native"},
            )
        ),
        _with(COMMAND, "spec.trial.podTemplate", {"spec": {"nodeSelector": {"gpu": "h100"}}}),
    ]
    for doc in variants:
        validate_document(doc)  # the model agrees
        assert admission.review(doc, strict=True) == [], doc["spec"]


# ----------------------------------------------------------------------------- defaults
MINIMAL_SPEC = {
    "objective": {"metric": "accuracy", "direction": "maximize"},
    "parameters": [{"name": "lr", "type": "float", "low": 1.0e-3, "high": 0.1}],
    "trial": {"task": "digits"},
}


def test_crd_defaults_equal_the_model_defaults() -> None:
    doc = digits_job()
    doc["spec"] = copy.deepcopy(MINIMAL_SPEC)
    defaulted = admission.apply_defaults(doc)
    model = TuningJob.model_validate(doc).model_dump(by_alias=True, mode="json", exclude_none=True)
    assert defaulted["spec"] == model["spec"]


@pytest.mark.parametrize(
    "spec",
    [
        {"storage": {"postgres": {"secretRef": {"name": "db"}}}},
        {"trial": {"task": "digits", "resources": {"limits": {"cpu": "2"}}}},
        {"budget": {"maxTrials": 3}, "earlyStopping": {"pruner": "median"}},
        {"objective": {"metrics": MULTI}},
        {"metrics": {"source": "prometheus", "prometheus": {"url": "http://prom:9090"}}},
    ],
    ids=["secret-ref-key", "partial-resources", "partial-sections", "several-objectives", "prometheus"],
)
def test_defaulting_keeps_the_model_meaning(spec: dict[str, Any]) -> None:
    doc = digits_job()
    doc["spec"] = {**copy.deepcopy(MINIMAL_SPEC), **spec}
    defaulted = admission.apply_defaults(doc)
    assert TuningJob.model_validate(defaulted) == TuningJob.model_validate(doc)
    model = TuningJob.model_validate(doc).model_dump(by_alias=True, mode="json", exclude_none=True)
    assert defaulted["spec"] == model["spec"]


def test_null_means_absent_except_where_it_switches_something_off() -> None:
    doc = digits_job()
    doc["spec"] = {
        **copy.deepcopy(MINIMAL_SPEC),
        "budget": {"timeoutSeconds": None},
        "earlyStopping": {"maxGradNorm": None},
        "metrics": None,
    }
    stored, problems = admission.admit(doc)
    assert problems == []
    assert "timeoutSeconds" not in stored["spec"]["budget"]  # pruned, as None means absent
    assert stored["spec"]["earlyStopping"]["maxGradNorm"] is None  # nullable: null turns the check off
    assert stored["spec"]["metrics"]["port"] == 9090  # a null object gets its default
    job = TuningJob.model_validate(stored)
    assert job.spec.early_stopping.max_grad_norm is None and job.spec.budget.timeout_seconds is None


def test_unknown_fields_are_pruned_or_reported_when_strict() -> None:
    doc = mutate(mutate(digits_job(), "spec.budjet", {"maxTrials": 8}), "spec.trial.worker", 2)
    doc["spec"]["algorithm"]["settings"] = {"n_startup_trials": 3}  # preserved: free-form
    stored, problems = admission.admit(doc)
    assert problems == []
    assert "budjet" not in stored["spec"] and "worker" not in stored["spec"]["trial"]
    assert stored["spec"]["algorithm"]["settings"] == {"n_startup_trials": 3}
    strict = admission.review(doc, strict=True)
    assert 'spec.budjet: unknown field "spec.budjet"' in strict
    assert any(p.startswith("spec.trial.worker:") for p in strict)


def test_rules_are_skipped_after_a_type_error_as_the_api_server_does() -> None:
    doc = mutate(mutate(digits_job(), "spec.budget.maxTrials", "four"), "spec.parameters[0].low", 0.0)
    problems = admission.review(doc)
    assert any(p.startswith("spec.budget.maxTrials:") for p in problems)
    assert not any(p.startswith("spec.parameters[0].low:") for p in problems)
    assert "some validation rules were not checked" in problems[-1]


def test_messages_have_the_api_server_shape() -> None:
    assert admission.review(mutate(digits_job(), "spec.budget.parallelism", 5)) == [
        'spec.budget.parallelism: Invalid value: "object": must be <= maxTrials'
    ]
    assert admission.review(mutate(digits_job(), "spec.trial.task", DELETE)) == [
        'spec.trial.task: Invalid value: "object": give exactly one of task (a built-in task) or command '
        "(your own program)"
    ]
    assert admission.review(mutate(digits_job(), "spec.objective.direction", "up")) == [
        'spec.objective.direction: Unsupported value: "up": supported values: "maximize", "minimize"',
        '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
        "correct the existing errors to complete validation",
    ]


def test_metadata_and_type_are_checked() -> None:
    doc = digits_job()
    del doc["metadata"]["name"]
    assert any(p.startswith("metadata.name: Required value") for p in admission.review(doc))
    assert any(p.startswith("apiVersion:") for p in admission.review(mutate(digits_job(), "apiVersion", "v1")))
    doc = mutate(digits_job(), "metadata.generateName", "digits-")
    del doc["metadata"]["name"]
    assert not any(p.startswith("metadata.name: Required") for p in admission.review(doc))


# ----------------------------------------------------------------------------- status
STATUS = {
    "phase": "Running",
    "progress": "6/16",
    "observedGeneration": 1,
    "startTime": "2025-01-01T10:00:00Z",
    "elapsedSeconds": 63.2,
    "trials": {"running": 2, "completed": 4, "pruned": 1, "failed": 1, "finished": 6, "max": 16},
    "bestTrial": {"number": 3, "value": 0.97, "params": {"lr": 0.01, "optimizer": "adam"}, "state": "Completed"},
    "recentTrials": [{"number": i, "state": "Completed", "value": 0.9, "params": {"lr": 0.01}} for i in range(10)],
    "paretoFront": [],
    "conditions": [
        {
            "type": "Running",
            "status": "True",
            "reason": "TrialsRunning",
            "message": "2 running",
            "lastTransitionTime": "2025-01-01T10:00:00+00:00",
            "observedGeneration": 1,
        }
    ],
    "kopf": {"progress": {}},
}


def test_status_written_by_the_operator_is_admitted_and_kept() -> None:
    doc = digits_job()
    doc["status"] = copy.deepcopy(STATUS)
    stored, problems = admission.admit(doc)
    assert problems == []
    assert stored["status"] == STATUS  # unknown status fields (kopf's, a trial's state) are kept


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        ("status.progress", 6, "must be of type string"),
        ("status.bestTrial.value", "0.97", "must be of type number"),
        ("status.trials.running", 1.5, "must be of type integer"),
        ("status.startTime", "yesterday", "date-time"),
        ("status.conditions[0].status", "Yes", "Unsupported value"),
        ("status.recentTrials", [{"number": i} for i in range(11)], "Too many"),
    ],
    ids=["progress", "best-value", "counter", "start-time", "condition-status", "recent-trials"],
)
def test_malformed_status_is_rejected(path: str, value: Any, fragment: str) -> None:
    doc = digits_job()
    doc["status"] = copy.deepcopy(STATUS)
    mutate(doc, path, value)
    problems = admission.review(doc)
    assert any(p.startswith(f"{path}: ") and fragment in p for p in problems), problems


# ----------------------------------------------------------------------------- CRD against the model
def _load_unit_cases() -> list[tuple]:
    path = REPO / "tests" / "unit" / "test_spec.py"
    spec = importlib.util.spec_from_file_location("openautoglm_unit_test_spec_cases", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return list(module.MALFORMED)


UNIT_CASES = _load_unit_cases()

#: Jobs the model rejects and the CRD admits, and why. The operator validates every job with the
#: model (and the registries) before running it, so these fail there with the same message as
#: `openautoglm validate`, as a Failed condition instead of a 422.
MODEL_ONLY = {
    "unknown-sampler-setting": "sampler settings are checked against the sampler registry: operator only",
    "sampler-rejects-value": "sampler settings are checked by building the sampler: operator only",
    "nsga2-population-too-small": "sampler settings: operator only",
    "grid-points-too-few": "sampler settings: operator only",
    "unknown-pruner-setting": "pruner settings are checked against the pruner registry: operator only",
    "threshold-without-bounds": "pruner settings: operator only",
    "percentile-out-of-range": "pruner settings: operator only",
    "hyperband-reduction-factor-1": "pruner settings: operator only",
    "unknown-task": "no task enum: a command image may bring its own tasks",
    "parameter-unknown-to-task": "a task's hyperparameters live in the trial runtime's registry",
    "duplicate-choices": "choices hold mixed scalars (no list-type set) and a pairwise CEL check over 1000 "
    "choices x 200 parameters exceeds the cost budget",
    "when-later-parameter": "CEL has no index in comprehensions (cel-python lacks the two-variable form): "
    "the CRD checks that the condition names a categorical/fixed parameter, not its order",
    "when-value-not-a-choice": "checking each value against the named parameter's choices costs "
    "200 x 8 x 200 x 1000: over budget",
    "warm-start-not-a-choice": "checking each warm-start value against its parameter's choices costs "
    "10 x 200 x 200 x 1000: over budget",
    "warm-start-out-of-range": "warm-start values are mixed scalars: CEL cannot order them against a range",
    "warm-start-not-a-number": "warm-start values are mixed scalars (as above)",
    "warm-start-int-fraction": "warm-start values are mixed scalars (as above)",
    # Also model only, with no case in test_spec.py yet: ${trialParameters.NAME} naming no parameter
    # (Kubernetes CEL's findAll() over every command item x 200 parameters is over the per-rule budget
    # unless command items get CRD-only length bounds), ${trialParameters.*} with the native collector
    # (needs the same bounds), a collector filter that is no regular expression or has fewer than two
    # groups (CEL cannot compile one from data), spec.trial.env names given again in the pod
    # template, and the pod template checks listed in tests/unit/test_podtemplate.py with no CRD path.
}

#: Jobs both reject, but the CRD for another reason than the model's.
DIFFERENT_REASON: dict[str, str] = {}


def test_unit_cases_are_all_classified() -> None:
    ids = {c[0] for c in UNIT_CASES}
    assert set(MODEL_ONLY) <= ids and set(DIFFERENT_REASON) <= ids


@pytest.mark.parametrize("case", UNIT_CASES, ids=[c[0] for c in UNIT_CASES])
def test_what_the_model_rejects_the_crd_rejects_too(case: tuple) -> None:
    case_id, mutation, path, _ = case
    doc = digits_job()
    mutation(doc)
    with pytest.raises(InvalidTuningJob):
        validate_document(doc)
    problems = admission.review(doc, strict=True)  # strict: kubectl apply's default field validation
    if case_id in MODEL_ONLY:
        assert problems == [], f"{case_id} is rejected by the CRD now: drop it from MODEL_ONLY ({problems})"
        return
    assert problems, f"the model rejects {case_id} ({path}) but the CRD admits it"
    if case_id not in DIFFERENT_REASON:
        paths = [p.split(": ")[0] for p in problems]
        assert any(_related(path, p) for p in paths), f"{case_id}: no problem at or around {path}: {problems}"


def _related(a: str, b: str) -> bool:
    """One path is the other or contains it (spec.parameters contains spec.parameters[4].when.x)."""
    return a == b or any(long.startswith(short + sep) for short, long in ((a, b), (b, a)) for sep in ".[")


# ----------------------------------------------------------------------------- transition rules
#: Edits that would invalidate the study: refused on update (kubectl apply, GitOps), each naming its field.
IMMUTABLE_EDITS: dict[str, tuple[str, Any]] = {
    "range": ("spec.parameters[0].high", 0.2),
    "choices": ("spec.parameters[1].choices", [32, 64, 128]),
    "parameter-added": (
        "spec.parameters",
        [*digits_job()["spec"]["parameters"], {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5}],
    ),
    "parameter-removed": ("spec.parameters[5]", DELETE),
    "direction": ("spec.objective.direction", "minimize"),
    "metric": ("spec.objective.metric", "loss"),
    "sampler": ("spec.algorithm.sampler", "random"),
    "workers": ("spec.trial.workers", 1),
}
FIELD_OF_EDIT = {
    "range": "spec.parameters[0]",
    "choices": "spec.parameters[1]",
    "parameter-added": "spec.parameters",
    "parameter-removed": "spec.parameters",
    "direction": "spec.objective.direction",
    "metric": "spec.objective.metric",
    "sampler": "spec.algorithm.sampler",
    "workers": "spec.trial.workers",
}
#: Edits a live job takes (the driver continues or drains the job, tests/engine/test_spec_edits.py).
MUTABLE_EDITS: dict[str, tuple[str, Any]] = {
    "max-trials": ("spec.budget.maxTrials", 40),
    "parallelism": ("spec.budget.parallelism", 4),
    "max-failed": ("spec.budget.maxFailedTrials", 5),
    "timeout": ("spec.budget.timeoutSeconds", 7200),
    "retries": ("spec.trial.retries", 2),
    "pruner": ("spec.earlyStopping.pruner", "hyperband"),
    "epochs": ("spec.trial.epochs", 12),
    "seed": ("spec.algorithm.seed", 7),
}


def _stored(doc: dict[str, Any]) -> dict[str, Any]:
    stored, problems = admission.admit(doc)
    assert problems == []
    return stored


@pytest.mark.parametrize("edit", sorted(IMMUTABLE_EDITS))
def test_what_the_study_depends_on_is_refused_on_update_naming_the_field(edit: str) -> None:
    old = _stored(digits_job())
    path, value = IMMUTABLE_EDITS[edit]
    new = mutate(copy.deepcopy(old), path, value)
    assert admission.review(new) == [], "the same spec is fine for a new TuningJob"
    problems = admission.review(new, old=old)
    assert len(problems) == 1 and problems[0].startswith(FIELD_OF_EDIT[edit] + ":"), problems
    assert "cannot change on a live job" in problems[0] and "re-create" in problems[0]


@pytest.mark.parametrize("edit", sorted(MUTABLE_EDITS))
def test_budget_and_template_edits_are_admitted_on_update(edit: str) -> None:
    old = _stored(digits_job())
    path, value = MUTABLE_EDITS[edit]
    assert admission.review(mutate(copy.deepcopy(old), path, value), old=old) == []


def test_a_reordered_parameter_list_is_the_same_search_space() -> None:
    # Parameters are a list-type map keyed by name: order is not identity (Kubernetes correlates by key).
    old = _stored(digits_job())
    new = copy.deepcopy(old)
    new["spec"]["parameters"].reverse()
    assert admission.review(new, old=old) == []


def test_a_status_update_is_not_an_edit() -> None:
    old = _stored(digits_job())
    new = {**copy.deepcopy(old), "status": {"phase": "Running", "observedGeneration": 1}}
    assert admission.review(new, old=old) == []


def test_the_transition_rules_mirror_the_driver_fingerprints() -> None:
    """Each field the study fingerprints (engine.study.fingerprints) carries a transition rule;
    sampler settings are the one part CEL cannot see on the API server (the operator refuses
    that edit itself, README "Editing a live job")."""
    from openautoglm.engine.study import fingerprints

    root = _schema()
    transition = {
        path for path, node in _nodes(root) for r in node.get("x-kubernetes-validations", []) if "oldSelf" in r["rule"]
    }
    fingerprinted = set(fingerprints(validate_document(digits_job())))
    assert fingerprinted == {"spec.parameters", "spec.objective", "spec.algorithm", "spec.trial.workers"}
    assert {"spec", "spec.parameters[]", "spec.objective", "spec.algorithm", "spec.trial"} <= transition

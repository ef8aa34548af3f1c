"""The TuningJob CRD: generated from the model, structural, and admitting what the model admits.

Admission is checked with tests/k8s/harness/admission.py, which reads the committed CRD file and applies
it as the API server would (pruning, defaulting, OpenAPI validation, CEL rules via cel-python).
"""

from __future__ import annotations

import copy
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
from malformed_jobs import COMMAND, MALFORMED, MULTI, Malformed

from openautoglm import crd, podschema
from openautoglm.pruners import PRUNERS
from openautoglm.samplers import SAMPLERS
from openautoglm.spec import TuningJob
from openautoglm.validation import validate_document
from openautoglm_trial.tasks import TASKS

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
SAMPLES = sorted(p for p in (REPO / "deploy" / "samples").glob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES_VERSION = "1.33.0"


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
    # validate refuses a task the trial runtime does not have; a program of one's own is trial.command.
    assert spec["trial"]["properties"]["task"]["enum"] == list(TASKS)


def test_choices_are_a_set_of_mixed_scalars() -> None:
    """Duplicate choices are refused by the list type (a pairwise CEL rule would cost 1000 x 1000 per
    parameter). The API server accepts a set whose items have no type: only object and list items
    must be atomic (apiextensions validation); its uniqueness check compares decoded JSON values."""
    choices = _schema()["properties"]["spec"]["properties"]["parameters"]["items"]["properties"]["choices"]
    assert choices["x-kubernetes-list-type"] == "set"
    assert "type" not in choices["items"] and choices["items"]["x-kubernetes-preserve-unknown-fields"]


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
def test_enough_malformed_jobs() -> None:
    assert sum(c.crd is not None for c in MALFORMED) >= 32
    assert len({c.id for c in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize("case", MALFORMED, ids=[c.id for c in MALFORMED])
def test_malformed_job_is_refused_by_the_crd_with_its_field_path(case: Malformed) -> None:
    problems = admission.review(case.job(), strict=True)  # strict: kubectl apply's default field validation
    if case.crd is None:
        assert problems == [], f"the CRD refuses {case.id} now: give its row a crd column ({problems})"
        return
    path, fragment = case.crd
    at_path = [p for p in problems if p.startswith(f"{path}: ")]
    assert at_path, f"nothing at {path}: {problems}"
    assert any(fragment in p for p in at_path), f"{fragment!r} not in {at_path}"


def test_every_difference_between_validate_and_the_crd_has_its_reason() -> None:
    """A row both refuse names one field (or one inside the other); a row only one refuses says why.
    (tests/unit/test_spec.py checks the validate column against validate itself.)"""
    for case in MALFORMED:
        assert case.validate is not None or case.crd is not None, f"{case.id}: nobody refuses it"
        one_sided = case.validate is None or case.crd is None
        assert bool(case.reason) == one_sided, f"{case.id}: a reason is for a job only one side refuses"
        if case.validate is not None and case.crd is not None:
            assert _related(case.validate[0], case.crd[0]), f"{case.id}: {case.validate[0]} vs {case.crd[0]}"


def _related(a: str, b: str) -> bool:
    """One path is the other or contains it (spec.parameters contains spec.parameters[4].when.x); a map key
    is ``.key`` to validate and ``[key]`` to the API server."""
    a, b = (re.sub(r"\[([^\]\d][^\]]*)\]", r".\1", p) for p in (a, b))
    return a == b or any(long.startswith(short + sep) for short, long in ((a, b), (b, a)) for sep in ".[")


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
        # 1, 1.0, true and "1" are four choices to validate (repr) and to the API server (decoded JSON).
        _with(COMMAND, "spec.parameters[1].choices", ["a", 1, 1.0, True, "1"]),
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


def test_reordered_choices_pass_the_crd_and_are_refused_by_the_operator() -> None:
    # CEL compares list-type sets regardless of order (unstructuredSetList), so the parameter's
    # self == oldSelf admits the edit; Optuna's categorical distribution is ordered, and the study's
    # fingerprint with it: the operator refuses the edit (Stalled, SpecChangeRefused).
    from openautoglm.engine.study import immutable_differences

    old = _stored(digits_job())
    new = mutate(copy.deepcopy(old), "spec.parameters[1].choices", [64, 32])
    assert admission.review(new, old=old) == []
    assert immutable_differences(validate_document(old), validate_document(new)) == ["spec.parameters"]


def test_a_status_update_is_not_an_edit() -> None:
    old = _stored(digits_job())
    new = {**copy.deepcopy(old), "status": {"phase": "Running", "observedGeneration": 1}}
    assert admission.review(new, old=old) == []


def test_the_transition_rules_mirror_the_driver_fingerprints() -> None:
    """Each field the study fingerprints (engine.study.fingerprints) carries a transition rule;
    sampler settings are the one part CEL cannot see on the API server (the operator refuses
    that edit itself, docs/reference.md "Editing a live job")."""
    from openautoglm.engine.study import fingerprints

    root = _schema()
    transition = {
        path for path, node in _nodes(root) for r in node.get("x-kubernetes-validations", []) if "oldSelf" in r["rule"]
    }
    fingerprinted = set(fingerprints(validate_document(digits_job())))
    assert fingerprinted == {"spec.parameters", "spec.objective", "spec.algorithm", "spec.trial.workers"}
    assert {"spec", "spec.parameters[]", "spec.objective", "spec.algorithm", "spec.trial"} <= transition

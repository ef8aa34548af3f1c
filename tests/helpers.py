"""Builders shared by the test suites: valid TuningJob documents to mutate.

Every builder returns a fresh dict, so a test may change it freely.
"""

from __future__ import annotations

import copy
from typing import Any

#: Marks a key to delete in :func:`mutate`.
DELETE = object()

_DIGITS_SPEC: dict[str, Any] = {
    "objective": {"metric": "accuracy", "direction": "maximize"},
    "budget": {"maxTrials": 4, "parallelism": 2, "maxFailedTrials": 1, "timeoutSeconds": 600},
    "algorithm": {"sampler": "tpe", "seed": 42},
    "earlyStopping": {"pruner": "median", "settings": {"n_startup_trials": 2}},
    "parameters": [
        {"name": "lr", "type": "float", "low": 1.0e-3, "high": 0.3, "log": True},
        {"name": "batch_size", "type": "categorical", "choices": [32, 64]},
        {"name": "hidden", "type": "int", "low": 16, "high": 64, "step": 16},
        {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
        {"name": "beta1", "type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "adam"}},
        {"name": "momentum", "type": "float", "low": 0.0, "high": 0.9, "step": 0.1, "when": {"optimizer": "sgd"}},
    ],
    "trial": {
        "task": "digits",
        "epochs": 3,
        "workers": 2,
        "image": "openautoglm/trial:0.1",
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    },
    "metrics": {"source": "scrape", "port": 9090, "intervalSeconds": 1},
}


def digits_job(name: str = "digits-test", **overrides: Any) -> dict[str, Any]:
    """A small valid TuningJob (like examples/digits.yaml: 4 trials of 3 epochs, 2 workers).

    Keyword arguments replace whole sections of ``spec`` by their YAML (camelCase) name,
    e.g. ``digits_job(budget={"maxTrials": 8}, earlyStopping={"pruner": "none"})``;
    ``name`` sets ``metadata.name``.
    """
    spec = copy.deepcopy(_DIGITS_SPEC)
    spec.update(copy.deepcopy(overrides))
    return {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def _split(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for dotted in path.split("."):
        head, *indexes = dotted.split("[")
        if head:
            parts.append(head)
        parts.extend(int(i.rstrip("]")) for i in indexes)
    return parts


def mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or, with :data:`DELETE`, remove) the field at a path like ``spec.parameters[0].high``.

    Missing mappings on the way are created. Returns ``doc`` for chaining.
    """
    parts = _split(path)
    node: Any = doc
    for part in parts[:-1]:
        if isinstance(part, str) and part not in node:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


def _prometheus(query: str) -> dict[str, Any]:
    return {"source": "prometheus", "port": 9090, "prometheus": {"url": "http://prometheus:9090", "query": query}}


#: Fields a tenant sets that the shared operator acts on, each set the way an attacker would
#: (issue 21): (id, spec section, value, field path, what the refusal says). `openautoglm validate`
#: and the CRD (schema + CEL) must both refuse each with its path.
HOSTILE_FIELDS: list[tuple[str, str, Any, str, str]] = [
    # str.format on a tenant's template: 286 MiB before any network call, or an AttributeError.
    ("query-format-width", "metrics", _prometheus("x{trial:300000000}"), "metrics.prometheus.query", "placeholder"),
    ("query-attribute", "metrics", _prometheus('x{job="{job.nope}"}'), "metrics.prometheus.query", "placeholder"),
    ("query-index", "metrics", _prometheus("x{trial[0]}"), "metrics.prometheus.query", "placeholder"),
    ("query-unknown-name", "metrics", _prometheus("x{namespaces}"), "metrics.prometheus.query", "placeholder"),
    ("query-format-escape", "metrics", _prometheus('x{{job="{job}"}}'), "metrics.prometheus.query", "PromQL"),
    ("query-too-long", "metrics", _prometheus("x" * 2049), "metrics.prometheus.query", "2048"),
    # Another namespace's journal, the volume's root, the operator's /tmp.
    ("journal-other-namespace", "storage", {"journal": {"path": "../team-b/x.journal"}}, "storage.journal.path", ""),
    ("journal-absolute", "storage", {"journal": {"path": "/tmp/fill.journal"}}, "storage.journal.path", ""),
    ("journal-not-a-journal", "storage", {"journal": {"path": "x.journal.lock"}}, "storage.journal.path", ""),
    ("journal-hidden", "storage", {"journal": {"path": ".x.journal"}}, "storage.journal.path", ""),
    # A password in the spec is readable by everyone who may `get tuningjobs`.
    (
        "postgres-url-password",
        "storage",
        {"postgres": {"url": "postgresql://u:S3cret@db/optuna"}},
        "storage.postgres.url",
        "password",
    ),
    (
        "postgres-url-password-query",
        "storage",
        {"postgres": {"url": "postgresql://db:5432/optuna?user=u&password=S3cret"}},
        "storage.postgres.url",
        "password",
    ),
    (
        "secret-ref-name-path",
        "storage",
        {"postgres": {"secretRef": {"name": "../kube-system/x"}}},
        "storage.postgres.secretRef.name",
        "",
    ),
    # A pass per nanosecond, each listing the job's pods.
    ("interval-nanosecond", "metrics", {"intervalSeconds": 1e-9}, "metrics.intervalSeconds", "0.5"),
]

"""The Grafana dashboard only queries metrics that the operator or the trials export."""

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from openautoglm.k8s import telemetry
from openautoglm_trial import contract

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "openautoglm-dashboard.json"


def exported_names():
    names = set()
    metrics = [m for m in vars(telemetry).values() if isinstance(m, MetricWrapperBase)]
    assert len(metrics) >= 10
    for metric in metrics:
        for family in metric.collect():
            names |= {s.name for s in family.samples} | {family.name}
            if family.type == "histogram":
                names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
            if family.type == "counter":
                names.add(family.name + "_total")
    names |= {getattr(contract, n) for n in dir(contract) if n.endswith("_GAUGE")}
    return names


def test_every_panel_queries_an_exported_metric():
    dash = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    assert dash["panels"]
    for panel in dash["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}", "", target["expr"])  # label matchers
            expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)  # grouping labels
            used = set(re.findall(r"\b(openautoglm_[a-z_]+)", expr))
            assert used and used <= exported, (panel["title"], used - exported)

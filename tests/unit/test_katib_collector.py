"""import-katib: spec.metricsCollectorSpec as spec.metrics.collector."""

from __future__ import annotations

import pytest
from katib_experiments import mc, paths, valid

from openautoglm.katib import convert


# ============================================================================= metrics collector
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


@pytest.mark.parametrize("kind", ["Custom", "TensorFlowEvent", "None"])
def test_lossy_falls_back_to_stdout_and_says_so(kind: str) -> None:
    """Issue 22: --lossy read the metrics from stdout (the TuningJob default) without a word."""
    c = convert(mc({"kind": kind}))
    assert paths(c) == {"spec.metricsCollectorSpec.collector.kind"}
    assert "collector" not in c.job["spec"]["metrics"]
    (note,) = [n for n in c.notes if n.startswith("--lossy:")]
    assert f"collector {kind}" in note and "stdout" in note
    assert not [n for n in convert(mc({"kind": "StdOut"})).notes if n.startswith("--lossy:")]

"""``spec.metricsCollectorSpec``: how Katib reads a trial's metrics, as ``spec.metrics.collector``.

The StdOut, File, PrometheusMetric and Push collectors have the same meaning in the trial
supervisor (Katib's line format, its default file path, a pod's own /metrics, report_metrics()).
"""

from __future__ import annotations

import re
from typing import Any, Final

from openautoglm.katib.findings import Findings
from openautoglm.katib.values import Bound, integer
from openautoglm_trial.contract import DEFAULT_METRICS_PORT, DEFAULT_RENDEZVOUS_PORT

#: Katib's defaults (its constants.go).
_DEFAULT_FILE_PATH: Final = "/var/log/katib/metrics.log"
_DEFAULT_PROMETHEUS_PORT: Final = 8080
#: Collector kinds with no equivalent, and why.
_NO_EQUIVALENT: Final = {
    "TensorFlowEvent": "TensorFlow event files are not read",
    "Custom": "a custom collector container has no equivalent",
    "None": "the TuningJob needs the trial's metrics",
}


def metrics(mc: dict[str, Any], findings: Findings) -> dict[str, Any]:
    """``spec.metrics``: the collector and, if the program's /metrics port is the supervisor's, its port."""
    path = "spec.metricsCollectorSpec"
    kind = ((mc.get("collector") or {}).get("kind")) or "StdOut"
    source = mc.get("source") or {}
    out: dict[str, Any] = {}
    if kind == "StdOut":
        collector: dict[str, Any] = {"kind": "stdout", **_filter(source, path, findings)}
        if source.get("fileSystemPath"):
            findings.note("metricsCollectorSpec.source.fileSystemPath dropped: Katib's StdOut collector ignores it")
        if source.get("httpGet"):
            findings.miss(f"{path}.source.httpGet", "only for the PrometheusMetric collector")
    elif kind == "File":
        collector = _file(source, path, findings)
    elif kind == "PrometheusMetric":
        collector = _prometheus(source.get("httpGet") or {}, path, findings)
        if collector.get("port") == DEFAULT_METRICS_PORT:
            out["port"] = DEFAULT_METRICS_PORT + 1
            findings.note(
                f"your program's /metrics is on {DEFAULT_METRICS_PORT}, the trial supervisor's default metrics "
                f"port: spec.metrics.port moved to {DEFAULT_METRICS_PORT + 1}"
            )
        elif collector.get("port") == DEFAULT_RENDEZVOUS_PORT:
            findings.miss(f"{path}.source.httpGet.port", f"{collector['port']} is the Horovod rendezvous port")
    elif kind == "Push":
        collector = {"kind": "push"}
        findings.note(
            "Push collector: calls to kubeflow.katib's report_metrics() in the trial code must become "
            "openautoglm_trial.report(step, **metrics)"
        )
    else:
        findings.miss(f"{path}.collector.kind", f"{kind!r}: {_NO_EQUIVALENT.get(kind, 'unknown collector kind')}")
        findings.note(
            f"--lossy: without metricsCollectorSpec.collector {kind}, the trial's metrics are read from its "
            "stdout (the TuningJob's default collector: Katib's StdOut format, `loss=0.3` lines)"
        )
        return out
    for k in sorted(set(mc.get("collector") or {}) - {"kind"}):
        findings.miss(f"{path}.collector.{k}", "only for the Custom collector")
    out["collector"] = collector
    return out


def _file(source: dict[str, Any], path: str, findings: Findings) -> dict[str, Any]:
    fsp = source.get("fileSystemPath") or {}
    collector: dict[str, Any] = {"kind": "file"}
    if fsp.get("kind", "File") != "File":
        findings.miss(f"{path}.source.fileSystemPath.kind", f"{fsp.get('kind')!r}: the file collector reads one file")
    collector["path"] = fsp.get("path") or _DEFAULT_FILE_PATH
    fmt = fsp.get("format") or "TEXT"
    if fmt not in ("TEXT", "JSON"):
        findings.miss(f"{path}.source.fileSystemPath.format", f"must be TEXT or JSON, got {fmt!r}")
    else:
        collector["format"] = fmt.lower()
    if fmt == "JSON":
        if (source.get("filter") or {}).get("metricsFormat"):
            findings.miss(f"{path}.source.filter", "a filter does not apply to JSON files")
    else:
        collector |= _filter(source, path, findings)
    return collector


def _prometheus(http: dict[str, Any], path: str, findings: Findings) -> dict[str, Any]:
    collector: dict[str, Any] = {"kind": "prometheus"}
    port = http.get("port", _DEFAULT_PROMETHEUS_PORT)
    try:
        collector["port"] = integer(port)
        Bound(1, 65535).check(collector["port"], port)
    except ValueError:
        findings.miss(
            f"{path}.source.httpGet.port",
            f"{port!r}: the prometheus collector needs a port number (named ports are not resolved)",
        )
        collector.pop("port", None)
    collector["metricsPath"] = http.get("path") or "/metrics"
    for k in http:
        if k in ("port", "path") or k == "scheme" and str(http[k]).upper() == "HTTP":
            continue
        findings.miss(f"{path}.source.httpGet.{k}", "the prometheus collector reads plain HTTP from the pod itself")
    return collector


def _filter(source: dict[str, Any], path: str, findings: Findings) -> dict[str, Any]:
    """``{"filter": regex}`` from ``source.filter.metricsFormat``, or {}: one regex with (name, value) groups."""
    formats = (source.get("filter") or {}).get("metricsFormat") or []
    if not formats:
        return {}
    fpath = f"{path}.source.filter.metricsFormat"
    if len(formats) > 1:
        findings.miss(
            fpath,
            f"{len(formats)} formats: the collector takes one regex (joining them would "
            "renumber the name and value groups)",
        )
        return {}
    regex = str(formats[0])
    try:
        groups = re.compile(regex).groups
    except re.error as err:
        findings.miss(f"{fpath}[0]", f"not a Python regular expression: {err}")
        return {}
    if groups < 2:
        findings.miss(f"{fpath}[0]", "needs two groups: the metric name and its value")
        return {}
    return {"filter": regex}

"""Every Grafana panel, proven with data: a real Prometheus (Debian's) scrapes the real operator and
the trial pods of a real job in the emulated cluster, and each panel's PromQL, with the
dashboard's variables filled in, returns series; the parameter panels return what the study holds.

Prometheus finds its targets by file-based service discovery, written by the harness
(tests/k8s/harness/prometheus_server.py) as the Kubernetes service discovery of deploy/ would find
them.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from typing import Any

import pytest
from prometheus_server import PROMETHEUS, Prometheus
from test_operator import NS, ROOT, Operator, apply, digits_job, job_status, study_trials

DASHBOARD = ROOT / "deploy" / "grafana" / "openautoglm-dashboard.json"
JOB = "digits-grafana"

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (scripts/install-services.sh)")


def substitute(expr: str, *, seconds: float, params: list[str]) -> str:
    """The dashboard's variables as Grafana fills them for this job: one namespace, one job, and
    the parameter variable at All, which Grafana expands to its values as a regex alternation."""
    values = {
        "namespace": NS,
        "job": JOB,
        "param": "(" + "|".join(re.escape(p) for p in params) + ")",
        "__range": f"{math.ceil(seconds)}s",
        "__rate_interval": "4s",  # Grafana: max(4 x scrape interval, step + scrape interval)
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def _has_numbers(result: list[dict[str, Any]]) -> bool:
    """Some sample is a number (histogram_quantile over no increase gives NaN series)."""
    samples = [v for s in result for v in (s.get("values") or [s["value"]])]
    return any(math.isfinite(float(v[1])) for v in samples)


def test_every_dashboard_panel_returns_data_from_a_real_prometheus(cluster, tmp_path):
    operator = Operator(cluster, tmp_path)
    operator.start()
    prometheus = Prometheus(tmp_path, operator.metrics_port)
    done = threading.Event()

    def discover() -> None:  # the Kubernetes service discovery's part: running pods come and go
        while not done.is_set():
            prometheus.trial_targets([p for p in cluster.pods(NS) if (p.get("status") or {}).get("phase") == "Running"])
            done.wait(0.2)

    finder = threading.Thread(target=discover, daemon=True)
    try:
        prometheus.wait_ready()
        finder.start()
        start = time.time()
        apply(cluster, digits_job(JOB, max_trials=12), tmp_path)
        # A second job whose storage Secret does not exist: the operator's reads of it fail (404),
        # which the API-errors panel must show.
        broken = digits_job("grafana-no-secret", max_trials=2)
        broken["spec"]["storage"] = {"postgres": {"secretRef": {"name": "missing", "key": "url"}}}
        apply(cluster, broken, tmp_path)
        cluster.wait_for(
            lambda: job_status(cluster, JOB).get("phase") in ("Succeeded", "Failed"), 600, "the job to finish"
        )
        assert job_status(cluster, JOB)["phase"] == "Succeeded", job_status(cluster, JOB)
        time.sleep(2.0)  # two scrapes after the last pass
        end = time.time()

        params = [
            v
            for v in prometheus.query_labels("param", f'openautoglm_trial_param{{job="{JOB}"}}', start, end)
            if v != "__name__"
        ]
        assert {"lr", "dropout", "hidden"} <= set(params), params
        series: dict[str, int] = {}
        dashboard = json.loads(DASHBOARD.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = substitute(target["expr"], seconds=end - start, params=params)
                if expr.endswith(" or vector(0)"):  # 0 when there is nothing: prove the series itself
                    expr = expr.removesuffix(" or vector(0)")
                if target.get("instant"):  # as Grafana runs it: at the end of the range
                    result = prometheus.query("query", query=expr, time=end)
                else:
                    result = prometheus.query("query_range", query=expr, start=start, end=end, step="1s")
                series[f"{panel['title']} [{target['refId']}]"] = len(result)
                assert result and _has_numbers(result), f"panel {panel['title']!r} returned no data for {expr}"
        print("\nseries per panel query:\n" + json.dumps(series, indent=1, ensure_ascii=False))

        # The parameter panels hold what the study holds, for its ten most recent trials.
        trials = {t.number: t for t in study_trials(operator, JOB)}
        assert len(trials) == 12
        recent = sorted(trials)[-10:]
        params = prometheus.query("query", query=f'openautoglm_trial_param{{job="{JOB}"}}', time=end)
        shown: dict[tuple[int, str], float] = {
            (int(s["metric"]["trial"]), s["metric"]["param"]): float(s["value"][1]) for s in params
        }
        assert {n for n, _ in shown} == set(recent)
        for number in recent:
            held = trials[number].user_attrs.get("params") or trials[number].params
            for name, value in held.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert shown[(number, name)] == pytest.approx(value), (number, name)
        infos = prometheus.query("query", query=f'openautoglm_trial_param_info{{job="{JOB}"}}', time=end)
        optimizers = {
            (int(s["metric"]["trial"]), s["metric"]["value"]) for s in infos if s["metric"]["param"] == "optimizer"
        }
        assert optimizers == {
            (n, (trials[n].user_attrs.get("params") or trials[n].params)["optimizer"]) for n in recent
        }
        values = prometheus.query("query", query=f'openautoglm_trial_value{{job="{JOB}"}}', time=end)
        completed = {n for n in recent if trials[n].state.name == "COMPLETE"}
        assert {int(s["metric"]["trial"]) for s in values} == completed
        for s in values:
            assert float(s["value"][1]) == pytest.approx(trials[int(s["metric"]["trial"])].value)
        # The histograms count every finished trial once, the pruned ones at their epoch.
        [finished] = prometheus.query(
            "query", query=f'sum(openautoglm_trial_duration_seconds_count{{job="{JOB}"}})', time=end
        )
        assert float(finished["value"][1]) == 12
        pruned = [t for t in trials.values() if t.state.name == "PRUNED"]
        assert pruned, "the job pruned nothing: the pruned-at-epoch panel proves nothing"
        [count] = prometheus.query("query", query=f'openautoglm_trial_pruned_epoch_count{{job="{JOB}"}}', time=end)
        assert float(count["value"][1]) == len(pruned)
    finally:
        done.set()
        operator.stop()
        prometheus.stop()

"""metrics.source: prometheus — intermediate values read by PromQL from a real Prometheus."""

import pytest
from conftest import toy_job
from optuna.trial import TrialState

from openautoglm.config import Settings
from openautoglm.engine.metrics import PrometheusSource
from openautoglm.engine.trials import RUNNING, TrialObservation, WorkerObservation
from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document
from openautoglm_trial import contract

FAST = Settings(workdir=None, storage=None, local_tick_seconds=0.2, elapsed_save_seconds=1, log_level="WARNING")


#: A template as a user writes it: one metric asked by name ({metric}), every label matched.
METRIC_TEMPLATE = (
    'max(openautoglm_trial_metric{namespace="{namespace}",openautoglm_job="{job}",'
    'openautoglm_trial="{trial}",metric="{metric}"})'
)


@pytest.mark.parametrize("query", [None, METRIC_TEMPLATE], ids=["default-query", "metric-template"])
def test_pruning_from_prometheus_queries(tmp_path, prometheus_server, monkeypatch, query):
    name, port, trials = "promjob", 19191, 4
    # Static targets standing in for the Kubernetes service discovery of deploy/prometheus-scrape:
    # the same labels, on the addresses the local backend gives each trial's rank 0.
    targets = [
        {
            "targets": [f"{contract.worker_address(name, n, 0)}:{port}"],
            # A local job has no namespace: Prometheus sees it as "default", as the default query asks.
            "labels": {"namespace": "default", "openautoglm_job": name, "openautoglm_trial": str(n)},
        }
        for n in range(trials)
    ]
    url = prometheus_server(targets)
    doc = toy_job(
        name,
        max_trials=trials,
        parallelism=1,
        epochs=8,
        pruner="median",
        pruner_settings={"n_startup_trials": 1, "n_warmup_steps": 2},
        parameters=[
            {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
            {"name": "epoch_seconds", "type": "fixed", "value": 1.2},
        ],
        warm_start=[{"x": 0.3}, {"x": 1.0}, {"x": 0.3}, {"x": 1.0}],
    )
    doc["spec"]["metrics"] = {
        "source": "prometheus",
        "port": port,
        "intervalSeconds": 0.5,
        "prometheus": {"url": url} if query is None else {"query": query},
        "collector": {"kind": "native"},
    }
    if query is not None:  # no URL in the job: the engine's own Prometheus (OPENAUTOGLM_PROMETHEUS_URL)
        monkeypatch.setenv("OPENAUTOGLM_PROMETHEUS_URL", url)
    job = validate_document(doc)

    seen = []
    source = PrometheusSource(job)

    def watch(outcome):
        # read trial 1 through Prometheus exactly as the engine does, while it runs
        obs = TrialObservation(1, [WorkerObservation(0, RUNNING)], 1)
        reading = source.read(obs)
        if reading is not None:
            seen.append(reading)

    result = run_local(job, workdir=tmp_path / "w", settings=FAST, on_outcome=watch)
    states = [t.state for t in result.study.get_trials()]
    assert states[0] == TrialState.COMPLETE
    assert TrialState.PRUNED in states[1:], [
        (t.number, t.state, t.intermediate_values) for t in result.study.get_trials()
    ]
    pruned = next(t for t in result.study.get_trials() if t.state == TrialState.PRUNED)
    assert "pruned by median" in pruned.user_attrs["stop_reason"] and max(pruned.intermediate_values) < 8
    assert seen and all("score" in r.values and r.problem is None for r in seen)

"""metrics.source: prometheus — intermediate values read by PromQL from a real Prometheus."""

from conftest import toy_job
from optuna.trial import TrialState

from openautoglm.engine.metrics import PrometheusSource
from openautoglm.engine.trials import RUNNING, TrialObservation, WorkerObservation
from openautoglm.local.runner import run_local
from openautoglm.settings import Settings
from openautoglm.validation import validate_document
from openautoglm_trial import contract

FAST = Settings(workdir=None, storage=None, local_tick_seconds=0.2, elapsed_save_seconds=1, log_level="WARNING")


def test_pruning_from_prometheus_queries(tmp_path, prometheus_server):
    name, port, trials = "promjob", 19191, 4
    # Static targets standing in for the Kubernetes service discovery of deploy/prometheus-scrape:
    # the same labels, on the addresses the local backend gives each trial's rank 0.
    targets = [
        {
            "targets": [f"{contract.worker_address(name, n, 0)}:{port}"],
            "labels": {"openautoglm_job": name, "openautoglm_trial": str(n)},
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
        "prometheus": {"url": url},
        "collector": {"kind": "native"},
    }
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
    assert seen and all("score" in r.values for r in seen)

"""Real multi-worker trials: Horovod over Gloo on loopback, no horovodrun, no mocks."""

from __future__ import annotations

import math
import signal
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openautoglm_trial import contract

pytestmark = pytest.mark.horovod


def test_two_workers_train_on_shards_and_average_gradients(launch, tmp_path):
    trial = launch(
        2, epochs=20, params={"lr": 0.005}, extra={contract.SAVE_PARAMS_TO: str(tmp_path / "params-{rank}.npz")}
    )
    trial.poll_ready()
    codes = trial.wait()
    assert codes == [0, 0], trial.logs()
    assert sorted(trial.ready_seen) == [0, 1], "both workers must have served /readyz 200"

    first, second = trial.results()
    assert (first["rank"], second["rank"]) == (0, 1)
    for result in (first, second):
        assert result["status"] == "completed" and result["reason"] is None
        assert result["epochs"] == 20
        assert all(len(values) == 20 for values in result["history"].values())
        assert result["best"]["accuracy"] == pytest.approx(max(result["history"]["accuracy"]))
    # Evaluation is sharded and allreduced: every rank reports the very same numbers.
    assert first["metrics"] == second["metrics"]
    assert first["metrics"]["accuracy"] > 0.9

    # Different shards: same number of samples, different ones.
    assert first["info"]["samples_seen"] == second["info"]["samples_seen"] > 0
    assert first["info"]["samples_digest"] != second["info"]["samples_digest"]

    # Each rank says where its start-up went, up to its first training step.
    for result in (first, second):
        startup = result["info"]["startup_seconds"]
        phases = ["interpreter", "imports", "data", "rendezvous", "model", "first_step"]
        assert list(startup) == [*phases, "total"] and all(startup[p] >= 0 for p in phases)
        assert startup["total"] == pytest.approx(sum(startup[p] for p in phases), abs=1e-3)
        assert 0 < startup["total"] < result["seconds"]

    # Averaged gradients keep the replicas identical although their data differed.
    params = [np.load(tmp_path / f"params-{rank}.npz") for rank in (0, 1)]
    np.testing.assert_array_equal(params[0]["initial"], params[1]["initial"])
    np.testing.assert_array_equal(params[0]["final"], params[1]["final"])
    assert not np.allclose(params[0]["initial"], params[0]["final"])


def test_diverging_learning_rate_stops_every_rank(launch):
    # Rank 0 (the rendezvous host) starts 4 s late, as a pod may: on its own, Horovod's HTTP
    # store aborts rank 1 after ~3 s of refused connections; the runtime must wait instead.
    trial = launch(2, rank0_delay=4.0, epochs=5, params={"optimizer": "sgd", "lr": 1e6})
    assert trial.wait() == [0, 0], trial.logs()
    assert "waiting for the rendezvous server" in trial.workers[1].log()
    first, second = trial.results()
    for result in (first, second):
        assert result["status"] == "stopped"
        assert result["reason"].startswith("diverged: ")
        assert ("gradient norm" in result["reason"]) or ("loss is" in result["reason"])
    # The decision is taken on allreduced values: same step, same words, on both ranks.
    assert first["reason"] == second["reason"]
    assert "NaN" not in trial.workers[0].termination_log.read_text()


def test_metrics_during_training_then_sigterm(launch):
    trial = launch(2, epochs=10_000, params={"batch_size": 16})
    deadline = time.monotonic() + 60
    families = {}
    while time.monotonic() < deadline:
        status, body = trial.workers[1].get("/metrics")
        if status == 200 and f'{contract.METRIC_GAUGE}{{metric="accuracy"}}' in body:
            families = {f.name: f for f in text_string_to_metric_families(body)}
            break
        assert all(w.process.poll() is None for w in trial.workers), trial.logs()
        time.sleep(0.1)
    assert families, f"no accuracy on /metrics within 60s\n{trial.logs()}"
    samples = {s.labels.get("metric"): s.value for s in families[contract.METRIC_GAUGE].samples}
    assert {"accuracy", "loss", "train_loss"} <= set(samples)
    assert 0.0 <= samples["accuracy"] <= 1.0
    assert families[contract.EPOCH_GAUGE].samples[0].value >= 1
    for gauge in (contract.STEP_GAUGE, contract.LR_GAUGE, contract.GRAD_NORM_GAUGE, contract.LOSS_GAUGE):
        assert math.isfinite(families[gauge].samples[0].value)
    assert trial.workers[0].get("/healthz")[0] == 200
    assert trial.workers[0].get("/readyz")[0] == 200

    # What Kubernetes does to a pruned trial: SIGTERM to every pod.
    sent = time.monotonic()
    trial.signal(signal.SIGTERM)
    codes = trial.wait(timeout=10)
    assert codes == [143, 143], trial.logs()
    assert time.monotonic() - sent < 5
    for result in trial.results():
        assert result["status"] == "failed" and result["reason"] == "terminated"
        assert result["epochs"] >= 1  # progress so far is kept

"""Spec edits of a live TuningJob through `kubectl apply`, as Argo CD or Flux make them, with
the real operator (the same edits locally: tests/engine/test_spec_edits.py)."""

from __future__ import annotations

import copy
import sys

import yaml
from optuna.trial import TrialState
from test_operator import (  # noqa: F401
    NS,
    TOY,
    apply,
    digits_job,
    finished,
    job_status,
    operator,  # noqa: F401  (fixtures come from conftest and test_operator)
    study_trials,
    trial_pods,
)


def _generation(cluster, name: str) -> int:
    return (cluster.get("openautoglm.io/v1alpha1/tuningjobs", NS, name) or {})["metadata"]["generation"]


def _wait_terminal(cluster, name: str, generation: int, timeout: float = 400) -> dict:
    """The first status that is terminal for ``generation``. One read per check: reading the phase
    and the generation separately could pair the old generation's Failed with the new one."""
    seen: dict = {}

    def finished() -> bool:
        seen.update(status=job_status(cluster, name))
        return seen["status"].get("phase") in ("Succeeded", "Failed") and (
            seen["status"].get("observedGeneration") == generation
        )

    cluster.wait_for(finished, timeout, f"{name} to finish generation {generation}")
    return seen["status"]


def test_digits_max_trials_raised_runs_two_more_and_changed_range_is_refused(cluster, operator, tmp_path):  # noqa: F811
    doc = digits_job("digits-edit", max_trials=2)
    doc["spec"]["warmStart"] = doc["spec"]["warmStart"][:1]
    doc["spec"]["trial"]["epochs"] = 3
    apply(cluster, doc, tmp_path)
    status = _wait_terminal(cluster, "digits-edit", 1)
    assert status["phase"] == "Succeeded" and status["trials"]["finished"] == 2, status
    before = {t.number: (t.params, t.value, t.state) for t in finished(operator, "digits-edit")}

    doc["spec"]["budget"]["maxTrials"] = 4
    apply(cluster, doc, tmp_path)
    assert _generation(cluster, "digits-edit") == 2
    # What a GitOps pipeline waits on. The status still says Succeeded for generation 1 at this
    # point: kubectl compares the condition's observedGeneration with the new generation.
    waited = cluster.kubectl(
        "wait", "--for=condition=Succeeded", "tj/digits-edit", "-n", NS, "--timeout=400s", timeout=420
    )
    assert "condition met" in waited.stdout, waited
    status = job_status(cluster, "digits-edit")
    assert status["observedGeneration"] == 2, status
    assert status["phase"] == "Succeeded" and status["reason"] == "MaxTrialsReached", status
    assert status["trials"]["finished"] == 4 and status["progress"] == "4/4"
    trials = study_trials(operator, "digits-edit")
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # exactly 2 more, no duplicate
    assert {t.number: (t.params, t.value, t.state) for t in trials if t.number < 2} == before
    ready = {c["type"]: c for c in status["conditions"]}
    assert all(c["observedGeneration"] == 2 for c in ready.values())
    cluster.wait_for(lambda: not trial_pods(cluster, "digits-edit"), 60, "the trial pods to be released")

    changed = copy.deepcopy(doc)
    changed["spec"]["parameters"][0]["high"] = changed["spec"]["parameters"][0]["high"] / 2
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    refused = cluster.kubectl("apply", "-f", str(path), check=False)
    assert refused.returncode != 0
    assert "spec.parameters" in refused.stderr and "cannot change on a live job" in refused.stderr, refused.stderr
    assert _generation(cluster, "digits-edit") == 2  # nothing was stored

    # The other fields the study depends on are refused the same way, each naming its field.
    for field, edit in (
        ("spec.objective.direction", lambda s: s["objective"].update(direction="minimize")),
        ("spec.algorithm.sampler", lambda s: s["algorithm"].update(sampler="random")),
        ("spec.trial.workers", lambda s: s["trial"].update(workers=1)),
    ):
        changed = copy.deepcopy(doc)
        edit(changed["spec"])
        path.write_text(yaml.safe_dump(changed))
        refused = cluster.kubectl("apply", "-f", str(path), check=False)
        assert refused.returncode != 0 and field in refused.stderr, (field, refused.stderr)
    assert _generation(cluster, "digits-edit") == 2


def test_failed_job_continues_when_max_failed_and_parallelism_are_raised(cluster, operator, tmp_path):  # noqa: F811
    doc = digits_job("toy-edit", max_trials=6)
    spec = doc["spec"]
    spec.pop("warmStart")
    spec["budget"] = {"maxTrials": 6, "parallelism": 1, "maxFailedTrials": 0}
    spec["trial"] = {"command": [sys.executable, TOY], "epochs": 2, "workers": 1}
    spec["metrics"]["collector"] = {"kind": "native"}
    spec["parameters"] = [
        {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
        {"name": "mode", "type": "categorical", "choices": ["fail"]},
    ]
    spec["objective"] = {"metric": "score", "direction": "maximize"}
    spec["algorithm"] = {"sampler": "random", "seed": 1}
    spec["earlyStopping"] = {"pruner": "none"}
    apply(cluster, doc, tmp_path)
    status = _wait_terminal(cluster, "toy-edit", 1, 120)
    assert status["phase"] == "Failed" and status["reason"] == "MaxFailedTrialsReached", status
    assert status["trials"]["finished"] == 1

    spec["budget"]["maxFailedTrials"] = 10
    spec["budget"]["parallelism"] = 3
    apply(cluster, doc, tmp_path)
    status = _wait_terminal(cluster, "toy-edit", 2, 180)
    # It continued: every trial of the budget ran (and failed, as this program does).
    assert status["phase"] == "Failed" and status["reason"] == "NoTrialCompleted", status
    assert status["observedGeneration"] == 2 and status["trials"]["failed"] == 6
    trials = study_trials(operator, "toy-edit")
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.FAIL for t in trials)
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials if t.number > 0)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "parallelism 3 ran trials side by side"

"""A pod, Service or NetworkPolicy is adopted, trusted or deleted only if the TuningJob's uid owns
it: KubernetesBackend over an in-memory API (the wrapper's methods, with the API server's create,
precondition and 404 answers), and the engine's reconcile over it (a refused launch fails the run,
trial.retries runs it again under other names)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest
from helpers import digits_job

from openautoglm import config
from openautoglm.engine.driver import Driver
from openautoglm.engine.trials import LaunchRefused
from openautoglm.k8s import builders
from openautoglm.k8s.backend import KubernetesBackend, observe_pod
from openautoglm.validation import validate_document

NS = "ml"
UID = "job-uid-1"
BODY = {
    "apiVersion": "openautoglm.io/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "digits-test", "namespace": NS, "uid": UID},
}
STRANGER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "mine", "uid": "someone-else"}


class FakeApi:
    """The k8s/api.py methods the backend calls, on a dict store; every delete must name a uid."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.deleted: list[tuple[str, str, str]] = []

    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["uid"] = str(uuid.uuid4())
        self.store[(kind, obj["metadata"]["name"])] = obj
        return obj

    def _ensure(self, kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
        return None if (kind, body["metadata"]["name"]) in self.store else self.put(kind, body)

    def _delete(self, kind: str, name: str, uid: str) -> None:
        obj = self.store.get((kind, name))
        if obj is not None and obj["metadata"]["uid"] == uid:  # the precondition
            del self.store[(kind, name)]
            self.deleted.append((kind, name, uid))

    def _list(self, kind: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [
            json.loads(json.dumps(o))
            for (k, _), o in self.store.items()
            if k == kind and all((o["metadata"].get("labels") or {}).get(a) == b for a, b in labels.items())
        ]

    def ensure_pod(self, body):
        return self._ensure("Pod", body)

    def ensure_service(self, body):
        return self._ensure("Service", body)

    def ensure_network_policy(self, body):
        return self._ensure("NetworkPolicy", body)

    def read_pod(self, namespace, name):
        return self.store.get(("Pod", name))

    def read_service(self, namespace, name):
        return self.store.get(("Service", name))

    def read_network_policy(self, namespace, name):
        return self.store.get(("NetworkPolicy", name))

    def delete_pod(self, namespace, name, uid, grace_seconds=None):
        self._delete("Pod", name, uid)

    def delete_service(self, namespace, name, uid):
        self._delete("Service", name, uid)

    def delete_network_policy(self, namespace, name, uid):
        self._delete("NetworkPolicy", name, uid)

    def list_pods(self, namespace, labels):
        return self._list("Pod", labels)

    def list_services(self, namespace, labels):
        return self._list("Service", labels)

    def list_network_policies(self, namespace, labels):
        return self._list("NetworkPolicy", labels)

    def names(self, kind: str) -> set[str]:
        return {n for k, n in self.store if k == kind}


def _job(**trial: Any):
    doc = digits_job()
    doc["spec"]["trial"].update(trial)
    doc["spec"]["budget"] = {"maxTrials": 2, "parallelism": 2, "maxFailedTrials": 2}
    return validate_document(doc)


def _backend(api: FakeApi, job=None, **settings: Any) -> KubernetesBackend:
    cfg = dataclasses.replace(config.Settings(), **settings)
    return KubernetesBackend(job or _job(), BODY, api, NS, cfg)


def _look_alike(api: FakeApi, name: str, number: int, rank: int = 0, owner: dict | None = None) -> dict:
    """A pod with the job's name and labels, not owned by it, that says it completed."""
    pod = builders.build_worker_pod(_job(), BODY, number, rank, {"lr": 0.1}, NS)
    pod["metadata"]["name"] = name
    pod["metadata"]["ownerReferences"] = [owner] if owner else []
    pod["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [
            {
                "name": builders.CONTAINER,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "message": json.dumps({"status": "completed", "metrics": {"accuracy": 1.0}}),
                    }
                },
            }
        ],
    }
    return api.put("Pod", pod)


def test_a_look_alike_pod_is_ignored_reported_once_and_never_deleted():
    api = FakeApi()
    backend = _backend(api)
    backend.launch(0, {"lr": 0.1})
    forged = _look_alike(api, "digits-test-t5-w0", 5, owner=STRANGER)
    _look_alike(api, "digits-test-t6-w0", 6)
    seen = backend.observe()
    assert set(seen) == {0}, "only the job's own trial"
    notices = backend.take_notices()
    assert [r for r, _ in notices] == ["LookAlikePod", "LookAlikePod"]
    assert "digits-test-t5-w0" in notices[0][1] and "ConfigMap/mine" in notices[0][1]
    assert "owner: none" in notices[1][1]
    backend.observe()
    assert backend.take_notices() == [], "each look-alike is reported once"
    for number in (5, 6, 0):
        backend.release(number)
    backend.delete_all()
    assert api.names("Pod") == {"digits-test-t5-w0", "digits-test-t6-w0"}
    assert api.store[("Pod", "digits-test-t5-w0")]["metadata"]["uid"] == forged["metadata"]["uid"]
    assert api.names("Service") == api.names("NetworkPolicy") == set()


def test_launch_creates_the_policies_before_the_pods_and_adopts_its_own():
    api = FakeApi()
    backend = _backend(api)
    backend.launch(0, {"lr": 0.1})
    assert api.names("NetworkPolicy") == {"digits-test-trials", "digits-test-t0-peers"}
    order = [k for k, _ in api.store]
    assert order.index("NetworkPolicy") < order.index("Pod") and order.index("Service") < order.index("Pod")
    before = {k: o["metadata"]["uid"] for k, o in api.store.items()}
    # a restarted operator launches the same run again: everything is found, owned, adopted
    _backend(api).launch(0, {"lr": 0.1})
    assert {k: o["metadata"]["uid"] for k, o in api.store.items()} == before
    off = FakeApi()
    _backend(off, trial_network_policy=False).launch(0, {"lr": 0.1})
    assert off.names("NetworkPolicy") == set()


@pytest.mark.parametrize(
    ("kind", "name"),
    [("Pod", "digits-test-t0-w1"), ("Service", "digits-test-t0"), ("NetworkPolicy", "digits-test-t0-peers")],
)
def test_a_name_held_by_someone_elses_object_refuses_the_launch(kind, name):
    api = FakeApi()
    squatter = api.put(kind, {"metadata": {"name": name, "labels": {builders.LABEL_JOB: "digits-test"}}})
    with pytest.raises(LaunchRefused, match=f"{kind} named {name} .* not owned by this TuningJob"):
        _backend(api).launch(0, {"lr": 0.1})
    assert api.store[(kind, name)] == squatter, "left as it was"
    backend = _backend(api)
    backend.observe()
    backend.release(0)
    backend.delete_all()
    assert api.store[(kind, name)] == squatter, "and never deleted"


def test_observing_a_pod_with_malformed_labels_does_not_raise():
    pod = builders.build_worker_pod(_job(), BODY, 1, 0, {"lr": 0.1}, NS)
    for value in ("x", "", "²", "9" * 40, None):
        pod["metadata"]["labels"][builders.LABEL_RANK] = value
        pod["metadata"]["labels"][builders.LABEL_ATTEMPT] = value
        w = observe_pod(pod, 9090)
        assert (w.rank, w.attempt) == (0, 0)
    api = FakeApi()
    own = api.put("Pod", pod)
    own["metadata"]["labels"][builders.LABEL_TRIAL] = "x"
    api.store[("Pod", own["metadata"]["name"])] = own
    assert _backend(api).observe() == {}


# ----------------------------------------------------------------------------- the engine
def _drive(tmp_path, api: FakeApi, retries: int):
    job = _job(workers=1, retries=retries)
    driver = Driver.open(job, str(tmp_path / "study.journal"), _backend(api, job), generation=1)
    return driver


def test_a_refused_new_trial_fails_with_the_reason(tmp_path):
    api = FakeApi()
    _look_alike(api, "digits-test-t0-w0", 0, owner=STRANGER)
    driver = _drive(tmp_path, api, retries=0)
    step = driver.step()
    failed = [e for e in step.outcome.events if e.reason == "TrialFailed"]
    assert len(failed) == 1 and "digits-test-t0-w0" in failed[0].message and "not owned" in failed[0].message
    trials = driver.study.get_trials(deepcopy=False)
    assert trials[0].state.name == "FAIL" and trials[1].state.name == "RUNNING"
    assert "digits-test-t1-w0" in api.names("Pod")
    assert ("Pod", "digits-test-t0-w0") in api.store, "the look-alike is not deleted"
    assert api.names("NetworkPolicy") == {"digits-test-trials", "digits-test-t1-peers"}, "trial 0's released"


def test_a_refused_run_is_retried_under_the_next_runs_names(tmp_path):
    api = FakeApi()
    _look_alike(api, "digits-test-t0-w0", 0, owner=STRANGER)
    driver = _drive(tmp_path, api, retries=1)
    step = driver.step()
    assert [e.reason for e in step.outcome.events if e.trial == 0] == ["TrialRetried"]
    assert "digits-test-t0-a1-w0" in api.names("Pod")
    assert driver.study.get_trials(deepcopy=False)[0].state.name == "RUNNING"

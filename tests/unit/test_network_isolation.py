"""Trial NetworkPolicies: the test evaluator (tests/netpol.py) on textbook cases, then the pure
builders judged by it — a trial's rendezvous and Gloo ports admit only pods of that trial, its
/metrics only the operator and the monitoring namespaces — and valid against the 1.33 schema."""

from __future__ import annotations

import kubernetes_validate
import pytest
from helpers import digits_job
from netpol import Pod, ingress_allowed, selects

from openautoglm.k8s import builders
from openautoglm.validation import validate_document
from openautoglm_trial import contract as c

K8S_VERSION = "1.33"
NS = "ml"
BODY = {
    "apiVersion": "openautoglm.io/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "digits-test", "namespace": NS, "uid": "0f4c-uid"},
}
OPERATOR_NS = "openautoglm-system"
OPERATOR_LABELS = {"app.kubernetes.io/name": "openautoglm-operator", "app.kubernetes.io/component": "operator"}
NAMESPACES = {NS: {}, "team-b": {}, OPERATOR_NS: {}, "monitoring": {"purpose": "monitoring"}}
GLOO_PORT = 41234  # an ephemeral port Gloo's ranks connect on


def _policy(spec: dict, namespace: str = "default", name: str = "p") -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


WEB = Pod("default", {"app": "web"}, {"http": (8080, "TCP")})
DB = Pod("default", {"app": "db"})
ELSEWHERE = Pod("other", {"app": "web"})


# ----------------------------------------------------------------------------- the evaluator
def test_a_pod_no_policy_selects_is_open_to_all():
    assert ingress_allowed([], {}, ELSEWHERE, DB, 5432)
    egress_only = _policy({"podSelector": {}, "policyTypes": ["Egress"]})
    assert ingress_allowed([egress_only], {}, ELSEWHERE, DB, 5432)


def test_deny_all_and_allow_all():
    deny = _policy({"podSelector": {}, "policyTypes": ["Ingress"]})
    assert not ingress_allowed([deny], {}, WEB, DB, 5432)
    assert ingress_allowed([deny], {}, DB, ELSEWHERE, 80), "a policy isolates its own namespace's pods only"
    allow = _policy({"podSelector": {}, "ingress": [{}]})  # policyTypes left out: Ingress
    assert ingress_allowed([deny, allow], {}, ELSEWHERE, DB, 5432), "policies add up"


def test_pod_and_namespace_selectors_alone_and_together():
    namespaces = {"default": {}, "other": {"team": "x"}}
    pods_only = _policy(
        {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
        }
    )
    assert ingress_allowed([pods_only], namespaces, WEB, DB, 5432)
    assert not ingress_allowed([pods_only], namespaces, ELSEWHERE, DB, 5432), "podSelector alone: same namespace"
    ns_only = _policy(
        {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}]}]}
    )
    assert ingress_allowed([ns_only], namespaces, Pod("other", {}), DB, 1)
    assert not ingress_allowed([ns_only], namespaces, WEB, DB, 1)
    both = {"namespaceSelector": {"matchLabels": {"team": "x"}}, "podSelector": {"matchLabels": {"app": "api"}}}
    and_ = _policy({"podSelector": {}, "ingress": [{"from": [both]}]})
    assert ingress_allowed([and_], namespaces, Pod("other", {"app": "api"}), DB, 1)
    assert not ingress_allowed([and_], namespaces, ELSEWHERE, DB, 1), "both in one peer: AND"
    # the same two as two peers: OR
    or_ = _policy(
        {
            "podSelector": {},
            "ingress": [
                {"from": [{"namespaceSelector": both["namespaceSelector"]}, {"podSelector": both["podSelector"]}]}
            ],
        }
    )
    assert ingress_allowed([or_], namespaces, ELSEWHERE, DB, 1)
    # every namespace has its name as a label
    by_name = _policy(
        {
            "podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}]}],
        }
    )
    assert ingress_allowed([by_name], namespaces, ELSEWHERE, DB, 1) and not ingress_allowed(
        [by_name], namespaces, WEB, DB, 1
    )


def test_ports_numbers_ranges_names_and_protocols():
    rule = {
        "ports": [{"port": 5432}, {"port": 6000, "endPort": 6010}, {"port": "http"}, {"port": 53, "protocol": "UDP"}]
    }
    policy = _policy({"podSelector": {}, "ingress": [rule]})
    assert ingress_allowed([policy], {}, DB, DB, 5432)
    assert ingress_allowed([policy], {}, DB, DB, 6005) and not ingress_allowed([policy], {}, DB, DB, 6011)
    assert ingress_allowed([policy], {}, DB, WEB, 8080), "the destination names 8080 http"
    assert not ingress_allowed([policy], {}, DB, DB, 8080), "the destination names no http port"
    assert not ingress_allowed([policy], {}, DB, DB, 53) and ingress_allowed([policy], {}, DB, DB, 53, "UDP")


def test_match_expressions():
    labels = {"tier": "a", "env": "prod"}
    assert selects({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, labels)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, labels)
    assert selects({"matchExpressions": [{"key": "gone", "operator": "NotIn", "values": ["a"]}]}, labels)
    assert selects({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, labels)
    assert selects({}, labels) and selects(None, {})


# ----------------------------------------------------------------------------- the builders
def _job(workers: int = 2):
    doc = digits_job()
    doc["spec"]["trial"]["workers"] = workers
    return validate_document(doc)


def _policies(monitoring: str | None = "kubernetes.io/metadata.name=monitoring") -> list[dict]:
    j = _job()
    job_policy = builders.build_job_network_policy(
        j,
        BODY,
        NS,
        operator_namespace=OPERATOR_NS,
        operator_pods=builders.parse_label_selector("app.kubernetes.io/name=openautoglm-operator"),
        monitoring_namespaces=builders.parse_label_selector(monitoring) if monitoring else None,
    )
    return [job_policy, *(builders.build_trial_network_policy(j, BODY, n, NS) for n in (3, 4))]


def _worker(number: int, rank: int, job_name: str = "digits-test", namespace: str = NS) -> Pod:
    j = _job() if job_name == "digits-test" else validate_document(digits_job(job_name))
    body = {**BODY, "metadata": {**BODY["metadata"], "name": job_name}}
    return Pod.of(builders.build_worker_pod(j, body, number, rank, {"lr": 0.01}, namespace))


RENDEZVOUS, METRICS = c.DEFAULT_RENDEZVOUS_PORT, c.DEFAULT_METRICS_PORT


def test_the_policies_are_valid_kubernetes_owned_by_the_job_and_named_apart():
    policies = _policies()
    for p in policies:
        kubernetes_validate.validate(p, K8S_VERSION, strict=True)
        assert p["metadata"]["ownerReferences"] == [builders.owner_reference(BODY)]
        assert p["metadata"]["labels"][builders.LABEL_JOB] == "digits-test"
    names = [p["metadata"]["name"] for p in policies]
    assert names == ["digits-test-trials", "digits-test-t3-peers", "digits-test-t4-peers"]
    # a job name may be 40 characters: the longest names stay within a DNS label
    assert len(builders.trial_policy_name("j" * 40, 10**9)) <= 63 and len(builders.job_policy_name("j" * 40)) <= 63
    assert policies[1]["metadata"]["labels"][builders.LABEL_TRIAL] == "3"
    assert builders.LABEL_TRIAL not in policies[0]["metadata"]["labels"]


def test_ranks_of_one_trial_reach_each_other_on_every_port():
    policies = _policies()
    rank0, rank1 = _worker(3, 0), _worker(3, 1)
    for port in (RENDEZVOUS, GLOO_PORT, METRICS):
        assert ingress_allowed(policies, NAMESPACES, rank1, rank0, port), port
        assert ingress_allowed(policies, NAMESPACES, rank0, rank1, port), port


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda: _worker(4, 1), id="another trial of the job"),
        pytest.param(lambda: _worker(3, 1, job_name="other-job"), id="another job's pod"),
        pytest.param(
            lambda: Pod("team-b", {"openautoglm.io/job": "digits-test", "openautoglm.io/trial": "3"}),
            id="look-alike in another namespace",
        ),
        pytest.param(lambda: Pod(NS, {"app": "anything"}), id="any pod of the namespace"),
    ],
)
def test_nobody_else_reaches_a_trial(source):
    policies, rank0 = _policies(), _worker(3, 0)
    for port in (RENDEZVOUS, GLOO_PORT, METRICS):
        assert not ingress_allowed(policies, NAMESPACES, source(), rank0, port), port


def test_the_operator_and_monitoring_reach_metrics_only():
    policies, rank0 = _policies(), _worker(3, 0)
    operator = Pod(OPERATOR_NS, OPERATOR_LABELS)
    prometheus = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
    for source in (operator, prometheus):
        assert ingress_allowed(policies, NAMESPACES, source, rank0, METRICS)
        assert not ingress_allowed(policies, NAMESPACES, source, rank0, RENDEZVOUS)
        assert not ingress_allowed(policies, NAMESPACES, source, rank0, GLOO_PORT)
    # another pod of the operator's namespace is not the operator
    assert not ingress_allowed(policies, NAMESPACES, Pod(OPERATOR_NS, {"app": "x"}), rank0, METRICS)
    # operator's labels in another namespace: not the operator either
    assert not ingress_allowed(policies, NAMESPACES, Pod(NS, OPERATOR_LABELS), rank0, METRICS)
    # no monitoring selector: no monitoring rule
    assert not ingress_allowed(_policies(monitoring=None), NAMESPACES, prometheus, rank0, METRICS)
    assert ingress_allowed(_policies(monitoring=None), NAMESPACES, operator, rank0, METRICS)


def test_monitoring_selector_by_label():
    policies, rank0 = _policies(monitoring="purpose in (monitoring,observability)"), _worker(3, 0)
    assert ingress_allowed(policies, NAMESPACES, Pod("monitoring", {}), rank0, METRICS)
    assert not ingress_allowed(policies, NAMESPACES, Pod("team-b", {}), rank0, METRICS)


@pytest.mark.parametrize(
    ("text", "selector"),
    [
        ("", {}),
        ("a=b", {"matchLabels": {"a": "b"}}),
        ("a==b, c=d", {"matchLabels": {"a": "b", "c": "d"}}),
        ("a!=b", {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["b"]}]}),
        (
            "a in (x, y),b",
            {
                "matchExpressions": [
                    {"key": "a", "operator": "In", "values": ["x", "y"]},
                    {"key": "b", "operator": "Exists"},
                ]
            },
        ),
        (
            "a notin (x),!c",
            {
                "matchExpressions": [
                    {"key": "a", "operator": "NotIn", "values": ["x"]},
                    {"key": "c", "operator": "DoesNotExist"},
                ]
            },
        ),
    ],
)
def test_label_selector_text(text, selector):
    assert builders.parse_label_selector(text) == selector


@pytest.mark.parametrize("text", ["a=b=c", "a in x", "(a)", "a b"])
def test_a_malformed_label_selector_is_refused(text):
    with pytest.raises(ValueError, match="label selector"):
        builders.parse_label_selector(text)


def test_owned_by_reads_the_owners_uid_only():
    pod = {"metadata": {"ownerReferences": [builders.owner_reference(BODY)]}}
    assert builders.owned_by(pod, "0f4c-uid")
    assert not builders.owned_by(pod, "another")
    assert not builders.owned_by({"metadata": {}}, "0f4c-uid")
    assert not builders.owned_by(
        {"metadata": {"ownerReferences": [{"name": "digits-test", "kind": "TuningJob"}]}}, "0f4c-uid"
    )

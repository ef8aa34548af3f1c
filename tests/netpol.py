"""A small NetworkPolicy evaluator for tests: would this connection be let in?

Ingress only, under the semantics of the Kubernetes documentation ("Network Policies"):

- a pod is isolated for ingress iff some policy in its namespace selects it (``spec.podSelector``)
  and has ``Ingress`` in its policyTypes (left out: Ingress always, Egress if it has egress rules);
- policies add up: a connection to an isolated pod is allowed iff some rule of some such policy
  admits it: one of its ``from`` peers matches the source (none given: every source) and one of its
  ``ports`` matches the port (none given: every port);
- a peer is a ``podSelector`` (pods of the policy's namespace), a ``namespaceSelector`` (every pod
  of the matching namespaces) or both in one entry (those pods of those namespaces);
- a port is a number, a range (``endPort``) or a container port's name, resolved on the
  destination pod; the protocol defaults to TCP.

ipBlock peers are not modelled (pods are addressed by labels here): a policy with one raises.
Every namespace carries ``kubernetes.io/metadata.name`` as the API server sets it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    #: Named container ports: name -> (port number, protocol).
    ports: Mapping[str, tuple[int, str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Pod:
        """From a Pod object (its containers' named ports)."""
        ports = {
            p["name"]: (p["containerPort"], p.get("protocol", "TCP"))
            for c in obj["spec"].get("containers") or []
            for p in c.get("ports") or []
            if p.get("name")
        }
        meta = obj["metadata"]
        return cls(meta.get("namespace") or "default", dict(meta.get("labels") or {}), ports)


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against labels; the empty selector selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


def _policy_types(spec: Mapping[str, Any]) -> list[str]:
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def _peer_matches(
    peer: Mapping[str, Any], policy_ns: str, src: Pod, namespaces: Mapping[str, Mapping[str, str]]
) -> bool:
    if "ipBlock" in peer:
        raise NotImplementedError("ipBlock peers are not modelled")
    pods, nss = peer.get("podSelector"), peer.get("namespaceSelector")
    if nss is None:
        in_namespace = src.namespace == policy_ns
    else:
        in_namespace = selects(nss, namespace_labels(src.namespace, namespaces))
    return in_namespace and (pods is None or selects(pods, src.labels))


def _port_matches(entry: Mapping[str, Any], dst: Pod, port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    want = entry.get("port")
    if want is None:
        return True
    if isinstance(want, str):
        named = dst.ports.get(want)
        return named is not None and named == (port, protocol)
    end = entry.get("endPort")
    return want <= port <= end if end is not None else want == port


def namespace_labels(name: str, namespaces: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    return {**(namespaces.get(name) or {}), "kubernetes.io/metadata.name": name}


def ingress_allowed(
    policies: Iterable[Mapping[str, Any]],
    namespaces: Mapping[str, Mapping[str, str]],
    src: Pod,
    dst: Pod,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether ``src`` may open a connection to ``dst`` on ``port`` (ingress rules only: the
    source's own egress policies are not looked at). ``namespaces``: name -> labels."""
    isolating = [
        p
        for p in policies
        if (p["metadata"].get("namespace") or "default") == dst.namespace
        and selects(p["spec"].get("podSelector"), dst.labels)
        and "Ingress" in _policy_types(p["spec"])
    ]
    if not isolating:
        return True
    for policy in isolating:
        policy_ns = policy["metadata"].get("namespace") or "default"
        for rule in policy["spec"].get("ingress") or []:
            peers, ports = rule.get("from") or [], rule.get("ports") or []
            if peers and not any(_peer_matches(peer, policy_ns, src, namespaces) for peer in peers):
                continue
            if ports and not any(_port_matches(entry, dst, port, protocol) for entry in ports):
                continue
            return True
    return False

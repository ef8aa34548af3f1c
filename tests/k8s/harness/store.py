"""The emulated API server's objects: what etcd and the API server's registry do for the harness.

kmock's KubernetesEmulator keeps objects as a plain dict. kopf, kubectl and the kubernetes
client rely on more, filled in here (each a gap of kmock/_internal/k8s.py):

- `metadata.resourceVersion` is never set or bumped there (kopf then handles every change twice
  and its JSON-patch `test` of resourceVersion is meaningless): one global revision counter,
  bumped on every write, with `uid`, `creationTimestamp`, `generation` (spec changes only) and
  `generateName` as the real server does them; a no-op write changes nothing and emits nothing.
- deletion: finalizers hold an object with `deletionTimestamp` until they are empty (kmock had
  that); without finalizers an object -- a pod too -- goes at once (no graceful-termination
  phase; the kubelet then stops its process). Added: ownerReference garbage collection
  (background, cascading; `Orphan` propagation strips the references instead); namespace
  deletion deletes its contents; creating in a namespace that does not exist is a 404, as for
  real; DeleteOptions `preconditions` (uid, resourceVersion) that do not hold answer 409
  Conflict "Precondition failed: ..." as apimachinery's storage does. Every kind of the bundled
  catalogue is stored and garbage-collected alike (NetworkPolicies too; nothing enforces them:
  tests/netpol.py evaluates them).
- built-in defaults that matter to the harness: pods get `restartPolicy: Always` (so trial pods
  must say Never), `terminationGracePeriodSeconds: 30`, `terminationMessagePolicy: File` and
  phase Pending; Services a ClusterIP unless headless; names are checked (DNS-1035 for
  Services, RFC 1123 subdomains for pods and custom resources).
- CustomResourceDefinitions, created through the API (or `load_crd`), serve their resources with
  their names, short names, categories, subresources and printer columns, and are Established.
- pods: scheduling gates may only be removed on an update (the one rule of pod spec
  immutability enforced); `mutators` stand for mutating admission webhooks on every create.
- custom resources go through admission (the `admit` the HTTP front gives: defaulter and
  validation) on every create and update, status writes included.

Every change is an `Event` in a bounded history (what a watch resumes from) handed to the watch
streams and then to in-process listeners (the kubelet). All synchronous: a write is atomic within
the asyncio loop that owns the store.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import inspect
import ipaddress
import logging
import random
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

import apimachinery as am
from apitypes import ALL_VERBS, Admission, ApiError, Defaulter, Event, Obj, ResourceType, StoreKey
from patch import APPLY, apply_patch, decode_patch, updated_object

logger = logging.getLogger("k8s.emulator")

#: admission of a custom resource: (type, object, fieldValidation, the stored object on an update) -> object
Admit = Callable[[ResourceType, Obj, "str | None", "Obj | None"], Obj]

HISTORY_SIZE: Final = 50_000
DNS1123_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
GENERATE_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # what the API server draws generateName suffixes from
SERVICE_CIDR: Final = ipaddress.ip_network("10.96.0.0/16")
SYSTEM_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")
NAMESPACES: Final = ("", "namespaces")
SERVICES: Final = ("", "services")
PODS: Final = ("", "pods")
CRDS: Final = ("apiextensions.k8s.io", "customresourcedefinitions")


class ObjectStore:
    """Every object of the emulated cluster, by StoreKey, with its revisions and events.

    `catalogue` is kmock's resource catalogue (its bundled built-in kinds; kept in step with the
    CRDs declared here, as kmock renders `/` from it).
    """

    def __init__(self, catalogue: Any, admit: Admit) -> None:
        self.catalogue = catalogue
        self.admit = admit
        self.types: dict[tuple[str, str, str], ResourceType] = bundled_types(catalogue)
        self.objects: dict[StoreKey, Obj] = {}
        self.revision = 0
        self.history: collections.deque[Event] = collections.deque(maxlen=HISTORY_SIZE)
        #: the watch streams (watch.WatchHub), handed every event first
        self.subscribers: list[Callable[[Event], None]] = []
        #: in-process listeners (the kubelet), called synchronously on every event; a failure is logged
        self.listeners: list[Callable[[Event], None]] = []
        #: mutating admission of every create (after the built-in defaults, as a mutating webhook
        #: runs): fn(type, object) edits the object in place (the Kueue stand-in's pod webhook)
        self.mutators: list[Callable[[ResourceType, Obj], None]] = []
        self._orphaning: set[str] = set()
        self._gc_scheduled = False
        self._cluster_ips: set[str] = set()
        for ns in SYSTEM_NAMESPACES:
            self.create(self.types[("", "v1", "namespaces")], None, {"metadata": {"name": ns}})

    # -----------------------------------------------------------------------------------------
    # Resource types

    def declare_crd(self, crd: Obj) -> list[ResourceType]:
        """Serve the resources of a CustomResourceDefinition (apiextensions.k8s.io/v1)."""
        declared = crd_resource_types(crd)
        for rtype in declared:
            self.types[(rtype.group, rtype.version, rtype.plural)] = rtype
            self.catalogue[f"{rtype.group}/{rtype.version}/{rtype.plural}"] = {
                "kind": rtype.kind,
                "namespaced": rtype.namespaced,
                "singular": rtype.singular,
                "verbs": list(ALL_VERBS),
                "shortnames": list(rtype.short_names),
                "categories": list(rtype.categories),
                "subresources": list(rtype.subresources),
            }
        return declared

    def load_crd(self, crd: Obj) -> None:
        """Store a CRD object (as `kubectl apply -f crds/` would) and serve its resources."""
        if (*CRDS, "", crd["metadata"]["name"]) not in self.objects:
            self.create(self.types[("apiextensions.k8s.io", "v1", "customresourcedefinitions")], None, crd)

    def type_of(self, group_version_plural: str) -> ResourceType:
        """`"v1/pods"`, `"openautoglm.io/v1alpha1/tuningjobs"` -> its ResourceType."""
        group_version, _, plural = group_version_plural.rpartition("/")
        group, _, version = group_version.rpartition("/")
        try:
            return self.types[(group, version, plural)]
        except KeyError:
            raise KeyError(f"resource {group_version_plural!r} is not served") from None

    def storage_type(self, storage: tuple[str, str]) -> ResourceType:
        candidates = [t for t in self.types.values() if t.storage == storage]
        return sorted(candidates, key=lambda t: am.version_priority(t.version))[0]

    # -----------------------------------------------------------------------------------------
    # Storage primitives (synchronous: atomic within the loop)

    @staticmethod
    def key(rtype: ResourceType, namespace: str | None, name: str) -> StoreKey:
        return (rtype.group, rtype.plural, (namespace or "") if rtype.namespaced else "", name)

    @staticmethod
    def present(rtype: ResourceType, obj: Obj) -> Obj:
        return {**obj, "apiVersion": rtype.api_version, "kind": rtype.kind}

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        obj = self.objects.get(self.key(rtype, namespace, name))
        return self.present(rtype, obj) if obj is not None else None

    def list(
        self, rtype: ResourceType, namespace: str | None = None, match: Callable[[Obj], bool] = lambda obj: True
    ) -> list[Obj]:
        return [
            self.present(rtype, obj)
            for (group, plural, ns, _), obj in sorted(self.objects.items())
            if (group, plural) == rtype.storage and (namespace is None or ns == namespace) and match(obj)
        ]

    def update_as_system(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        mutate: Callable[[Obj], None],
        *,
        uid: str | None = None,
    ) -> Obj | None:
        """A write by a cluster component (the kubelet): `mutate` edits a copy in place.

        No admission and no generation bump; None if the object is gone or is another
        incarnation (different uid) of the name.
        """
        key = self.key(rtype, namespace, name)
        old = self.objects.get(key)
        if old is None or (uid is not None and old["metadata"].get("uid") != uid):
            return None
        new = copy.deepcopy(old)
        mutate(new)
        return self._commit(rtype, key, old, new)

    def _emit(self, event: Event) -> None:
        self.history.append(event)
        for subscriber in self.subscribers:
            subscriber(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not break the API
                logger.exception("listener failed on %s", event.type)

    def _commit(self, rtype: ResourceType, key: StoreKey, old: Obj | None, new: Obj, *, dry_run: bool = False) -> Obj:
        if old is not None:
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:  # a no-op write: no new revision, no event (as etcd-backed storage does)
                return old
        if dry_run:
            return new
        self.revision += 1
        new["metadata"]["resourceVersion"] = str(self.revision)
        self.objects[key] = new
        self._emit(Event(self.revision, rtype.storage, "ADDED" if old is None else "MODIFIED", new, old))
        meta = new["metadata"]
        if old is not None and meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rtype, key)  # the last finalizer is gone: the deletion completes
        return new

    def _remove(self, rtype: ResourceType, key: StoreKey) -> Obj:
        old = self.objects.pop(key)
        self.revision += 1
        final = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self.revision)}}
        self._emit(Event(self.revision, rtype.storage, "DELETED", final, old))
        uid = old["metadata"].get("uid")
        if uid in self._orphaning:
            self._orphaning.discard(uid)
            self._orphan_dependents(uid)
        self._schedule_gc()
        if rtype.storage == NAMESPACES:
            for k in [k for k in self.objects if k[2] == key[3]]:
                if k in self.objects:
                    self._delete_key(self.storage_type(k[:2]), k, "Background")
        if rtype.storage == CRDS:
            self._undeclare_crd(old)
        if rtype.storage == SERVICES:
            self._cluster_ips.discard((old.get("spec") or {}).get("clusterIP", ""))
        return final

    def _undeclare_crd(self, crd: Obj) -> None:
        storage = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        for k in [k for k in self.objects if k[:2] == storage]:
            self._remove(self.storage_type(storage), k)
        for tkey in [tk for tk, t in self.types.items() if t.storage == storage]:
            del self.types[tkey]
            del self.catalogue[f"{tkey[0]}/{tkey[1]}/{tkey[2]}"]

    # -----------------------------------------------------------------------------------------
    # Garbage collection of dependents (ownerReferences)

    def _schedule_gc(self) -> None:
        # Background propagation, as the real garbage collector does it: after the owner is gone.
        if not self._gc_scheduled:
            self._gc_scheduled = True
            asyncio.get_running_loop().call_later(0.05, self._collect_garbage)

    def _collect_garbage(self) -> None:
        self._gc_scheduled = False
        live = {obj["metadata"].get("uid") for obj in self.objects.values()}
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if (
                refs
                and not any(ref.get("uid") in live for ref in refs)
                and not obj["metadata"].get("deletionTimestamp")
            ):
                if key in self.objects:
                    logger.debug("garbage-collecting %s", key)
                    self._delete_key(self.storage_type(key[:2]), key, "Background")

    def _orphan_dependents(self, uid: str) -> None:
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == uid for ref in refs):
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid] or None
                if new["metadata"]["ownerReferences"] is None:
                    del new["metadata"]["ownerReferences"]
                self._commit(self.storage_type(key[:2]), key, obj, new)

    # -----------------------------------------------------------------------------------------
    # Verbs

    def create(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> Obj:
        obj = new_object(rtype, body)
        meta = obj["metadata"]
        if rtype.namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
            if (*NAMESPACES, "", namespace) not in self.objects:
                raise ApiError(
                    404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
                )
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError.invalid(rtype, "", ["metadata.name: Required value: name or generateName is required"])
            while True:
                name = meta["generateName"] + "".join(random.choices(GENERATE_ALPHABET, k=5))
                if self.key(rtype, namespace, name) not in self.objects:
                    meta["name"] = name
                    break
        name = meta["name"]
        check_name(rtype, name)
        key = self.key(rtype, namespace, name)
        if key in self.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{rtype.resource} "{name}" already exists',
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = am.now_rfc3339()
        meta["generation"] = 1
        if rtype.has_status:  # the status subresource: a create sets no status
            obj.pop("status", None)
        default_builtin(rtype, obj, self._allocate_cluster_ip)
        for mutate in self.mutators:
            mutate(rtype, obj)
        if rtype.custom:
            obj = self.admit(rtype, obj, field_validation, None)
        new = self._commit(rtype, key, None, obj, dry_run=dry_run)
        if rtype.storage == CRDS and not dry_run:
            self._accept_crd(key)
        return new

    def replace(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> Obj:
        key = self.key(rtype, namespace, name)
        old = self.objects.get(key)
        if old is None:
            raise ApiError.not_found(rtype, name)
        new = updated_object(rtype, name, old, body, subresource)
        if rtype.custom:
            new = self.admit(rtype, new, field_validation, old)
        elif rtype.storage == PODS:
            check_pod_update(rtype, name, old, new)
        return self._commit(rtype, key, old, new, dry_run=dry_run)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: bytes,
        content_type: str,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> Obj:
        media_type, patch = decode_patch(body, content_type)
        old = self.objects.get(self.key(rtype, namespace, name))
        if old is None:
            if media_type == APPLY and subresource is None:  # server-side apply creates
                return self.create(
                    rtype,
                    namespace,
                    {**patch, "metadata": {**(patch.get("metadata") or {}), "name": name}},
                    dry_run=dry_run,
                    field_validation=field_validation,
                )
            raise ApiError.not_found(rtype, name)
        patched = apply_patch(rtype, name, self.present(rtype, old), patch, media_type)
        return self.replace(
            rtype, namespace, name, patched, subresource, dry_run=dry_run, field_validation=field_validation
        )

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        options = options or {}
        key = self.key(rtype, namespace, name)
        old = self.objects.get(key)
        if old is None:
            raise ApiError.not_found(rtype, name)
        check_preconditions(rtype, name, old, options.get("preconditions") or {})
        if dry_run:
            return self.present(rtype, old)
        return self.present(rtype, self._delete_key(rtype, key, options.get("propagationPolicy") or "Background"))

    def _delete_key(self, rtype: ResourceType, key: StoreKey, propagation: str) -> Obj:
        old = self.objects[key]
        if propagation == "Orphan":
            self._orphaning.add(old["metadata"]["uid"])
        if old["metadata"].get("deletionTimestamp"):
            return old  # already terminating: waits for its finalizers
        if old["metadata"].get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = am.now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._commit(rtype, key, old, new)
        return self._remove(rtype, key)

    def _allocate_cluster_ip(self) -> str:
        while True:
            ip = str(SERVICE_CIDR[random.randrange(10, SERVICE_CIDR.num_addresses - 1)])
            if ip not in self._cluster_ips:
                self._cluster_ips.add(ip)
                return ip

    def _accept_crd(self, key: StoreKey) -> None:
        crd = self.objects[key]
        self.declare_crd(crd)
        self._commit(self.storage_type(key[:2]), key, crd, {**copy.deepcopy(crd), "status": crd_accepted_status(crd)})


# ---------------------------------------------------------------------------------------------
# Pure parts of the verbs


def bundled_types(catalogue: Any) -> dict[tuple[str, str, str], ResourceType]:
    """The built-in kinds of kmock's catalogue (`load_bundled()`), by (group, version, plural)."""
    types = {}
    for res in catalogue:
        info = catalogue[res]
        if res.group is None or res.version is None or res.plural is None:
            continue
        types[(res.group, res.version, res.plural)] = ResourceType(
            group=res.group,
            version=res.version,
            plural=res.plural,
            kind=info.kind or res.plural.capitalize(),
            namespaced=bool(info.namespaced),
            singular=info.singular or "",
            short_names=tuple(sorted(info.shortnames)),
            categories=tuple(sorted(info.categories)),
            verbs=tuple(sorted(info.verbs)) or ALL_VERBS,
            subresources=tuple(sorted(info.subresources)),
        )
    return types


def crd_resource_types(crd: Obj) -> list[ResourceType]:
    """The ResourceType of each served version of a CustomResourceDefinition."""
    spec = crd["spec"]
    names = spec["names"]
    return [
        ResourceType(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=tuple(sorted(version.get("subresources") or {})),
            printer_columns=list(version.get("additionalPrinterColumns") or []),
            custom=True,
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
        )
        for version in spec.get("versions") or []
        if version.get("served", True)
    ]


def crd_accepted_status(crd: Obj) -> Obj:
    """The status apiextensions-apiserver gives a CRD whose names it accepted: Established."""
    now = am.now_rfc3339()
    return {
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": [v["name"] for v in crd["spec"].get("versions") or [] if v.get("storage")],
        "conditions": [
            {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now}
            for t, r, m in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ],
    }


def new_object(rtype: ResourceType, body: Any) -> Obj:
    """A copy of a create's body, with its type's apiVersion and kind; 400 if it is not one of them."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body of the request was not an object")
    if body.get("kind") and body["kind"] != rtype.kind:
        raise ApiError(
            400,
            "BadRequest",
            f"the kind of the object ({body['kind']}) does not match the resource {rtype.plural} ({rtype.kind})",
        )
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        # The API server decodes metadata into ObjectMeta before anything else: a list or a string
        # there is a malformed request (400), not an invalid object (422).
        raise ApiError(400, "BadRequest", "Object 'metadata' is not a map")
    obj = copy.deepcopy(body)
    obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
    if obj.get("metadata") is None:
        obj["metadata"] = {}
    return obj


def check_preconditions(rtype: ResourceType, name: str, old: Obj, preconditions: Mapping[str, Any]) -> None:
    """DeleteOptions' preconditions against the stored object; 409 as apimachinery's storage answers."""
    for field, have in (
        ("uid", old["metadata"].get("uid")),
        ("resourceVersion", old["metadata"]["resourceVersion"]),
    ):
        if preconditions.get(field) and preconditions[field] != have:
            what = "UID" if field == "uid" else "ResourceVersion"
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rtype.resource} "{name}": Precondition failed: '
                f"{what} in precondition: {preconditions[field]}, {what} in object meta: {have}",
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )


def check_name(rtype: ResourceType, name: str) -> None:
    if rtype.storage == SERVICES:
        ok, what = len(name) <= 63 and DNS1035_LABEL.match(name), "a DNS-1035 label"
    elif rtype.custom or rtype.storage in {("", p) for p in ("pods", "namespaces", "configmaps", "secrets")}:
        ok, what = len(name) <= 253 and DNS1123_SUBDOMAIN.match(name), "a lowercase RFC 1123 subdomain"
    else:
        return
    if not ok:
        raise ApiError.invalid(rtype, name, [f'metadata.name: Invalid value: "{name}": must be {what}'])


def admit(
    rtype: ResourceType,
    obj: Obj,
    admission: Admission | None,
    defaulter: Defaulter | None,
    field_validation: str | None = None,
    old: Obj | None = None,
) -> Obj:
    """A custom resource defaulted and validated as the API server does; 422 naming every message."""
    if defaulter is not None:
        defaulted = defaulter(copy.deepcopy(obj))
        obj = defaulted if isinstance(defaulted, dict) else obj
    if admission is not None:
        kwargs = {}
        # kubectl sends fieldValidation=Strict (unknown fields are errors); kopf and the
        # kubernetes client send nothing (the server's Warn: unknown fields pruned silently).
        if "strict" in inspect.signature(admission).parameters:
            kwargs["strict"] = field_validation == "Strict"
        if "old" in inspect.signature(admission).parameters and old is not None:
            kwargs["old"] = copy.deepcopy(old)  # an update: transition rules see oldSelf
        messages = [str(m) for m in admission(copy.deepcopy(obj), **kwargs) or []]
        if messages:
            raise ApiError.invalid(rtype, obj["metadata"].get("name", ""), messages)
    return obj


def check_pod_update(rtype: ResourceType, name: str, old: Obj, new: Obj) -> None:
    """The one rule of pod spec immutability the harness enforces (nothing else of a pod's spec
    is checked on update): scheduling gates may only be removed, as ValidatePodUpdate says."""
    before = {g.get("name") for g in (old.get("spec") or {}).get("schedulingGates") or []}
    added = [
        f"spec.schedulingGates[{i}].name: Forbidden: only deletion is allowed, but found new scheduling gate "
        f"'{gate.get('name')}'"
        for i, gate in enumerate((new.get("spec") or {}).get("schedulingGates") or [])
        if gate.get("name") not in before
    ]
    if added:
        raise ApiError.invalid(rtype, name, added)


def default_builtin(rtype: ResourceType, obj: Obj, allocate_cluster_ip: Callable[[], str]) -> None:
    """The defaults the API server sets on the built-in kinds the harness runs."""
    spec = obj.setdefault("spec", {}) if rtype.storage in (PODS, SERVICES) else None
    if rtype.storage == PODS:
        assert spec is not None
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        for container in spec.get("containers") or []:
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault(
                "imagePullPolicy",
                "Always" if str(container.get("image", "")).endswith(":latest") else "IfNotPresent",
            )
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    elif rtype.storage == SERVICES:
        assert spec is not None
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if spec.get("clusterIP") != "None":
            spec["clusterIP"] = spec.get("clusterIP") or allocate_cluster_ip()
        spec["clusterIPs"] = [spec["clusterIP"]]
        obj["status"] = {"loadBalancer": {}}
    elif rtype.storage == NAMESPACES:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def qos_class(spec: Mapping[str, Any]) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        r.get("limits")
        and all(r.get("requests", r["limits"]).get(k) == v for k, v in r["limits"].items())
        and set(r["limits"]) >= {"cpu", "memory"}
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def selector_matcher(query: Mapping[str, str]) -> Callable[[Obj], bool]:
    """A list's or watch's `labelSelector` and `fieldSelector` as one predicate; 400 if they do not parse."""
    try:
        labels = am.parse_label_selector(query.get("labelSelector"))
        fields = am.parse_field_selector(query.get("fieldSelector"))
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"unable to parse selector: {exc}") from None
    return lambda obj: labels(obj.get("metadata", {}).get("labels") or {}) and fields(obj)

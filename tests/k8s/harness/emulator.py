"""An emulated Kubernetes API server: kmock's KubernetesEmulator with the semantics our clients need.

kmock 0.8's KubernetesEmulator (kmock/_internal/k8s.py) serves discovery and keeps objects in
memory, but as a plain dict store. kopf, kubectl and the kubernetes client need more, so this
subclass takes over every request to a resource path (`/api/v1/...`, `/apis/g/v/...`) and
serves it from its own store, leaving kmock the bundled resource catalogue (`load_bundled()`),
`/version`, `/` and the 404 fallback. The gaps filled, each against k8s.py:

- `parsing.parse_path` raises on `GET /api/v1/namespaces` (it unpacks the namespace name from
  an empty list), so kopf's namespace observer never starts: resource paths are parsed here.
- `metadata.resourceVersion` is never set or bumped (kopf then handles every change twice and
  its JSON-patch `test` of resourceVersion is meaningless): one global revision counter, bumped
  on every write, with `uid`, `creationTimestamp`, `generation` (spec changes only) and
  `generateName` as the real server does them; a no-op write changes nothing and emits nothing.
- lists carry no `kind`/`apiVersion` (kubectl refuses them): served as `<Kind>List`.
- `labelSelector`/`fieldSelector` are ignored on list and watch: honoured, including the
  ADDED/DELETED a watch sees when an object starts or stops matching.
- watches ignore `resourceVersion` and replay everything: events are kept in a history and a
  watch resumes after the requested revision (410 Expired when it is too old), honours
  `sendInitialEvents` (with the initial-events-end BOOKMARK kopf waits for), `timeoutSeconds`
  and sends periodic BOOKMARKs under kopf's 70 s inactivity timeout.
- patches are a naive dict merge: merge patch (RFC 7386), JSON patch (RFC 6902, with `test`
  failing as 422 the way kopf expects), strategic merge patch (kubectl apply of built-in kinds,
  approximated) and server-side apply (`application/apply-patch+yaml`, approximated as
  create-or-merge) are applied as the real server does.
- no status subresource semantics: PATCH/PUT of `.../status` changes only `status`, and writes
  to the main resource leave `status` alone, for every resource that declares the subresource.
- deletion: finalizers hold an object with `deletionTimestamp` until they are empty (kmock had
  that; no new finalizers may be added meanwhile); without finalizers an object -- a pod too --
  goes at once (no graceful-termination phase; the kubelet then stops its process). Added:
  ownerReference garbage collection (background, cascading; `Orphan` propagation strips the
  references instead); namespace deletion deletes its contents; creating in a namespace that
  does not exist is a 404, as for real; DeleteOptions `preconditions` (uid, resourceVersion) that
  do not hold answer 409 Conflict "Precondition failed: ..." as apimachinery's storage does.
  Every kind of the bundled catalogue is stored and garbage-collected alike (NetworkPolicies
  too; nothing enforces them: tests/netpol.py evaluates them).
- built-in defaults that matter to the harness: pods get `restartPolicy: Always` (so trial pods
  must say Never), `terminationGracePeriodSeconds: 30`, `terminationMessagePolicy: File` and
  phase Pending; Services a ClusterIP unless headless; names are checked (DNS-1035 for
  Services, RFC 1123 subdomains for pods and custom resources).
- CustomResourceDefinitions are declared from YAML (or created through the API) with their
  names, short names, categories, verbs, subresources and printer columns.
- no validation: an optional `defaulter(obj) -> obj` and `admission(obj) -> [messages]` run on
  every create/update/patch of a custom resource (status writes included, as the API server
  validates the whole object); messages reject the write with a 422 `Invalid` Status, and
  `admission` that takes a `strict` keyword gets `strict=True` for kubectl's
  `fieldValidation=Strict`.
- `kubectl get` asks for `Accept: ...;as=Table;v=v1;g=meta.k8s.io`: a meta.k8s.io/v1 Table is
  served, from the CRD's additionalPrinterColumns for custom resources.
- kubectl's create/apply validation needs `/openapi/v3`: a minimal document that advertises
  server-side field validation, so kubectl does not validate against a schema it cannot fetch.

Not a gap but a test's wish: API server trouble on demand (`FaultInjector`, installed with
`Cluster.inject_faults`): 409, 429 + Retry-After, 500 before or after the write, watch
connections cut, at seeded fixed rates and for chosen clients only.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import inspect
import ipaddress
import json
import logging
import random
import re
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import aiohttp.web
import apimachinery as am
import attrs
import kmock
import yaml

logger = logging.getLogger("k8s.emulator")

Obj = dict[str, Any]
#: (group, plural, namespace or "", name): one object, whatever version it is served in.
StoreKey = tuple[str, str, str, str]
Admission = Callable[[Obj], "list[str]"]
Defaulter = Callable[[Obj], Obj]

HISTORY_SIZE: Final = 50_000
BOOKMARK_INTERVAL_S: Final = 30.0  # kopf reconnects a watch silent for 70 s (inactivity_timeout)
DNS1123_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
GENERATE_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # what the API server draws generateName suffixes from
SERVICE_CIDR: Final = ipaddress.ip_network("10.96.0.0/16")
ALL_VERBS: Final = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclasses.dataclass
class ResourceType:
    """One served group/version/plural, as discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    #: a CRD's additionalPrinterColumns for this version (None: built-in printing).
    printer_columns: list[dict[str, Any]] | None = None
    #: declared by a CustomResourceDefinition: admission applies.
    custom: bool = False
    #: the CRD version's openAPIV3Schema (served under /openapi/v3 for `kubectl explain`).
    schema: dict[str, Any] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


@dataclasses.dataclass(frozen=True)
class Event:
    revision: int
    storage: tuple[str, str]
    type: str  # ADDED | MODIFIED | DELETED
    object: Obj
    old: Obj | None


class ApiError(Exception):
    """An API error answered as a `Status` object, as the real server does."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, dict(details or {})

    def status(self) -> Obj:
        status: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status

    def response(self) -> aiohttp.web.Response:
        return aiohttp.web.json_response(self.status(), status=self.code)

    @classmethod
    def not_found(cls, rtype: ResourceType, name: str) -> ApiError:
        resource = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
        return cls(
            404,
            "NotFound",
            f'{resource} "{name}" not found',
            {"name": name, "group": rtype.group, "kind": rtype.plural},
        )

    @classmethod
    def invalid(cls, rtype: ResourceType, name: str, messages: list[str]) -> ApiError:
        # apimachinery's errors.NewInvalid: one error inline, several as "[a, b]".
        text = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
        causes = []
        for message in messages:
            field, _, rest = message.partition(": ")
            causes.append(
                {"reason": "FieldValueInvalid", "message": rest if rest else message, "field": field if rest else ""}
            )
        return cls(
            422,
            "Invalid",
            f'{rtype.qualified_kind} "{name}" is invalid: {text}',
            {"name": name, "group": rtype.group, "kind": rtype.kind, "causes": causes},
        )

    @classmethod
    def conflict(cls, rtype: ResourceType, name: str) -> ApiError:
        resource = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            {"name": name, "group": rtype.group, "kind": rtype.plural},
        )


@dataclasses.dataclass
class _Watcher:
    storage: tuple[str, str]
    queue: asyncio.Queue[Event | None]


def _strip_status(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _json(data: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(text=json.dumps(data), status=status, content_type="application/json")


#: The faults a FaultInjector can inject, each at its own rate per eligible request.
CONFLICT: Final = "409-conflict"  # a write refused, nothing done (the object "changed meanwhile")
THROTTLED: Final = "429-throttled"  # any verb, with Retry-After (and details.retryAfterSeconds)
ERROR_BEFORE: Final = "500-before"  # any verb, refused before anything happened
ERROR_AFTER: Final = "500-after"  # a write carried out, and then answered 500: the ambiguous failure
WATCH_DROP: Final = "watch-dropped"  # a watch's connection cut (no clean end) after a few events
FAULT_KINDS: Final = (CONFLICT, THROTTLED, ERROR_BEFORE, ERROR_AFTER, WATCH_DROP)
_WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclasses.dataclass
class FaultInjector:
    """API server trouble at fixed rates, for the requests of chosen clients only.

    Each request to a resource path (`/api/v1/...`, `/apis/g/v/...`; discovery is spared) whose
    User-Agent starts with one of `agents` (and whose path matches `paths`, if given) draws one
    number from a generator seeded with `seed`, which picks 429 or 500-before by their `rates`
    (probability per eligible request); a write that got neither draws from a second seeded
    generator for 409 or 500-after (writes only). At most one fault per request. A watch
    request that got through draws again for WATCH_DROP and is then cut after `drop_after`
    (min, max) events. The draws are seeded, the order of requests is the clients' own: the rate
    is fixed, not which request gets the fault.
    """

    rates: Mapping[str, float]
    seed: int = 0
    #: kopf ("kopf/1.x") and the kubernetes client ("OpenAPI-Generator/x/python"): the operator;
    #: not kubectl, whose reads and applies are the test's own.
    agents: tuple[str, ...] = ("kopf/", "OpenAPI-Generator/")
    #: only requests whose path matches this regular expression (None: every resource path)
    paths: str | None = None
    retry_after_s: int = 1
    drop_after: tuple[int, int] = (1, 5)
    #: faults injected so far, by kind
    injected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: (kind, User-Agent, "METHOD path") of every fault, for failure messages
    log: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self._rng = random.Random(self.seed)
        self._writes = random.Random(f"{self.seed}/writes")

    def _eligible(self, request: aiohttp.web.BaseRequest) -> str | None:
        agent = request.headers.get("User-Agent", "")
        if self.paths is not None and not re.search(self.paths, request.path):
            return None
        return agent if agent.startswith(self.agents) else None

    def record(self, kind: str, agent: str, request: aiohttp.web.BaseRequest) -> None:
        self.injected[kind] += 1
        self.log.append((kind, agent, f"{request.method} {request.path_qs}"))

    def draw(self, request: aiohttp.web.BaseRequest, watch: bool) -> str | None:
        """The fault this request gets (counted), or None."""
        agent = self._eligible(request)
        if agent is None:
            return None
        # Two seeded streams: one drawn by every request (429, 500 before the write), one by writes
        # only (409, 500 after the write). Which requests meet which kind then depends on how many
        # requests and writes the clients make, not on how reads and writes interleave (with one
        # stream a change to the operator's calls once drew every low roll on writes, as 409s, and
        # a run met no 429 at all).
        streams = [(self._rng, (THROTTLED, ERROR_BEFORE))]
        if request.method in _WRITES and not watch:
            streams.append((self._writes, (CONFLICT, ERROR_AFTER)))
        for rng, kinds in streams:
            roll, edge = rng.random(), 0.0
            for kind in kinds:
                edge += self.rates.get(kind, 0.0)
                if roll < edge:
                    self.record(kind, agent, request)
                    return kind
        return None

    def error(self, kind: str, request: aiohttp.web.BaseRequest) -> ApiError:
        """The Status the real API server answers with for this kind of trouble."""
        if kind == CONFLICT:
            return ApiError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {request.path}: the object has been modified; "
                "please apply your changes to the latest version and try again",
            )
        if kind == THROTTLED:
            return ApiError(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                {"retryAfterSeconds": self.retry_after_s},
            )
        return ApiError(500, "InternalError", f"Internal error occurred: injected ({kind})")

    def watch_drop(self, request: aiohttp.web.BaseRequest) -> int | None:
        """After how many events this watch's connection is cut (counted when it is), or None."""
        agent = self._eligible(request)
        if agent is None or self._rng.random() >= self.rates.get(WATCH_DROP, 0.0):
            return None
        return self._rng.randint(*self.drop_after)


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """The emulated API server; serve it with `kmock.Server(api_server)`.

    All state lives in the asyncio loop that serves it: call its methods from that loop only.
    """

    admission: Admission | None = None
    defaulter: Defaulter | None = None

    types: dict[tuple[str, str, str], ResourceType] = attrs.field(factory=dict, init=False)
    store: dict[StoreKey, Obj] = attrs.field(factory=dict, init=False)
    revision: int = attrs.field(default=0, init=False)
    history: collections.deque[Event] = attrs.field(factory=lambda: collections.deque(maxlen=HISTORY_SIZE), init=False)
    #: in-process subscribers (the kubelet), called synchronously on every event.
    listeners: list[Callable[[Event], None]] = attrs.field(factory=list, init=False)
    #: readers of GET-only subresources, e.g. "pods/log": fn(namespace, name, query) -> text.
    readers: dict[str, Callable[[str, str, Mapping[str, str]], str]] = attrs.field(factory=dict, init=False)
    _watchers: list[_Watcher] = attrs.field(factory=list, init=False)
    _orphaning: set[str] = attrs.field(factory=set, init=False)
    _gc_scheduled: bool = attrs.field(default=False, init=False)
    _cluster_ips: set[str] = attrs.field(factory=set, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    #: "METHOD path: traceback" of every request that failed inside the emulator (HTTP 500).
    internal_errors: list[str] = attrs.field(factory=list, init=False)
    #: API server trouble injected into chosen clients' requests (None: none); see FaultInjector.
    faults: FaultInjector | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        with warnings.catch_warnings():  # kmock 0.8 reads its bundle with a deprecated importlib API
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        for res in self.resources:
            info = self.resources[res]
            if res.group is None or res.version is None or res.plural is None:
                continue
            self.types[(res.group, res.version, res.plural)] = ResourceType(
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
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(self.types[("", "v1", "namespaces")], None, {"metadata": {"name": ns}})

    # -----------------------------------------------------------------------------------------
    # Resource types

    def declare_crd(self, crd: Obj) -> list[ResourceType]:
        """Serve the resources of a CustomResourceDefinition (apiextensions.k8s.io/v1)."""
        spec = crd["spec"]
        names = spec["names"]
        declared = []
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            rtype = ResourceType(
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
            self.types[(rtype.group, rtype.version, rtype.plural)] = rtype
            # Keep kmock's own catalogue in step: it renders `/` from it.
            self.resources[f"{rtype.group}/{rtype.version}/{rtype.plural}"] = {
                "kind": rtype.kind,
                "namespaced": rtype.namespaced,
                "singular": rtype.singular,
                "verbs": list(ALL_VERBS),
                "shortnames": list(rtype.short_names),
                "categories": list(rtype.categories),
                "subresources": list(rtype.subresources),
            }
            declared.append(rtype)
        return declared

    def load_crd(self, crd: Obj) -> None:
        """Store a CRD object (as `kubectl apply -f crds/` would) and serve its resources."""
        key = ("apiextensions.k8s.io", "customresourcedefinitions", "", crd["metadata"]["name"])
        if key not in self.store:
            self.create(self.types[("apiextensions.k8s.io", "v1", "customresourcedefinitions")], None, crd)

    def type_of(self, group_version_plural: str) -> ResourceType:
        """`"v1/pods"`, `"openautoglm.io/v1alpha1/tuningjobs"` -> its ResourceType."""
        group_version, _, plural = group_version_plural.rpartition("/")
        group, _, version = group_version.rpartition("/")
        try:
            return self.types[(group, version, plural)]
        except KeyError:
            raise KeyError(f"resource {group_version_plural!r} is not served") from None

    def _storage_type(self, storage: tuple[str, str]) -> ResourceType:
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
        obj = self.store.get(self.key(rtype, namespace, name))
        return self.present(rtype, obj) if obj is not None else None

    def list(
        self, rtype: ResourceType, namespace: str | None = None, match: Callable[[Obj], bool] = lambda obj: True
    ) -> list[Obj]:
        return [
            self.present(rtype, obj)
            for (group, plural, ns, _), obj in sorted(self.store.items())
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
        old = self.store.get(key)
        if old is None or (uid is not None and old["metadata"].get("uid") != uid):
            return None
        new = copy.deepcopy(old)
        mutate(new)
        return self._commit(rtype, key, old, new)

    def _emit(self, event: Event) -> None:
        self.history.append(event)
        for watcher in self._watchers:
            if watcher.storage == event.storage:
                watcher.queue.put_nowait(event)
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
        self.store[key] = new
        self._emit(Event(self.revision, rtype.storage, "ADDED" if old is None else "MODIFIED", new, old))
        meta = new["metadata"]
        if old is not None and meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rtype, key)  # the last finalizer is gone: the deletion completes
        return new

    def _remove(self, rtype: ResourceType, key: StoreKey) -> Obj:
        old = self.store.pop(key)
        self.revision += 1
        final = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self.revision)}}
        self._emit(Event(self.revision, rtype.storage, "DELETED", final, old))
        uid = old["metadata"].get("uid")
        if uid in self._orphaning:
            self._orphaning.discard(uid)
            self._orphan_dependents(uid)
        self._schedule_gc()
        if rtype.storage == ("", "namespaces"):
            for k in [k for k in self.store if k[2] == key[3]]:
                if k in self.store:
                    self._delete_key(self._storage_type(k[:2]), k, "Background")
        if rtype.storage == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._undeclare_crd(old)
        if rtype.storage == ("", "services"):
            self._cluster_ips.discard((old.get("spec") or {}).get("clusterIP", ""))
        return final

    def _undeclare_crd(self, crd: Obj) -> None:
        storage = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        for k in [k for k in self.store if k[:2] == storage]:
            self._remove(self._storage_type(storage), k)
        for tkey in [tk for tk, t in self.types.items() if t.storage == storage]:
            del self.types[tkey]
            del self.resources[f"{tkey[0]}/{tkey[1]}/{tkey[2]}"]

    # -----------------------------------------------------------------------------------------
    # Garbage collection of dependents (ownerReferences)

    def _schedule_gc(self) -> None:
        # Background propagation, as the real garbage collector does it: after the owner is gone.
        if not self._gc_scheduled:
            self._gc_scheduled = True
            asyncio.get_running_loop().call_later(0.05, self._collect_garbage)

    def _collect_garbage(self) -> None:
        self._gc_scheduled = False
        live = {obj["metadata"].get("uid") for obj in self.store.values()}
        for key, obj in list(self.store.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if (
                refs
                and not any(ref.get("uid") in live for ref in refs)
                and not obj["metadata"].get("deletionTimestamp")
            ):
                if key in self.store:
                    logger.debug("garbage-collecting %s", key)
                    self._delete_key(self._storage_type(key[:2]), key, "Background")

    def _orphan_dependents(self, uid: str) -> None:
        for key, obj in list(self.store.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == uid for ref in refs):
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid] or None
                if new["metadata"]["ownerReferences"] is None:
                    del new["metadata"]["ownerReferences"]
                self._commit(self._storage_type(key[:2]), key, obj, new)

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
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was not an object")
        if body.get("kind") and body["kind"] != rtype.kind:
            raise ApiError(
                400,
                "BadRequest",
                f"the kind of the object ({body['kind']}) does not match the resource {rtype.plural} ({rtype.kind})",
            )
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
            if ("", "namespaces", "", namespace) not in self.store:
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
                if self.key(rtype, namespace, name) not in self.store:
                    meta["name"] = name
                    break
        name = meta["name"]
        self._validate_name(rtype, name)
        key = self.key(rtype, namespace, name)
        if key in self.store:
            resource = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
            raise ApiError(
                409,
                "AlreadyExists",
                f'{resource} "{name}" already exists',
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = am.now_rfc3339()
        meta["generation"] = 1
        if rtype.has_status:  # the status subresource: a create sets no status
            obj.pop("status", None)
        self._default_builtin(rtype, obj)
        if rtype.custom:
            obj = self._admit(rtype, obj, field_validation)
        new = self._commit(rtype, key, None, obj, dry_run=dry_run)
        if rtype.storage == ("apiextensions.k8s.io", "customresourcedefinitions") and not dry_run:
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
        old = self.store.get(key)
        if old is None:
            raise ApiError.not_found(rtype, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was not an object")
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        if meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise ApiError.conflict(rtype, name)
        if meta.get("name") not in (None, name):
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})",
            )
        new = copy.deepcopy(body)
        new["metadata"] = copy.deepcopy(meta)
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if field in old["metadata"]:
                new["metadata"][field] = old["metadata"][field]
            else:
                new["metadata"].pop(field, None)
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        else:
            if rtype.has_status:  # status changes only through .../status
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            if old["metadata"].get("deletionTimestamp"):
                added = set(new["metadata"].get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
                if added:
                    raise ApiError.invalid(
                        rtype,
                        name,
                        [
                            f"metadata.finalizers: Forbidden: no new finalizers can be "
                            f"added if the object is being deleted, found new "
                            f"finalizers {sorted(added)}"
                        ],
                    )
        if _strip_status(new) != _strip_status(old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if rtype.custom:
            new = self._admit(rtype, new, field_validation, old=old)
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
        content_type = content_type.split(";")[0].strip().lower()
        try:
            patch = yaml.safe_load(body) if "yaml" in content_type else json.loads(body or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"invalid patch body: {exc}") from None
        key = self.key(rtype, namespace, name)
        old = self.store.get(key)
        if old is None:
            if content_type == "application/apply-patch+yaml" and subresource is None:
                return self.create(
                    rtype,
                    namespace,
                    {**patch, "metadata": {**(patch.get("metadata") or {}), "name": name}},
                    dry_run=dry_run,
                    field_validation=field_validation,
                )
            raise ApiError.not_found(rtype, name)
        current = self.present(rtype, old)
        try:
            if content_type == "application/json-patch+json":
                patched = am.json_patch(current, patch)
            elif content_type == "application/strategic-merge-patch+json":
                if rtype.custom:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        "strategic merge patch is not supported for custom resources: use a merge patch",
                    )
                patched = am.strategic_merge_patch(current, patch)
            elif content_type in ("application/merge-patch+json", "application/apply-patch+yaml"):
                # Server-side apply approximated as a merge of the applied configuration
                # (no field ownership: fields dropped from the configuration are not removed).
                patched = am.merge_patch(current, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - "
                    "accepted media types include: application/json-patch+json, "
                    "application/merge-patch+json, application/apply-patch+yaml",
                )
        except am.PatchError as exc:
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {exc}",
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            ) from None
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "the patch did not produce an object")
        rv = (patched.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiError.conflict(rtype, name)
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
        old = self.store.get(key)
        if old is None:
            raise ApiError.not_found(rtype, name)
        pre = options.get("preconditions") or {}
        for field, have in (
            ("uid", old["metadata"].get("uid")),
            ("resourceVersion", old["metadata"]["resourceVersion"]),
        ):
            if pre.get(field) and pre[field] != have:
                # apimachinery's storage answers a failed precondition with this Conflict.
                resource = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {resource} "{name}": Precondition failed: '
                    f"{'UID' if field == 'uid' else 'ResourceVersion'} in precondition: {pre[field]}, "
                    f"{'UID' if field == 'uid' else 'ResourceVersion'} in object meta: {have}",
                    {"name": name, "group": rtype.group, "kind": rtype.plural},
                )
        if dry_run:
            return self.present(rtype, old)
        return self.present(rtype, self._delete_key(rtype, key, options.get("propagationPolicy") or "Background"))

    def _delete_key(self, rtype: ResourceType, key: StoreKey, propagation: str) -> Obj:
        old = self.store[key]
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

    def _admit(self, rtype: ResourceType, obj: Obj, field_validation: str | None = None, old: Obj | None = None) -> Obj:
        if self.defaulter is not None:
            defaulted = self.defaulter(copy.deepcopy(obj))
            obj = defaulted if isinstance(defaulted, dict) else obj
        if self.admission is not None:
            kwargs = {}
            # kubectl sends fieldValidation=Strict (unknown fields are errors); kopf and the
            # kubernetes client send nothing (the server's Warn: unknown fields pruned silently).
            if "strict" in inspect.signature(self.admission).parameters:
                kwargs["strict"] = field_validation == "Strict"
            if "old" in inspect.signature(self.admission).parameters and old is not None:
                kwargs["old"] = copy.deepcopy(old)  # an update: transition rules see oldSelf
            messages = [str(m) for m in self.admission(copy.deepcopy(obj), **kwargs) or []]
            if messages:
                raise ApiError.invalid(rtype, obj["metadata"].get("name", ""), messages)
        return obj

    def _validate_name(self, rtype: ResourceType, name: str) -> None:
        if rtype.storage == ("", "services"):
            ok, what = len(name) <= 63 and DNS1035_LABEL.match(name), "a DNS-1035 label"
        elif rtype.custom or rtype.storage in {("", p) for p in ("pods", "namespaces", "configmaps", "secrets")}:
            ok, what = len(name) <= 253 and DNS1123_SUBDOMAIN.match(name), "a lowercase RFC 1123 subdomain"
        else:
            return
        if not ok:
            raise ApiError.invalid(rtype, name, [f'metadata.name: Invalid value: "{name}": must be {what}'])

    def _default_builtin(self, rtype: ResourceType, obj: Obj) -> None:
        """The defaults the API server sets on the built-in kinds the harness runs."""
        spec = obj.setdefault("spec", {}) if rtype.storage in (("", "pods"), ("", "services")) else None
        if rtype.storage == ("", "pods"):
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
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}
        elif rtype.storage == ("", "services"):
            assert spec is not None
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            if spec.get("clusterIP") != "None":
                spec["clusterIP"] = spec.get("clusterIP") or self._allocate_cluster_ip()
            spec["clusterIPs"] = [spec["clusterIP"]]
            obj["status"] = {"loadBalancer": {}}
        elif rtype.storage == ("", "namespaces"):
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]

    def _allocate_cluster_ip(self) -> str:
        while True:
            ip = str(SERVICE_CIDR[random.randrange(10, SERVICE_CIDR.num_addresses - 1)])
            if ip not in self._cluster_ips:
                self._cluster_ips.add(ip)
                return ip

    def _accept_crd(self, key: StoreKey) -> None:
        crd = self.store[key]
        self.declare_crd(crd)
        new = copy.deepcopy(crd)
        now = am.now_rfc3339()
        new["status"] = {
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
        self._commit(self._storage_type(key[:2]), key, crd, new)

    # -----------------------------------------------------------------------------------------
    # HTTP

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        await raw_request.read()
        if self._closing:  # refuse new work while shutting down (a reconnecting watch would hold it)
            return ApiError(503, "ServiceUnavailable", "the API server is shutting down").response()
        try:
            response = await self._serve(raw_request)
        except ApiError as exc:
            logger.debug("%s %s -> %d %s", raw_request.method, raw_request.path_qs, exc.code, exc.message)
            return exc.response()
        except Exception as exc:  # surfaced to the client as the real server would: a 500 Status
            logger.exception("emulated API server failed on %s %s", raw_request.method, raw_request.path_qs)
            self.internal_errors.append(f"{raw_request.method} {raw_request.path_qs}: {traceback.format_exc()}")
            return ApiError(500, "InternalError", f"Internal error occurred: {type(exc).__name__}: {exc}").response()
        if response is None:
            response = await super().__call__(raw_request)  # kmock: /version, / and 404 for the rest
        logger.debug("%s %s -> %d", raw_request.method, raw_request.path_qs, response.status)
        return response

    async def _serve(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse | None:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        if path == "/api":
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
                }
            )
        if path == "/apis":
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()})
        if path.startswith("/openapi/v3"):
            return self._openapi_v3(path)
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            group = next((g for g in self._groups() if g["name"] == parts[1]), None)
            if group is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json({"kind": "APIGroup", "apiVersion": "v1", **group})
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return self._resource_list(group, version)
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural, name, subresource = rest[0], (rest[1] if len(rest) > 1 else None), ("/".join(rest[2:]) or None)
        rtype = self.types.get((group, version, plural))
        if rtype is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return await self._serve_with_faults(request, rtype, namespace, name, subresource)

    async def _serve_with_faults(
        self,
        request: aiohttp.web.BaseRequest,
        rtype: ResourceType,
        namespace: str | None,
        name: str | None,
        subresource: str | None,
    ) -> aiohttp.web.StreamResponse:
        """`_serve_resource`, with the fault the injector (if any) draws for this request: an
        error instead of the action, or (500-after) an error in place of the action's answer."""
        watch = request.method == "GET" and request.query.get("watch") in ("true", "1")
        fault = self.faults.draw(request, watch) if self.faults is not None else None
        if fault is None:
            return await self._serve_resource(request, rtype, namespace, name, subresource)
        error = self.faults.error(fault, request)  # type: ignore[union-attr]
        if fault == ERROR_AFTER:
            await self._serve_resource(request, rtype, namespace, name, subresource)  # done, answer lost
        response = error.response()
        if fault == THROTTLED:
            response.headers["Retry-After"] = str(error.details["retryAfterSeconds"])
        return response

    async def _serve_resource(
        self,
        request: aiohttp.web.BaseRequest,
        rtype: ResourceType,
        namespace: str | None,
        name: str | None,
        subresource: str | None,
    ) -> aiohttp.web.StreamResponse:
        method, query = request.method, request.query
        dry_run = query.get("dryRun") == "All"
        validation = query.get("fieldValidation")
        if subresource not in (None, "status") and not (
            method == "GET" and f"{rtype.plural}/{subresource}" in self.readers
        ):
            if method == "POST" and subresource == "eviction" and name:
                return _json(self.delete(rtype, namespace, name), 201)
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if subresource == "status" and not rtype.has_status:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET" and subresource not in (None, "status"):
            text = self.readers[f"{rtype.plural}/{subresource}"](namespace or "", name or "", query)
            return aiohttp.web.Response(text=text, content_type="text/plain")
        if method == "GET" and query.get("watch") in ("true", "1"):
            return await self._watch(request, rtype, namespace, name)
        if method == "GET" and name is None:
            items = self.list(rtype, namespace, self._matcher(query))
            if self._wants_table(request):
                return _json(self._table(rtype, items, query))
            return _json(
                {
                    "kind": f"{rtype.kind}List",
                    "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(self.revision)},
                    "items": items,
                }
            )
        if method == "GET":
            assert name is not None
            obj = self.get(rtype, namespace, name)
            if obj is None:
                raise ApiError.not_found(rtype, name)
            return _json(self._table(rtype, [obj], query) if self._wants_table(request) else obj)
        body = await request.read()
        if method == "POST" and name is None:
            return _json(
                self.create(
                    rtype, namespace, self._parse_body(request, body), dry_run=dry_run, field_validation=validation
                ),
                201,
            )
        if method == "PUT" and name is not None:
            return _json(
                self.replace(
                    rtype,
                    namespace,
                    name,
                    self._parse_body(request, body),
                    subresource,
                    dry_run=dry_run,
                    field_validation=validation,
                )
            )
        if method == "PATCH" and name is not None:
            return _json(
                self.patch(
                    rtype,
                    namespace,
                    name,
                    body,
                    request.headers.get("Content-Type", ""),
                    subresource,
                    dry_run=dry_run,
                    field_validation=validation,
                )
            )
        if method == "DELETE":
            options = json.loads(body) if body.strip() else {}
            if "propagationPolicy" in query:
                options["propagationPolicy"] = query["propagationPolicy"]
            if name is not None:
                return _json(self.delete(rtype, namespace, name, options, dry_run=dry_run))
            deleted = [
                self.delete(rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"], options, dry_run=dry_run)
                for obj in self.list(rtype, namespace, self._matcher(query))
            ]
            return _json(
                {
                    "kind": f"{rtype.kind}List",
                    "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(self.revision)},
                    "items": deleted,
                }
            )
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def _parse_body(request: aiohttp.web.BaseRequest, body: bytes) -> Any:
        try:
            if "yaml" in request.headers.get("Content-Type", ""):
                return yaml.safe_load(body)
            return json.loads(body)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from None

    @staticmethod
    def _matcher(query: Mapping[str, str]) -> Callable[[Obj], bool]:
        try:
            labels = am.parse_label_selector(query.get("labelSelector"))
            fields = am.parse_field_selector(query.get("fieldSelector"))
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"unable to parse selector: {exc}") from None
        return lambda obj: labels(obj.get("metadata", {}).get("labels") or {}) and fields(obj)

    # -----------------------------------------------------------------------------------------
    # Watch

    async def _watch(
        self, request: aiohttp.web.BaseRequest, rtype: ResourceType, namespace: str | None, name: str | None
    ) -> aiohttp.web.StreamResponse:
        query = request.query
        match = self._matcher(query)
        if name is not None:
            base, match = match, lambda obj: base(obj) and obj["metadata"]["name"] == name

        def visible(obj: Obj | None) -> bool:
            return (
                obj is not None and (namespace is None or obj["metadata"].get("namespace") == namespace) and match(obj)
            )

        since = query.get("resourceVersion") or ""
        initial = query.get("sendInitialEvents") == "true" or since in ("", "0")
        bookmarks = query.get("allowWatchBookmarks") == "true"
        if not initial and (not since.isdigit()):
            raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}")
        expired = len(self.history) == self.history.maxlen and int(since or 0) < self.history[0].revision - 1
        if not initial and expired:
            backlog: list[Event] | None = None  # too old: the client must relist
        else:
            backlog = (
                [] if initial else [e for e in self.history if e.storage == rtype.storage and e.revision > int(since)]
            )
        # Snapshot and subscription in one synchronous step: no event falls between them.
        watcher = _Watcher(rtype.storage, asyncio.Queue())
        self._watchers.append(watcher)
        snapshot = self.list(rtype, namespace, match) if initial else []
        deadline = time.monotonic() + float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        #: events left before the injector cuts this watch's connection (None: never), drawn by
        #: the injector in place when this watch began, or, for one begun before, when it came
        drop_in, drawn_by = None, None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)

            async def send(kind: str, obj: Obj) -> None:
                await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

            if backlog is None:
                await send(
                    "ERROR",
                    ApiError(
                        410, "Expired", f"too old resource version: {since} ({self.history[0].revision})"
                    ).status(),
                )
                return response
            for obj in snapshot:
                await send("ADDED", obj)
            if query.get("sendInitialEvents") == "true" and bookmarks:
                await send(
                    "BOOKMARK",
                    {
                        "kind": rtype.kind,
                        "apiVersion": rtype.api_version,
                        "metadata": {
                            "resourceVersion": str(self.revision),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                )
            pending: collections.deque[Event] = collections.deque(backlog)
            while True:
                if not pending:
                    timeout = BOOKMARK_INTERVAL_S
                    if deadline is not None:
                        timeout = min(timeout, deadline - time.monotonic())
                        if timeout <= 0:
                            break
                    try:
                        event = await asyncio.wait_for(watcher.queue.get(), timeout)
                    except TimeoutError:
                        if bookmarks:
                            await send(
                                "BOOKMARK",
                                {
                                    "kind": rtype.kind,
                                    "apiVersion": rtype.api_version,
                                    "metadata": {"resourceVersion": str(self.revision)},
                                },
                            )
                        continue
                    if event is None:  # the server is shutting down
                        break
                    pending.append(event)
                event = pending.popleft()
                now_in, was_in = visible(event.object), visible(event.old)
                if event.type == "MODIFIED" and now_in and not was_in:
                    kind = "ADDED"
                elif event.type == "MODIFIED" and was_in and not now_in:
                    kind = "DELETED"
                elif event.type == "DELETED" and (was_in or now_in):
                    kind = "DELETED"
                elif event.type != "DELETED" and now_in:
                    kind = event.type
                else:
                    continue
                await send(kind, self.present(rtype, event.object))
                if self.faults is not None and drawn_by is not self.faults:
                    drawn_by, drop_in = self.faults, self.faults.watch_drop(request)
                if drop_in is not None:
                    drop_in -= 1
                    if drop_in <= 0 and self.faults is not None and request.transport is not None:
                        # Cut, not ended: no final chunk, as a proxy or a restarting API server
                        # leaves it; the client sees a broken payload, not a finished stream.
                        self.faults.record(WATCH_DROP, request.headers.get("User-Agent", ""), request)
                        request.transport.abort()
                        break
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self._watchers.remove(watcher)
        return response

    def close_watches(self) -> None:
        """Shut down: end every open watch stream and refuse further requests."""
        self._closing = True
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)

    # -----------------------------------------------------------------------------------------
    # Discovery and OpenAPI

    def _versions(self) -> dict[str, list[str]]:
        versions: dict[str, set[str]] = collections.defaultdict(set)
        for group, version, _ in self.types:
            versions[group].add(version)
        return {g: sorted(vs, key=am.version_priority) for g, vs in versions.items()}

    def _groups(self) -> list[Obj]:
        groups = []
        for group, versions in sorted(self._versions().items()):
            if not group:
                continue
            entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
        return groups

    def _resource_list(self, group: str, version: str) -> aiohttp.web.Response:
        types = [t for (g, v, _), t in sorted(self.types.items()) if (g, v) == (group, version)]
        if not types:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        resources = []
        for t in types:
            resources.append(
                {
                    "name": t.plural,
                    "singularName": t.singular,
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": list(t.verbs),
                    "shortNames": list(t.short_names),
                    "categories": list(t.categories),
                }
            )
            for sub in t.subresources:
                # No shortNames here: kubectl would warn that `tj` also matches `tuningjobs/status`
                # (kmock's own discovery copies them onto subresources).
                verbs = (
                    ["get"]
                    if sub == "log"
                    else ["create"]
                    if sub in ("eviction", "binding")
                    else ["get", "patch", "update"]
                )
                resources.append(
                    {
                        "name": f"{t.plural}/{sub}",
                        "singularName": "",
                        "namespaced": t.namespaced,
                        "kind": t.kind,
                        "verbs": verbs,
                    }
                )
        return _json(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            }
        )

    def _openapi_v3(self, path: str) -> aiohttp.web.Response:
        """Just enough OpenAPI v3 for kubectl to see server-side field validation on every kind.

        kubectl's create/apply validation (`--validate=strict`, the default) asks /openapi/v3
        whether the kind's PATCH takes `fieldValidation`; if so it lets the server validate,
        else it needs the schemas and fails ("failed to download openapi") on a 404.
        """
        if path == "/openapi/v3":
            paths = {}
            for group, versions in self._versions().items():
                for v in versions:
                    gv = f"apis/{group}/{v}" if group else f"api/{v}"
                    paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={self.revision}"}
            return _json({"paths": paths})
        gv = path[len("/openapi/v3/") :]
        parts = gv.split("/")
        group, version = (
            ("", parts[1])
            if parts[0] == "api" and len(parts) == 2
            else (parts[1], parts[2])
            if parts[0] == "apis" and len(parts) == 3
            else (None, None)
        )
        types = [t for (g, v, _), t in self.types.items() if (g, v) == (group, version)]
        if not types:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        field_validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        paths, schemas = {}, {}
        for t in types:
            if t.schema is not None:  # named as the API server names CRD schemas: io.openautoglm.v1alpha1.TuningJob
                schema_name = ".".join([*reversed(t.group.split(".")), t.version, t.kind])
                schemas[schema_name] = {
                    **t.schema,
                    "x-kubernetes-group-version-kind": [{"group": t.group, "version": t.version, "kind": t.kind}],
                }
            prefix = f"/{gv}/namespaces/{{namespace}}/{t.plural}" if t.namespaced else f"/{gv}/{t.plural}"
            gvk = {"group": t.group, "version": t.version, "kind": t.kind}
            paths[f"{prefix}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-group-version-kind": gvk,
                    "x-kubernetes-action": "patch",
                    "parameters": [field_validation],
                    "responses": {"200": {"description": "OK"}},
                },
                "put": {
                    "x-kubernetes-group-version-kind": gvk,
                    "x-kubernetes-action": "put",
                    "parameters": [field_validation],
                    "responses": {"200": {"description": "OK"}},
                },
            }
            paths[prefix] = {
                "post": {
                    "x-kubernetes-group-version-kind": gvk,
                    "x-kubernetes-action": "post",
                    "parameters": [field_validation],
                    "responses": {"201": {"description": "Created"}},
                }
            }
        return _json(
            {
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": "v1.33.0"},
                "paths": paths,
                "components": {"schemas": schemas},
            }
        )

    # -----------------------------------------------------------------------------------------
    # Server-side printing (meta.k8s.io/v1 Table)

    @staticmethod
    def _wants_table(request: aiohttp.web.BaseRequest) -> bool:
        accept = request.headers.get("Accept", "")
        first = accept.split(",")[0]
        return "as=Table" in first and "g=meta.k8s.io" in first

    def _table(self, rtype: ResourceType, objs: list[Obj], query: Mapping[str, str]) -> Obj:
        columns = [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "priority": 0,
                "description": "Name must be unique within a namespace.",
            }
        ]
        cells: list[Callable[[Obj], Any]] = [lambda o: o["metadata"]["name"]]
        for name, type_, priority, fn in self._columns(rtype):
            columns.append({"name": name, "type": type_, "format": "", "priority": priority, "description": name})
            cells.append(fn)
        include = query.get("includeObject", "Metadata")
        rows = []
        for obj in objs:
            row: Obj = {"cells": [fn(obj) for fn in cells]}
            if include == "Object":
                row["object"] = obj
            elif include != "None":
                row["object"] = {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                }
            rows.append(row)
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self.revision)},
            "columnDefinitions": columns,
            "rows": rows,
        }

    def _columns(self, rtype: ResourceType) -> Iterable[tuple[str, str, int, Callable[[Obj], Any]]]:
        age = ("Age", "string", 0, lambda o: am.age(o["metadata"].get("creationTimestamp")))
        if rtype.printer_columns:
            # apiextensions-apiserver's tableconvertor: the first JSONPath result, typed by the
            # column; dates as ages; nothing found -> null (kubectl prints <none>).
            for col in rtype.printer_columns:
                yield (
                    col["name"],
                    col.get("type", "string"),
                    int(col.get("priority", 0)),
                    lambda o, c=col: _printer_cell(c, o),
                )
            return
        if rtype.storage == ("", "pods"):
            yield (
                "Ready",
                "string",
                0,
                lambda o: "{}/{}".format(
                    sum(1 for c in (o.get("status") or {}).get("containerStatuses") or [] if c.get("ready")),
                    len((o.get("spec") or {}).get("containers") or []),
                ),
            )
            yield ("Status", "string", 0, _pod_status)
            yield (
                "Restarts",
                "integer",
                0,
                lambda o: sum(c.get("restartCount", 0) for c in (o.get("status") or {}).get("containerStatuses") or []),
            )
            yield age
            yield ("IP", "string", 1, lambda o: (o.get("status") or {}).get("podIP") or "<none>")
            yield ("Node", "string", 1, lambda o: (o.get("spec") or {}).get("nodeName") or "<none>")
            return
        if rtype.storage == ("", "services"):
            yield ("Type", "string", 0, lambda o: o["spec"].get("type", "ClusterIP"))
            yield ("Cluster-IP", "string", 0, lambda o: o["spec"].get("clusterIP") or "<none>")
            yield ("External-IP", "string", 0, lambda o: "<none>")
            yield (
                "Port(s)",
                "string",
                0,
                lambda o: (
                    ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in o["spec"].get("ports") or [])
                    or "<none>"
                ),
            )
            yield age
            yield (
                "Selector",
                "string",
                1,
                lambda o: ",".join(f"{k}={v}" for k, v in (o["spec"].get("selector") or {}).items()) or "<none>",
            )
            return
        if rtype.storage == ("", "namespaces"):
            yield ("Status", "string", 0, lambda o: (o.get("status") or {}).get("phase", ""))
        if rtype.storage in (("", "events"), ("events.k8s.io", "events")):
            yield ("Type", "string", 0, lambda o: o.get("type", ""))
            yield ("Reason", "string", 0, lambda o: o.get("reason", ""))
            yield (
                "Object",
                "string",
                0,
                lambda o: "{}/{}".format(
                    (o.get("involvedObject") or o.get("regarding") or {}).get("kind", "").lower(),
                    (o.get("involvedObject") or o.get("regarding") or {}).get("name", ""),
                ),
            )
            yield ("Message", "string", 0, lambda o: o.get("message") or o.get("note") or "")
        yield age


def _printer_cell(column: Mapping[str, Any], obj: Obj) -> Any:
    try:
        results = am.jsonpath(obj, column["jsonPath"])
    except ValueError:
        return None
    if not results or results[0] is None:
        return None
    value, kind = results[0], column.get("type", "string")
    if kind == "string":
        return value if isinstance(value, str) else json.dumps(value)
    if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, str):
        return am.age(value)
    return None


def _pod_status(pod: Obj) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            return state["waiting"]["reason"]
        if "terminated" in state and status.get("phase") not in ("Succeeded", "Failed"):
            return state["terminated"].get("reason") or "Terminated"
    if status.get("phase") in ("Succeeded", "Failed"):
        terminated = [(cs.get("state") or {}).get("terminated") for cs in status.get("containerStatuses") or []]
        return next((t.get("reason") for t in terminated if t and t.get("reason")), status["phase"])
    return status.get("phase", "Pending")


def _qos_class(spec: Mapping[str, Any]) -> str:
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


def load_crd_documents(paths: Iterable[Any]) -> list[Obj]:
    """The CustomResourceDefinitions in YAML files (other documents, e.g. kustomizations, skipped)."""
    crds = []
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    crds.append(doc)
    return crds

"""An emulated Kubernetes API server: kmock's KubernetesEmulator with the semantics our clients need.

kmock 0.8's KubernetesEmulator (kmock/_internal/k8s.py) serves discovery and keeps objects in
memory, but as a plain dict store. kopf, kubectl and the kubernetes client need more, so this
subclass takes over every request to a resource path (`/api/v1/...`, `/apis/g/v/...`) and
serves it from its own store, leaving kmock the bundled resource catalogue (`load_bundled()`),
`/version`, `/` and the 404 fallback. The gaps filled against k8s.py, and where:

- `parsing.parse_path` raises on `GET /api/v1/namespaces` (it unpacks the namespace name from
  an empty list), so kopf's namespace observer never starts: resource paths are parsed here.
- lists carry no `kind`/`apiVersion` (kubectl refuses them): served here as `<Kind>List`;
  `labelSelector`/`fieldSelector` are honoured on list and watch (store.selector_matcher).
- resourceVersion, uid, generation and generateName; finalizers, garbage collection, namespace
  deletion, delete preconditions; built-in defaults and name checks; CRDs declared through the
  API; admission of custom resources: store.py (`ObjectStore`).
- patches (merge, JSON, strategic merge, server-side apply) and the status subresource:
  patch.py.
- watches that resume from a resourceVersion, honour selectors, `sendInitialEvents`,
  `timeoutSeconds` and send BOOKMARKs: watch.py (`WatchHub`).
- no validation in kmock: an optional `defaulter(obj) -> obj` and `admission(obj) -> [messages]`
  run on every create/update/patch of a custom resource (status writes included, as the API
  server validates the whole object); messages reject the write with a 422 `Invalid` Status,
  and `admission` that takes a `strict` keyword gets `strict=True` for kubectl's
  `fieldValidation=Strict` (store.admit, with this server's `admission` and `defaulter` as they
  are at the time of the write: a test may swap them).
- `kubectl get` asks for `Accept: ...;as=Table;v=v1;g=meta.k8s.io`: a meta.k8s.io/v1 Table is
  served, from the CRD's additionalPrinterColumns for custom resources: printing.py.
- discovery of the CRDs' resources and the `/openapi/v3` kubectl's create/apply validation
  needs: discovery.py.

Not a gap but a test's wish: API server trouble on demand (`FaultInjector` in faults.py,
installed with `Cluster.inject_faults`): 409, 429 + Retry-After, 500 before or after the write,
watch connections cut, at seeded fixed rates and for chosen clients only.

This module is the HTTP front and the names the harness and the tests import (`ApiServer`,
`ApiError`, `Event`, `Obj`, `FaultInjector` and its fault kinds, `load_crd_documents`).
"""

from __future__ import annotations

import functools
import json
import logging
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import aiohttp.web
import attrs
import discovery
import kmock
import printing
import yaml
from apitypes import Admission, ApiError, Defaulter, Event, Obj, ResourceType, StoreKey
from faults import CONFLICT, ERROR_AFTER, ERROR_BEFORE, FAULT_KINDS, THROTTLED, WATCH_DROP, FaultInjector
from store import ObjectStore, admit, selector_matcher
from watch import WatchHub

__all__ = [
    "CONFLICT",
    "ERROR_AFTER",
    "ERROR_BEFORE",
    "FAULT_KINDS",
    "THROTTLED",
    "WATCH_DROP",
    "Admission",
    "ApiError",
    "ApiServer",
    "Defaulter",
    "Event",
    "FaultInjector",
    "Obj",
    "ResourceType",
    "StoreKey",
    "load_crd_documents",
]

logger = logging.getLogger("k8s.emulator")

T = TypeVar("T")


def _json(data: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(text=json.dumps(data), status=status, content_type="application/json")


def _on_store(method: Callable[..., T]) -> Callable[..., T]:
    """An ApiServer method that is its store's `method` (same name, signature and docstring)."""

    @functools.wraps(method)
    def forward(self: ApiServer, *args: Any, **kwargs: Any) -> T:
        return getattr(self.store, method.__name__)(*args, **kwargs)

    return forward


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """The emulated API server; serve it with `kmock.Server(api_server)`.

    All state lives in the asyncio loop that serves it: call its methods from that loop only.
    The objects are in `store` (an ObjectStore, whose verbs are also this server's own), the
    open watch streams in `watches`.
    """

    admission: Admission | None = None
    defaulter: Defaulter | None = None

    store: ObjectStore = attrs.field(init=False)
    watches: WatchHub = attrs.field(init=False)
    #: readers of GET-only subresources, e.g. "pods/log": fn(namespace, name, query) -> text.
    readers: dict[str, Callable[[str, str, Mapping[str, str]], str]] = attrs.field(factory=dict, init=False)
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
        self.store = ObjectStore(self.resources, self._admit)
        self.watches = WatchHub(self.store, lambda: self.faults)

    def _admit(self, rtype: ResourceType, obj: Obj, field_validation: str | None, old: Obj | None) -> Obj:
        return admit(rtype, obj, self.admission, self.defaulter, field_validation, old)

    # -----------------------------------------------------------------------------------------
    # The store's verbs and state, as the harness and the tests call them

    declare_crd = _on_store(ObjectStore.declare_crd)
    load_crd = _on_store(ObjectStore.load_crd)
    type_of = _on_store(ObjectStore.type_of)
    get = _on_store(ObjectStore.get)
    list = _on_store(ObjectStore.list)
    create = _on_store(ObjectStore.create)
    replace = _on_store(ObjectStore.replace)
    patch = _on_store(ObjectStore.patch)
    delete = _on_store(ObjectStore.delete)
    update_as_system = _on_store(ObjectStore.update_as_system)

    @property
    def listeners(self) -> list[Callable[[Event], None]]:
        """In-process subscribers (the kubelet), called synchronously on every event."""
        return self.store.listeners

    @property
    def mutators(self) -> list[Callable[[ResourceType, Obj], None]]:
        """Mutating admission on every create: fn(type, object) edits it in place (store.py)."""
        return self.store.mutators

    @property
    def revision(self) -> int:
        return self.store.revision

    def close_watches(self) -> None:
        """Shut down: end every open watch stream and refuse further requests."""
        self._closing = True
        self.watches.close()

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
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": discovery.groups(self.store.types)})
        if path.startswith("/openapi/v3"):
            return _json(discovery.openapi_v3(self.store.types, path, self.store.revision))
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            group = next((g for g in discovery.groups(self.store.types) if g["name"] == parts[1]), None)
            if group is None:
                raise ApiError.unknown_resource()
            return _json({"kind": "APIGroup", "apiVersion": "v1", **group})
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return _json(discovery.resource_list(self.store.types, group, version))
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural, name, subresource = rest[0], (rest[1] if len(rest) > 1 else None), ("/".join(rest[2:]) or None)
        rtype = self.store.types.get((group, version, plural))
        if rtype is None:
            raise ApiError.unknown_resource()
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
                return _json(self.store.delete(rtype, namespace, name), 201)
            raise ApiError.unknown_resource()
        if subresource == "status" and not rtype.has_status:
            raise ApiError.unknown_resource()
        if method == "GET" and subresource not in (None, "status"):
            text = self.readers[f"{rtype.plural}/{subresource}"](namespace or "", name or "", query)
            return aiohttp.web.Response(text=text, content_type="text/plain")
        if method == "GET" and query.get("watch") in ("true", "1"):
            return await self.watches.serve(request, rtype, namespace, name)
        if method == "GET" and name is None:
            items = self.store.list(rtype, namespace, selector_matcher(query))
            if printing.wants_table(request):
                return _json(printing.table(rtype, items, query, self.store.revision))
            return _json(
                {
                    "kind": f"{rtype.kind}List",
                    "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(self.store.revision)},
                    "items": items,
                }
            )
        if method == "GET":
            assert name is not None
            obj = self.store.get(rtype, namespace, name)
            if obj is None:
                raise ApiError.not_found(rtype, name)
            return _json(
                printing.table(rtype, [obj], query, self.store.revision) if printing.wants_table(request) else obj
            )
        body = await request.read()
        if method == "POST" and name is None:
            return _json(
                self.store.create(
                    rtype, namespace, self._parse_body(request, body), dry_run=dry_run, field_validation=validation
                ),
                201,
            )
        if method == "PUT" and name is not None:
            return _json(
                self.store.replace(
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
                self.store.patch(
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
                return _json(self.store.delete(rtype, namespace, name, options, dry_run=dry_run))
            deleted = [
                self.store.delete(
                    rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"], options, dry_run=dry_run
                )
                for obj in self.store.list(rtype, namespace, selector_matcher(query))
            ]
            return _json(
                {
                    "kind": f"{rtype.kind}List",
                    "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(self.store.revision)},
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


def load_crd_documents(paths: Iterable[Any]) -> list[Obj]:
    """The CustomResourceDefinitions in YAML files (other documents, e.g. kustomizations, skipped)."""
    crds = []
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    crds.append(doc)
    return crds

"""Discovery and OpenAPI: how kopf, kubectl and the kubernetes client learn what is served.

kmock renders discovery from its catalogue; the emulator serves the groups, versions and
resources of its own types (the bundled kinds and every CRD declared since), with subresources
and without copying short names onto them (kubectl would warn that `tj` also matches
`tuningjobs/status`). kubectl's create/apply validation needs `/openapi/v3`: a minimal document
that advertises server-side field validation, so kubectl does not validate against a schema it
cannot fetch. Pure functions over the served types.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import apimachinery as am
from apitypes import ApiError, Obj, ResourceType

Types = Mapping[tuple[str, str, str], ResourceType]


def versions(types: Types) -> dict[str, list[str]]:
    """Each group's served versions, preferred first."""
    by_group: dict[str, set[str]] = collections.defaultdict(set)
    for group, version, _ in types:
        by_group[group].add(version)
    return {g: sorted(vs, key=am.version_priority) for g, vs in by_group.items()}


def groups(types: Types) -> list[Obj]:
    """The APIGroups of `/apis` (the core group is `/api`)."""
    found = []
    for group, served in sorted(versions(types).items()):
        if not group:
            continue
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in served]
        found.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return found


def resource_list(types: Types, group: str, version: str) -> Obj:
    """The APIResourceList of one group/version, subresources included."""
    served = [t for (g, v, _), t in sorted(types.items()) if (g, v) == (group, version)]
    if not served:
        raise ApiError.unknown_resource()
    resources = []
    for t in served:
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
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def openapi_v3(types: Types, path: str, revision: int) -> Obj:
    """Just enough OpenAPI v3 for kubectl to see server-side field validation on every kind.

    kubectl's create/apply validation (`--validate=strict`, the default) asks /openapi/v3
    whether the kind's PATCH takes `fieldValidation`; if so it lets the server validate,
    else it needs the schemas and fails ("failed to download openapi") on a 404.
    """
    if path == "/openapi/v3":
        paths = {}
        for group, served_versions in versions(types).items():
            for v in served_versions:
                gv = f"apis/{group}/{v}" if group else f"api/{v}"
                paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={revision}"}
        return {"paths": paths}
    gv = path[len("/openapi/v3/") :]
    parts = gv.split("/")
    group, version = (
        ("", parts[1])
        if parts[0] == "api" and len(parts) == 2
        else (parts[1], parts[2])
        if parts[0] == "apis" and len(parts) == 3
        else (None, None)
    )
    served = [t for (g, v, _), t in types.items() if (g, v) == (group, version)]
    if not served:
        raise ApiError.unknown_resource()
    field_validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    paths, schemas = {}, {}
    for t in served:
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
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }

"""Server-side printing: the meta.k8s.io/v1 Table `kubectl get` asks for.

kubectl sends `Accept: ...;as=Table;v=v1;g=meta.k8s.io`; kmock answers with the plain object and
kubectl prints nothing useful. The columns are a custom resource's additionalPrinterColumns (as
apiextensions-apiserver's tableconvertor evaluates them) or, for the built-in kinds the tests
look at (pods, services, namespaces, events), kubectl's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp.web
import apimachinery as am
from apitypes import Obj, ResourceType


def wants_table(request: aiohttp.web.BaseRequest) -> bool:
    """Whether the client (`kubectl get`) asks for a meta.k8s.io/v1 Table."""
    accept = request.headers.get("Accept", "")
    first = accept.split(",")[0]
    return "as=Table" in first and "g=meta.k8s.io" in first


def table(rtype: ResourceType, objs: list[Obj], query: Mapping[str, str], revision: int) -> Obj:
    """`objs` as the Table the API server prints them in (`includeObject` honoured)."""
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
    for name, type_, priority, fn in columns_of(rtype):
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
        "metadata": {"resourceVersion": str(revision)},
        "columnDefinitions": columns,
        "rows": rows,
    }


def columns_of(rtype: ResourceType) -> Iterable[tuple[str, str, int, Callable[[Obj], Any]]]:
    """(name, type, priority, cell) of each column after Name: the CRD's printer columns, or kubectl's built-in ones."""
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

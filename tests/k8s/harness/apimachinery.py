"""Pure helpers of the emulated API server: patches, selectors, JSONPath, ages.

Each mirrors the Kubernetes apimachinery behaviour the harness's clients (kopf, kubectl, the
kubernetes client) rely on; none does I/O. Written here rather than taken from PyPI
(jsonpatch, jsonpath-ng) because the project's dev dependencies do not list those.
"""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any, Final


class PatchError(ValueError):
    """A patch that cannot be applied (the API server answers 422)."""


# ---------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386): kopf's and kubectl's (for custom resources) patch type.


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: kubectl's client-side apply of built-in kinds. An approximation: lists of
# objects are merged by the merge keys of the core types, `$patch`/`$deleteFromPrimitiveList`
# directives are honoured, `$setElementOrder`/`$retainKeys` are dropped.

#: field name -> merge key of the objects in that list (from the k8s.io/api struct tags).
STRATEGIC_MERGE_KEYS: Final[dict[str, str]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "readinessGates": "conditionType",
}
#: lists of primitives whose patch strategy is "merge" (union) rather than "replace".
STRATEGIC_MERGE_SETS: Final[frozenset[str]] = frozenset({"finalizers"})


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
        elif key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys, $patch: ordering/pruning hints only
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _strategic_list(key, result.get(key), value)
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _strategic_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    current = list(current) if isinstance(current, list) else []
    if field in STRATEGIC_MERGE_SETS:
        return current + [copy.deepcopy(v) for v in patch if v not in current]
    merge_key = STRATEGIC_MERGE_KEYS.get(field)
    # Ports merge by containerPort in containers and by port in services; guess from the items.
    if field == "ports":
        sample = next((p for p in patch + current if isinstance(p, Mapping)), {})
        merge_key = "containerPort" if "containerPort" in sample else "port"
    if merge_key is None or not all(isinstance(p, Mapping) for p in patch):
        return [copy.deepcopy(v) for v in patch if not (isinstance(v, Mapping) and v.get("$patch"))]
    if any(p.get("$patch") == "replace" for p in patch):
        return [{k: v for k, v in p.items() if k != "$patch"} for p in patch if p.get("$patch") != "replace"]
    result = current
    for item in patch:
        key = item.get(merge_key)
        index = next((i for i, c in enumerate(result) if isinstance(c, Mapping) and c.get(merge_key) == key), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


# ---------------------------------------------------------------------------------------------
# JSON patch (RFC 6902): kopf removes finalizers with it, guarded by a `test` of resourceVersion.


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, Mapping):
            if part not in doc:
                raise PatchError(f"path element {part!r} not found")
            doc = doc[part]
        elif isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError):
                raise PatchError(f"invalid list index {part!r}") from None
        else:
            raise PatchError(f"cannot descend into {type(doc).__name__} at {part!r}")
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            index = int(last)
            if not 0 <= index <= len(parent):
                raise PatchError(f"list index {index} out of range")
            parent.insert(index, value)
    else:
        raise PatchError("cannot add to a scalar")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    try:
        if isinstance(parent, dict):
            return parent.pop(last)
        if isinstance(parent, list):
            return parent.pop(int(last))
    except (KeyError, ValueError, IndexError):
        raise PatchError(f"path element {last!r} not found") from None
    raise PatchError("cannot remove from a scalar")


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, Mapping) or "op" not in op or "path" not in op:
            raise PatchError(f"malformed JSON patch operation {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _walk(doc, parts)  # must exist
            if parts:
                _remove(doc, parts)
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            source = _pointer(op["from"])
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_walk(doc, source))
            doc = _add(doc, parts, value)
        elif kind == "test":
            try:
                actual = _walk(doc, parts)
            except PatchError:
                actual = None
            if actual != op.get("value"):
                raise PatchError(f"test failed: {op['path']} is {actual!r}, not {op.get('value')!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc


# ---------------------------------------------------------------------------------------------
# Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) and field selectors (`a.b=c,d!=e`).

Matcher = Callable[[Mapping[str, str]], bool]
_SET_REQUIREMENT: Final = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")


def _split_requirements(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(selector: str | None) -> Matcher:
    """Compile a labelSelector query string; raises ValueError on a malformed one (HTTP 400)."""
    checks: list[Matcher] = []
    for req in _split_requirements(selector or ""):
        if m := _SET_REQUIREMENT.match(req):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif "!=" in req:
            key, value = (s.strip() for s in req.split("!=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in req:
            key, value = (s.strip() for s in req.replace("==", "=").split("=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif req.startswith("!"):
            absent = req[1:].strip()
            checks.append(lambda labels, k=absent: k not in labels)
        elif re.fullmatch(r"[A-Za-z0-9._/-]+", req):
            checks.append(lambda labels, k=req: k in labels)
        else:
            raise ValueError(f"unable to parse requirement: {req!r}")
    return lambda labels: all(check(labels) for check in checks)


def match_selector_object(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector / Service selector (dict) against labels; an empty one matches all."""
    if not selector:
        return True
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(k) == v for k, v in selector.items())  # a Service's plain map
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In":
            ok = labels.get(key) in values
        elif op == "NotIn":
            ok = labels.get(key) not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise KeyError(op)
        if not ok:
            return False
    return True


def parse_field_selector(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for req in _split_requirements(selector or ""):
        negate = "!=" in req
        path, value = (s.strip() for s in re.split(r"!=|==|=", req, maxsplit=1))

        def check(obj: Mapping[str, Any], path: str = path, value: str = value, negate: bool = negate) -> bool:
            actual: Any = obj
            for part in path.split("."):
                actual = actual.get(part) if isinstance(actual, Mapping) else None
            actual = "" if actual is None else str(actual).lower() if isinstance(actual, bool) else str(actual)
            return (actual != value) if negate else (actual == value)

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


# ---------------------------------------------------------------------------------------------
# JSONPath of printer columns: `.a.b`, `.a[0]`, `.a['x.y']`, `.a[*].b`, `.a[?(@.type=="Ready")].status`.

_JSONPATH_TOKEN: Final = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-$@]+)"""
    r"""|\[\s*'(?P<quoted>[^']*)'\s*\]|\[\s*"(?P<dquoted>[^"]*)"\s*\]"""
    r"""|\[\s*(?P<index>-?\d+)\s*\]|\[\s*\*\s*\]|\.\*"""
    r"""|\[\?\(@\.(?P<fkey>[A-Za-z0-9_.\-]+)\s*(?P<fop>==|!=)\s*(?P<fval>'[^']*'|"[^"]*"|[^)\s]+)\s*\)\]"""
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """All values at a simple JSONPath (braces `{...}` allowed), in document order."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path[1:] if path.startswith("$") else path
    values = [obj]
    pos = 0
    while pos < len(path):
        m = _JSONPATH_TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        pos = m.end()
        nxt: list[Any] = []
        for value in values:
            key = m.group("field") or m.group("quoted") or m.group("dquoted")
            if key is not None:
                if isinstance(value, Mapping) and key in value:
                    nxt.append(value[key])
            elif m.group("index") is not None:
                if isinstance(value, list):
                    try:
                        nxt.append(value[int(m.group("index"))])
                    except IndexError:
                        pass
            elif m.group("fkey") is not None:
                want = m.group("fval").strip("'\"")
                for item in value if isinstance(value, list) else []:
                    got: Any = item
                    for part in m.group("fkey").split("."):
                        got = got.get(part) if isinstance(got, Mapping) else None
                    got = str(got).lower() if isinstance(got, bool) else None if got is None else str(got)
                    if (got == want) == (m.group("fop") == "=="):
                        nxt.append(item)
            else:  # wildcard
                nxt.extend(value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else [])
        values = nxt
    return values


# ---------------------------------------------------------------------------------------------
# Time formats.


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, as kubectl's AGE column shows it."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = parse_rfc3339(timestamp)
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.datetime.now(datetime.UTC) - then).total_seconds())


_VERSION_RE: Final = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of Kubernetes version priority: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > others."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), version)

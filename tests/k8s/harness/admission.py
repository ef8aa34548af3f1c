"""Admission of a TuningJob as the Kubernetes API server does it, from the committed CRD file.

The emulator the cluster tests run against validates nothing; the harness calls :func:`review`
on every create and update of a TuningJob and answers 422 when it returns problems. Everything
is read from ``crds/openautoglm.io_tuningjobs.yaml`` on disk, so the file is what gets tested.

The steps follow apiextensions-apiserver, in its order (numbers read first as its JSON decoding reads
them: an integer outside int64 is a float64, and no integer for an ``integer`` field):

1. prune unknown fields (silently; ``strict=True`` reports them instead, as the API server does
   for ``fieldValidation=Strict``, the default of ``kubectl apply`` since 1.27);
2. prune non-nullable nulls that have no default (``PruneNonNullableNullsWithoutDefaults``);
3. default (``structuraldefaulting.Default``: absent or non-nullable-null fields get their
   ``default``, recursively, inside objects that are present);
4. validate against the OpenAPI schema (type, required, enum, bounds, lengths, pattern, items,
   properties, nullable, format date-time), then list-type map keys (duplicates);
5. evaluate every ``x-kubernetes-validations`` rule with cel-python, ``self`` bound to the node
   (converted by its schema type, as the API server does: a ``number`` field is a CEL double even
   when written as ``16``). A transition rule (one that names ``oldSelf``) is evaluated only on an
   update and only where the node has an old value to correlate with (object fields, and items of
   ``x-kubernetes-list-type: map`` lists by their keys), ``oldSelf`` bound to it, as the API server
   does. As the API server does, rules are skipped when step 4 found a type, required, enum,
   too-long or too-many error.

Messages have the API server's shape: ``spec.budget.parallelism: Invalid value: "object": must be
<= maxTrials``. Known gaps of cel-python 0.5 against Kubernetes CEL (the CRD's rules avoid them):
no heterogeneous numeric equality (``1 == 1.0`` is an error; values are converted by schema type so
comparisons stay homogeneous), no Kubernetes libraries but the quantity library, which this module
adds (``quantity()``, ``isQuantity()``, ``compareTo()``, ``isLessThan()``..., with apimachinery's
grammar; not ``url()``, ``isSorted()``, ``lowerAscii()``..., ``cel.bind``, optionals, two-variable
comprehensions), no static type check
and no cost estimation (the rule costs are bounded by hand in openautoglm/crd/schema.py; test_crd.py
estimates them), and its CompiledRunner fails on these rules, so rules are interpreted (~4 ms each, ``||`` and ``&&``
short-circuited as cel-go does; results are remembered per rule and value, which keeps re-reviews of an
unchanged spec cheap).
Ratcheting on update (1.33 tolerates unchanged invalid fields) is approximated by the field at
each error's path (see :func:`_ratchet`).
"""

from __future__ import annotations

import copy
import json
import math
import re
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any, Final

import celpy
import yaml
from celpy import celtypes

REPO: Final = Path(__file__).resolve().parents[3]
CRD_FILE: Final = REPO / "crds" / "openautoglm.io_tuningjobs.yaml"

#: Error types after which the API server does not run the CEL rules (hasBlockingErr).
_BLOCKING: Final = {"TypeInvalid", "Required", "NotSupported", "TooLong", "TooMany", "Finite"}
_INT64: Final = (-(2**63), 2**63 - 1)
_MAX_JSON_FLOAT: Final = 2**53 - 1
_RFC3339: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


# ----------------------------------------------------------------------------- the CRD on disk
@cache
def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def crd(path: Path = CRD_FILE) -> dict[str, Any]:
    return copy.deepcopy(_load(path))


def _version(path: Path = CRD_FILE) -> dict[str, Any]:
    return next(v for v in _load(path)["spec"]["versions"] if v.get("storage"))


def schema(path: Path = CRD_FILE) -> dict[str, Any]:
    """The openAPIV3Schema of the storage version (a copy)."""
    return copy.deepcopy(_schema(path))


def _schema(path: Path) -> dict[str, Any]:
    return _version(path)["schema"]["openAPIV3Schema"]  # shared: read only


def api_version(path: Path = CRD_FILE) -> str:
    return f"{_load(path)['spec']['group']}/{_version(path)['name']}"


# ----------------------------------------------------------------------------- messages
def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(value, sort_keys=True)


class _Errors:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []  # (error type, message)

    def add(self, kind: str, path: str, body: str) -> None:
        self.items.append((kind, f"{path or '<nil>'}: {body}"))

    def invalid(self, path: str, value: Any, detail: str, kind: str = "Invalid") -> None:
        self.add(kind, path, f"Invalid value: {_fmt(value)}: {detail}")

    @property
    def blocking(self) -> bool:
        return any(kind in _BLOCKING for kind, _ in self.items)

    @property
    def messages(self) -> list[str]:
        return [m for _, m in self.items]


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ----------------------------------------------------------------------------- pruning, defaulting
def _prune(value: Any, s: dict[str, Any] | None, path: str, unknown: list[str]) -> None:
    """Drop fields the schema does not declare, unless it preserves unknown fields."""
    if s is None:
        return
    if isinstance(value, dict):
        props = s.get("properties")
        extra = s.get("additionalProperties")
        preserve = s.get("x-kubernetes-preserve-unknown-fields", False)
        for k in list(value):
            if props is not None and k in props:
                _prune(value[k], props[k], _child(path, k), unknown)
            elif isinstance(extra, dict):
                _prune(value[k], extra, _child(path, k), unknown)
            elif not preserve and (props is not None or "type" in s):
                unknown.append(_child(path, k))
                del value[k]
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _prune(item, s.get("items"), f"{path}[{i}]", unknown)


def _field_schema(s: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if s is None:
        return None
    if key in s.get("properties", {}):
        return s["properties"][key]
    extra = s.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _prune_nulls(value: Any, s: dict[str, Any] | None) -> None:
    """PruneNonNullableNullsWithoutDefaults."""
    if isinstance(value, dict):
        for k in list(value):
            sub = _field_schema(s, k)
            if value[k] is None and sub is not None and not sub.get("nullable") and "default" not in sub:
                del value[k]
            else:
                _prune_nulls(value[k], sub)
    elif isinstance(value, list):
        for item in value:
            _prune_nulls(item, None if s is None else s.get("items"))


def _non_nullable_null(value: Any, s: dict[str, Any] | None) -> bool:
    return value is None and s is not None and not s.get("nullable")


def _default(value: Any, s: dict[str, Any] | None) -> None:
    """structuraldefaulting.Default: fill defaults of absent fields inside present objects."""
    if s is None:
        return
    if isinstance(value, dict):
        for k, prop in s.get("properties", {}).items():
            if "default" in prop and (k not in value or _non_nullable_null(value[k], prop)):
                value[k] = copy.deepcopy(prop["default"])
        for k in value:
            if k in s.get("properties", {}):
                _default(value[k], s["properties"][k])
            elif isinstance(s.get("additionalProperties"), dict):
                extra = s["additionalProperties"]
                if _non_nullable_null(value[k], extra) and "default" in extra:
                    value[k] = copy.deepcopy(extra["default"])
                _default(value[k], extra)
    elif isinstance(value, list):
        items = s.get("items")
        for i in range(len(value)):
            if _non_nullable_null(value[i], items) and "default" in (items or {}):
                value[i] = copy.deepcopy(items["default"])
            _default(value[i], items)


def apply_defaults(obj: dict[str, Any], path: Path = CRD_FILE) -> dict[str, Any]:
    """A copy of ``obj`` with the CRD's defaults filled in, as the API server stores it."""
    out = _decode(obj)
    s = _schema(path)
    _prune_nulls(out, s)
    _default(out, s)
    return out


# ----------------------------------------------------------------------------- OpenAPI validation
def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _decode(value: Any) -> Any:
    """Numbers as the API server's JSON decoding reads them: an integer outside int64 becomes a
    float64 (apimachinery's json.Number: Int64(), else Float64())."""
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return float(value)
    return value


def _is_type(value: Any, t: str) -> bool:
    if t == "integer":
        # kube-openapi's IsFloat64AJSONInteger: an integral float within +-(2^53 - 1)
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_JSON_FLOAT
        )
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return _type_name(value) == t


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _validate(value: Any, s: dict[str, Any], path: str, errs: _Errors) -> None:
    if value is None:
        if not s.get("nullable") and "type" in s:
            errs.invalid(path, "null", f'{path} in body must be of type {s["type"]}: "null"', "TypeInvalid")
        return
    if isinstance(value, float) and not math.isfinite(value):
        errs.invalid(path, value, "must be a finite number (JSON has no NaN or Infinity)", "Finite")
        return
    if s.get("x-kubernetes-int-or-string") and not (_is_type(value, "integer") or isinstance(value, str)):
        errs.invalid(path, _type_name(value), f"{path} in body must be of type integer or string", "TypeInvalid")
        return
    t = s.get("type")
    if t and not _is_type(value, t):
        actual = _type_name(value)
        errs.invalid(path, actual, f'{path} in body must be of type {t}: "{actual}"', "TypeInvalid")
        return
    if "enum" in s and not any(
        _same(value, e) or (_is_type(value, "number") and _is_type(e, "number") and value == e) for e in s["enum"]
    ):
        supported = ", ".join(_fmt(e) for e in s["enum"])
        errs.add("NotSupported", path, f"Unsupported value: {_fmt(value)}: supported values: {supported}")
    if _is_type(value, "number"):
        _bounds(value, s, path, errs)
    elif isinstance(value, str):
        if "maxLength" in s and len(value) > s["maxLength"]:
            errs.add("TooLong", path, f"Too long: may not be more than {s['maxLength']} bytes")
        if "minLength" in s and len(value) < s["minLength"]:
            errs.invalid(path, value, f"{path} in body should be at least {s['minLength']} chars long")
        if "pattern" in s and not re.search(s["pattern"], value):
            errs.invalid(path, value, f"{path} in body should match '{s['pattern']}'")
        if s.get("format") == "date-time" and not _RFC3339.match(value):
            errs.invalid(path, value, f"{path} in body must be of type date-time: {_fmt(value)}")
    elif isinstance(value, list):
        if "minItems" in s and len(value) < s["minItems"]:
            errs.invalid(path, len(value), f"{path} in body should have at least {s['minItems']} items")
        if "maxItems" in s and len(value) > s["maxItems"]:
            errs.add("TooMany", path, f"Too many: {len(value)}: must have at most {s['maxItems']} items")
        for i, item in enumerate(value):
            _validate(item, s.get("items", {}), f"{path}[{i}]", errs)
    elif isinstance(value, dict):
        for k in s.get("required", []):
            if k not in value:
                errs.add("Required", _child(path, k), "Required value")
        if "minProperties" in s and len(value) < s["minProperties"]:
            errs.invalid(path, len(value), f"{path} in body should have at least {s['minProperties']} properties")
        if "maxProperties" in s and len(value) > s["maxProperties"]:
            errs.add("TooMany", path, f"Too many: {len(value)}: must have at most {s['maxProperties']} items")
        for k, v in value.items():
            sub = _field_schema(s, k)
            if sub is not None:
                _validate(v, sub, _child(path, k), errs)


def _bounds(value: float, s: dict[str, Any], path: str, errs: _Errors) -> None:
    if "minimum" in s:
        low = s["minimum"]
        if s.get("exclusiveMinimum") and value <= low:
            errs.invalid(path, value, f"{path} in body should be greater than {low}")
        elif value < low:
            errs.invalid(path, value, f"{path} in body should be greater than or equal to {low}")
    if "maximum" in s:
        high = s["maximum"]
        if s.get("exclusiveMaximum") and value >= high:
            errs.invalid(path, value, f"{path} in body should be less than {high}")
        elif value > high:
            errs.invalid(path, value, f"{path} in body should be less than or equal to {high}")


def _list_types(value: Any, s: dict[str, Any] | None, path: str, errs: _Errors) -> None:
    """structurallisttype.ValidateListSetsAndMaps: no two items with the same keys (map) or value (set)."""
    if s is None:
        return
    if isinstance(value, list):
        kind = s.get("x-kubernetes-list-type")
        seen: set[str] = set()
        for i, item in enumerate(value):
            if kind == "map" and isinstance(item, dict):
                keys = {k: item.get(k) for k in s.get("x-kubernetes-list-map-keys", [])}
                ident = json.dumps(keys, sort_keys=True)
                if ident in seen:
                    inner = ", ".join(f"{json.dumps(k)}:{_fmt(v)}" for k, v in keys.items())
                    errs.add("Duplicate", f"{path}[{i}]", f"Duplicate value: map[string]interface {{}}{{{inner}}}")
            elif kind == "set":
                ident = json.dumps(item, sort_keys=True)
                if ident in seen:
                    errs.add("Duplicate", f"{path}[{i}]", f"Duplicate value: {_fmt(item)}")
            else:
                ident = None
            if ident is not None:
                seen.add(ident)
            _list_types(item, s.get("items"), f"{path}[{i}]", errs)
    elif isinstance(value, dict):
        for k, v in value.items():
            _list_types(v, _field_schema(s, k), _child(path, k), errs)


# ----------------------------------------------------------------------------- CEL
class _ShortCircuit(celpy.evaluation.Evaluator):
    """cel-python's interpreter with ``||`` and ``&&`` that skip the right side when the left one
    decides (true || x, false && x), as cel-go does. The results are CEL's in every case (an error
    on the left is still absorbed by a deciding right side); only the work differs: cel-python
    evaluates both sides, so each rule ``!has(self.trial.task) || self.trial.task != 'digits' ||
    self.parameters.all(...)`` walked every parameter of every job (tests/k8s/test_fuzz.py)."""

    def sub_evaluator(self, ast: Any) -> _ShortCircuit:
        return _ShortCircuit(ast, activation=self.activation)

    def _logical(self, tree: Any, name: str, decides: bool) -> Any:
        if len(tree.children) != 2:
            return getattr(super(), name)(tree)
        left = self.visit(tree.children[0])
        if isinstance(left, celtypes.BoolType) and bool(left) is decides:
            return celtypes.BoolType(decides)
        right = self.visit(tree.children[1])
        try:
            return self.activation.resolve_function("_||_" if decides else "_&&_")(left, right)
        except TypeError as ex:
            return celpy.CELEvalError(f"found no matching overload for {name} ({type(left)}, {type(right)})", ex)

    def conditionalor(self, tree: Any) -> Any:
        return self._logical(tree, "conditionalor", True)

    def conditionaland(self, tree: Any) -> Any:
        return self._logical(tree, "conditionaland", False)


class _Runner(celpy.InterpretedRunner):
    def evaluate(self, context: Any) -> Any:
        return _ShortCircuit(ast=self.ast, activation=self.new_activation()).evaluate(context)


_ENV: Final = celpy.Environment(runner_class=_Runner)

#: apimachinery's resource.Quantity grammar: <signedNumber><suffix>, suffix binary SI (Ki..Ei),
#: decimal SI (n u m "" k M G T P E) or a decimal exponent (e3, E-2).
_QUANTITY: Final = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_SUFFIX: Final = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


class Quantity:
    """A value of Kubernetes CEL's quantity library (k8s.io/apiserver/pkg/cel/library/quantity.go)."""

    def __init__(self, value: Decimal):
        self.value = value


def _parse_quantity(text: Any) -> Decimal | None:
    m = _QUANTITY.match(str(text)) if isinstance(text, str) else None
    if m is None:
        return None
    suffix = m.group(2) or ""
    try:
        scale = Decimal(10) ** int(suffix[1:]) if suffix[:1] in ("e", "E") else _SUFFIX[suffix]
        return Decimal(m.group(1)) * scale
    except (InvalidOperation, ValueError):
        return None


def _quantity(text: Any) -> Any:
    value = _parse_quantity(text)
    if value is None:
        return celpy.CELEvalError(f"invalid quantity {str(text)!r}")
    return Quantity(value)


def _operand(q: Any) -> Decimal:
    return q.value if isinstance(q, Quantity) else Decimal(int(q))


_QUANTITY_FUNCTIONS: Final = {
    "quantity": _quantity,
    "isQuantity": lambda text: celtypes.BoolType(_parse_quantity(text) is not None),
    "compareTo": lambda a, b: celtypes.IntType((a.value > b.value) - (a.value < b.value)),
    "isLessThan": lambda a, b: celtypes.BoolType(a.value < b.value),
    "isGreaterThan": lambda a, b: celtypes.BoolType(a.value > b.value),
    "sign": lambda a: celtypes.IntType((a.value > 0) - (a.value < 0)),
    "isInteger": lambda a: celtypes.BoolType(a.value == a.value.to_integral_value()),
    "asInteger": lambda a: celtypes.IntType(int(a.value)),
    "asApproximateFloat": lambda a: celtypes.DoubleType(float(a.value)),
    "add": lambda a, b: Quantity(a.value + _operand(b)),
    "sub": lambda a, b: Quantity(a.value - _operand(b)),
}


@cache
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule), functions=_QUANTITY_FUNCTIONS)


class _CelSet(celtypes.ListType):
    """A list of ``x-kubernetes-list-type: set`` as the API server gives it to CEL (unstructuredSetList):
    equal to another set with the same items in any order (items compared as Go compares decoded
    JSON: 1, 1.0 and true differ). A parameter's ``self == oldSelf`` thus admits reordered choices."""

    def __init__(self, items: list[Any], raw: list[Any]):
        super().__init__(items)
        self.identities = frozenset(json.dumps(v, sort_keys=True) for v in raw)

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, _CelSet):
            return len(self) == len(other) and other.identities <= self.identities
        return super().__eq__(other)

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other) if isinstance(other, _CelSet) else super().__ne__(other)


def _to_cel(value: Any, s: dict[str, Any] | None) -> Any:
    """The CEL value of a node, typed by its schema as the API server does (UnstructuredToVal)."""
    if value is None:
        return None
    t = (s or {}).get("type")
    if t == "number":
        return celtypes.DoubleType(float(value))
    if t == "integer":
        return celtypes.IntType(int(value))
    if t == "string":
        return celtypes.StringType(value)
    if t == "boolean":
        return celtypes.BoolType(value)
    if t == "array" and isinstance(value, list):
        array = s or {}
        items = [_to_cel(v, array.get("items")) for v in value]
        return _CelSet(items, value) if array.get("x-kubernetes-list-type") == "set" else celtypes.ListType(items)
    if t == "object" and isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(k): _to_cel(v, _field_schema(s, k)) for k, v in value.items()})
    return celpy.json_to_cel(value)


#: (rule, schema node, the value as JSON) -> result. cel-python interprets a rule in ~4 ms (its
#: CompiledRunner fails on these rules in 0.5); the harness reviews every status update of an
#: unchanged spec, so remembering results keeps that cheap.
_RESULTS: dict[tuple[str, int, str], bool | str] = {}


_MISSING: Final = object()
_OLD_SELF: Final = re.compile(r"\boldSelf\b")


class _Bound:
    """A node's value as the rules see it, converted once for all the node's rules (a spec-level
    rule binds the whole spec, and there are dozens of them)."""

    def __init__(self, value: Any, s: dict[str, Any]):
        self.value, self.s = value, s
        self.key = json.dumps(value, sort_keys=True, default=str)
        self._cel: Any = _MISSING

    @property
    def cel(self) -> Any:
        if self._cel is _MISSING:
            self._cel = _to_cel(self.value, self.s)
        return self._cel


def _evaluate(rule: str, node: _Bound, old: Any = _MISSING) -> bool | str:
    """True/False, or the evaluation error's text."""
    transition = old is not _MISSING
    key = (rule, id(node.s), node.key, json.dumps(old, sort_keys=True, default=str) if transition else None)
    if key not in _RESULTS:
        try:
            bindings = {"self": node.cel}
            if transition:
                bindings["oldSelf"] = _to_cel(old, node.s)
            result = _program(rule).evaluate(bindings)
        except celpy.CELEvalError as err:
            result = err
        if len(_RESULTS) > 20_000:
            _RESULTS.clear()
        _RESULTS[key] = str(result.args[0]) if isinstance(result, celpy.CELEvalError) else bool(result)
    return _RESULTS[key]


def _old_item(item: Any, old: Any, s: dict[str, Any]) -> Any:
    """The old item a new list item correlates with: only in list-type maps, by the map keys."""
    keys = s.get("x-kubernetes-list-map-keys")
    if s.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(old, list) or not isinstance(item, dict):
        return _MISSING
    for candidate in old:
        if isinstance(candidate, dict) and all(candidate.get(k) == item.get(k) for k in keys):
            return candidate
    return _MISSING


def _rules(value: Any, s: dict[str, Any] | None, path: str, errs: _Errors, old: Any = _MISSING) -> None:
    if s is None or value is None:
        return
    bound = _Bound(value, s) if s.get("x-kubernetes-validations") else None
    for rule in s.get("x-kubernetes-validations", []):
        assert bound is not None
        transition = bool(_OLD_SELF.search(rule["rule"]))
        if transition and (old is _MISSING or old is None):
            continue  # a create, or a field that is new: transition rules do not apply
        where = path
        if rule.get("fieldPath"):
            where = path + rule["fieldPath"] if path else rule["fieldPath"].lstrip(".")
        message = rule.get("message") or f"failed rule: {rule['rule']}"
        node_type = s.get("type", "")
        ok = _evaluate(rule["rule"], bound, old if transition else _MISSING)
        if isinstance(ok, str):
            errs.invalid(where, node_type, f"{ok} evaluating rule: {message}")
        elif not ok:
            reason = rule.get("reason", "FieldValueInvalid")
            if reason == "FieldValueRequired":
                errs.add("CEL", where, f"Required value: {message}")
            elif reason == "FieldValueForbidden":
                errs.add("CEL", where, f"Forbidden: {message}")
            elif reason == "FieldValueDuplicate":
                errs.add("CEL", where, f"Duplicate value: {_fmt(node_type)}")
            else:
                errs.invalid(where, node_type, message, "CEL")
    if isinstance(value, dict):
        props = s.get("properties", {})
        extra = s.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        for k, v in value.items():
            if k in props:
                _rules(v, props[k], _child(path, k), errs, old_map.get(k, _MISSING))
            elif isinstance(extra, dict):
                _rules(v, extra, f"{path}[{k}]", errs, old_map.get(k, _MISSING))  # map values: fldPath.Key(k)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _rules(item, s.get("items"), f"{path}[{i}]", errs, _old_item(item, old, s))


def validate_value(value: Any, s: dict[str, Any], path: str = "") -> list[str]:
    """Schema, list-type and CEL problems of a value against one schema node (e.g. a default)."""
    errs = _Errors()
    _validate(value, s, path, errs)
    _list_types(value, s, path, errs)
    if not errs.blocking:
        _rules(value, s, path, errs)
    return errs.messages


# ----------------------------------------------------------------------------- admission
def admit(obj: Any, *, strict: bool = False, old: Any = None, path: Path = CRD_FILE) -> tuple[Any, list[str]]:
    """Return (the object as the API server would store it, its problems); see the module doc.
    ``old``: the stored object on an update (binds ``oldSelf`` for transition rules)."""
    errs = _Errors()
    if not isinstance(obj, dict):
        errs.add("TypeInvalid", "", f"Invalid value: {_fmt(_type_name(obj))}: the object must be a mapping")
        return obj, errs.messages
    out = _decode(obj)
    s = _schema(path)
    kind = _load(path)["spec"]["names"]["kind"]
    if out.get("apiVersion") != api_version(path):
        errs.invalid("apiVersion", out.get("apiVersion"), f"must be {api_version(path)}")
    if out.get("kind") != kind:
        errs.invalid("kind", out.get("kind"), f"must be {kind}")
    meta = out.get("metadata")
    if not isinstance(meta, dict) or not (meta.get("name") or meta.get("generateName")):
        errs.add("Required", "metadata.name", "Required value: name or generateName is required")

    unknown: list[str] = []
    spec_and_status = {k: v for k, v in out.items() if k not in ("apiVersion", "kind", "metadata")}
    _prune(
        spec_and_status,
        {**s, "properties": {k: v for k, v in s["properties"].items() if k not in ("apiVersion", "kind", "metadata")}},
        "",
        unknown,
    )
    out = {**{k: out[k] for k in ("apiVersion", "kind", "metadata") if k in out}, **spec_and_status}
    if strict:
        for field in unknown:
            errs.add("Unknown", field, f'unknown field "{field}"')
    _prune_nulls(out, s)
    _default(out, s)
    _validate(out, s, "", errs)
    _list_types(out, s, "", errs)
    if isinstance(old, dict):
        _ratchet(errs, out, old)
    if errs.blocking:
        errs.add(
            "Invalid",
            "",
            'Invalid value: "null": some validation rules were not checked because the '
            "object was invalid; correct the existing errors to complete validation",
        )
    else:
        _rules(out, s, "", errs, old if isinstance(old, dict) else _MISSING)
        if isinstance(old, dict):
            _ratchet(errs, out, old)
    return out, errs.messages


def _ratchet(errs: _Errors, new: dict[str, Any], old: dict[str, Any]) -> None:
    """CRD validation ratcheting (GA in 1.33): on an update, an error at a field whose value is the
    same in the stored object is dropped, so an object admitted under an older CRD can still be
    updated (a status write, a label) without first being made valid. Approximation: the value
    compared is the one at the error's path (the API server compares the node the error belongs
    to, for a CEL rule the node that declares it)."""
    kept = []
    for kind, message in errs.items:
        path = message.split(": ", 1)[0]
        here, there = _at(new, path), _at(old, path)
        if here is _MISSING or there is _MISSING or here != there:
            kept.append((kind, message))
    errs.items = kept


def _at(obj: Any, path: str) -> Any:
    """The value at a message's path (``spec.parameters[2].low``; map keys may hold dots), or _MISSING."""
    if path in ("", "<nil>"):
        return obj
    node, parts = obj, path.replace("[", ".[").split(".")
    i = 0
    while i < len(parts):
        part = parts[i]
        if part.startswith("[") and part.endswith("]") and isinstance(node, list):
            index = part[1:-1]
            if not index.isdigit() or int(index) >= len(node):
                return _MISSING
            node, i = node[int(index)], i + 1
            continue
        if not isinstance(node, dict):
            return _MISSING
        for j in range(len(parts), i, -1):  # the longest key first: "nvidia.com/gpu"
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            return _MISSING
    return node


def review(obj: Any, *, strict: bool = False, old: Any = None, path: Path = CRD_FILE) -> list[str]:
    """The API server's objections to creating (``old`` None) or updating ``obj`` (empty: admitted)."""
    return admit(obj, strict=strict, old=old, path=path)[1]

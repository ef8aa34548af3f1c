"""The Kubernetes 1.33 PodTemplateSpec schema, vendored as a structural (CRD-style) schema.

``spec.trial.podTemplate`` is checked against it twice: by :func:`openautoglm.podtemplate.problems`
(``openautoglm validate``, the operator) and by the API server through the CRD, which embeds it
(:mod:`openautoglm.crd`). Its source is the JSON schema that ``kubernetes-validate`` bundles for
1.33 (``v1.33.0-local-strict``), converted once and committed as ``podtemplatespec-v1.33.json``:

    python -m openautoglm.podschema           # rewrite it from kubernetes-validate
    python -m openautoglm.podschema --check   # exit 1 when it differs (tests/k8s/test_crd.py too)

Why vendored: kubernetes-validate carries the schemas of 13 Kubernetes versions (108 MB) and is a
dev dependency; the operator image and ``pip install openautoglm-tune`` need this one schema only
(~100 KB). The conversion (as controller-gen does for embedded pod specs):

* ``$ref`` inlined, descriptions and Kubernetes' client hints (patch strategy, map type, unions)
  dropped, ``type: [X, "null"]`` -> ``X``, ``additionalProperties: false`` -> nothing (a structural
  schema prunes, or with strict field validation rejects, undeclared fields);
* IntOrString and Quantity -> ``x-kubernetes-int-or-string`` (Quantity strings keep their grammar);
* list-map keys that Kubernetes defaults in Go get that default (a port's ``protocol: TCP``), as a
  CRD needs every map key required or defaulted;
* the template's ``metadata`` keeps only ``labels`` and ``annotations`` (the rest is the operator's);
  ``spec.containers`` is not required (the operator brings the ``worker`` container);
* what a trial pod can never use keeps its name but loses its schema (an object with no fields):
  volume sources the restricted Pod Security Standard forbids, and ``ephemeralContainers`` (not
  settable on create). Rules (CEL in the CRD, :mod:`openautoglm.podtemplate` in the model) reject
  them with a message; the schema stays small.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

KUBERNETES_VERSION: Final = "1.33"
SCHEMA_FILE: Final = Path(__file__).with_name(f"podtemplatespec-v{KUBERNETES_VERSION}.json")
_SOURCE_DIR: Final = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
_ROOT: Final = "io.k8s.api.core.v1.PodTemplateSpec"
_INT_OR_STRING: Final = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
}
#: apimachinery's quantity grammar (resource.Quantity's serialization format).
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_KEPT: Final = (
    "type",
    "format",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
)
#: Go defaults of list-map keys (k8s.io/kubernetes pkg/apis/core/v1/defaults.go); other string keys
#: default to Go's zero value "", as controller-gen writes them (imagePullSecrets[].name).
_KEY_DEFAULTS: Final = {"protocol": "TCP"}
#: Volume sources a trial pod may use: the restricted Pod Security Standard's list.
ALLOWED_VOLUME_SOURCES: Final = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)


def _convert(node: dict[str, Any], defs: dict[str, Any], ref: str | None = None) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _convert(defs[name], defs, name)
    if ref in _INT_OR_STRING:
        out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
        if ref.endswith("Quantity"):
            out["pattern"] = QUANTITY_PATTERN
        return out
    out = {}
    for key in _KEPT:
        if key not in node:
            continue
        value = node[key]
        if key == "type":
            kinds = [value] if isinstance(value, str) else [t for t in value if t != "null"]
            out["type"] = kinds[0]
        elif key == "properties":
            out["properties"] = {k: _convert(v, defs) for k, v in value.items()}
        elif key in ("additionalProperties", "items"):
            if isinstance(value, dict):
                out[key] = _convert(value, defs)
        else:
            out[key] = value
    if out.get("x-kubernetes-list-type") == "map":
        item = out["items"]
        for key in out["x-kubernetes-list-map-keys"]:
            prop = item["properties"][key]
            if key not in item.get("required", []) and prop.get("type") == "string":
                prop["default"] = _KEY_DEFAULTS.get(key, "")
    return out


def _opaque(node: dict[str, Any]) -> dict[str, Any]:
    """Keep the field, drop what it may hold: its presence is rejected by a rule."""
    if node.get("type") == "array":
        return {"type": "array", "items": {"type": "object"}}
    return {"type": "object"}


def derive(defs: dict[str, Any]) -> dict[str, Any]:
    """The vendored schema from kubernetes-validate's ``$defs`` (see the module docstring)."""
    schema = _convert(defs[_ROOT], defs)
    meta = schema["properties"]["metadata"]["properties"]
    schema["properties"]["metadata"]["properties"] = {k: meta[k] for k in ("labels", "annotations")}
    spec = schema["properties"]["spec"]
    spec["required"] = [r for r in spec.get("required", []) if r != "containers"]
    if not spec["required"]:
        del spec["required"]
    spec["properties"]["ephemeralContainers"] = _opaque(spec["properties"]["ephemeralContainers"])
    volume = spec["properties"]["volumes"]["items"]["properties"]
    for name in volume:
        if name != "name" and name not in ALLOWED_VOLUME_SOURCES:
            volume[name] = _opaque(volume[name])
    return schema


def load_source() -> dict[str, Any]:
    """kubernetes-validate's definitions for 1.33 (a dev dependency)."""
    from importlib import resources

    path = resources.files("kubernetes_validate").joinpath(f"{_SOURCE_DIR}/_definitions.json")
    return json.loads(path.read_text())["$defs"]


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1) + "\n"


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def schema() -> dict[str, Any]:
    """The vendored structural schema of a PodTemplateSpec (a fresh copy)."""
    return json.loads(json.dumps(_schema()))


def shared_schema() -> dict[str, Any]:
    """The same, shared: callers must not modify it (the model walks it for every job)."""
    return _schema()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m openautoglm.podschema", description=__doc__.splitlines()[0])
    p.add_argument(
        "--check", action="store_true", help="exit 1 if the vendored file differs from kubernetes-validate's"
    )
    args = p.parse_args(argv)
    text = render(derive(load_source()))
    current = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    if args.check:
        if current != text:
            sys.stderr.writelines(
                difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(SCHEMA_FILE), "derived", n=2)
            )
            print(f"\n{SCHEMA_FILE} is out of date: run `python -m openautoglm.podschema`", file=sys.stderr)
            return 1
        print(f"{SCHEMA_FILE} is up to date")
        return 0
    SCHEMA_FILE.write_text(text)
    print(f"wrote {SCHEMA_FILE} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The TuningJob CustomResourceDefinition, derived from the pydantic model in ``spec.py``.

``python -m openautoglm.crd`` writes ``crds/openautoglm.io_tuningjobs.yaml``; ``--check`` exits 1
when the committed file differs from what the model gives (tests/k8s/test_crd.py runs it too),
so the model and the CRD cannot drift apart.

The parts, each in its module:

* :mod:`~openautoglm.crd.schema`: the structural schema, converted from the model's JSON schema,
  completed with what spec.py says in code (regexes, registries as enums, unique names and values
  as list types) and with the bounds that keep the rules' cost in budget; ``spec.trial.podTemplate``
  gets the Kubernetes PodTemplateSpec schema vendored in ``openautoglm/podtemplatespec-v1.33.json``;
* :mod:`~openautoglm.crd.rules`: the CEL rules that mirror the model validators and the pod
  template checks;
* :mod:`~openautoglm.crd.definition`: the CustomResourceDefinition object around them, and its YAML;
* :mod:`~openautoglm.crd.cli`: the command line.
"""

from openautoglm.crd.cli import main
from openautoglm.crd.definition import (
    CATEGORIES,
    CRD_FILE,
    CRD_NAME,
    SHORT_NAMES,
    SINGULAR,
    build_crd,
    open_api_schema,
    render,
)
from openautoglm.crd.rules import RULES, pod_template_rules
from openautoglm.crd.schema import (
    CRD_ONLY_BOUNDS,
    POD_TEMPLATE,
    extras,
    pod_template_schema,
    spec_schema,
    status_schema,
)

__all__ = [
    "CATEGORIES",
    "CRD_FILE",
    "CRD_NAME",
    "CRD_ONLY_BOUNDS",
    "POD_TEMPLATE",
    "RULES",
    "SHORT_NAMES",
    "SINGULAR",
    "build_crd",
    "extras",
    "main",
    "open_api_schema",
    "pod_template_rules",
    "pod_template_schema",
    "render",
    "spec_schema",
    "status_schema",
]

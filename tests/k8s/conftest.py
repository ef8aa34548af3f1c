"""The `cluster` fixture: an emulated cluster serving the project's CRDs (see cluster.py)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: The emulated cluster (API server, admission, kubelet, DNS, volumes) lives apart from the tests.
HARNESS = HERE / "harness"
if str(HARNESS) not in sys.path:
    sys.path.insert(0, str(HARNESS))

from cluster import Cluster  # noqa: E402


def project_admission() -> tuple[
    Callable[[dict[str, Any]], list[str]] | None, Callable[[dict[str, Any]], dict[str, Any]] | None
]:
    """`review` and `apply_defaults` from tests/k8s/harness/admission.py, if that module exists yet."""
    if not (HARNESS / "admission.py").exists():
        return None, None
    module = importlib.import_module("admission")
    return getattr(module, "review", None), getattr(module, "apply_defaults", None)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A running Cluster with every CRD in crds/*.yaml and the project's admission, if present."""
    review, defaults = project_admission()
    crds = sorted((ROOT / "crds").glob("*.yaml"))
    with Cluster(crd_paths=crds, admission=review, defaulter=defaults, workdir=tmp_path / "cluster") as c:
        yield c

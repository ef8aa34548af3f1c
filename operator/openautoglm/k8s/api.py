"""The one wrapper through which the operator writes to the API server.

Every write is idempotent: creating what exists (409) or deleting what is gone (404)
is success, so a reconcile pass can be repeated after any crash.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from openautoglm.k8s import telemetry
from openautoglm.spec import GROUP, PLURAL, VERSION

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)


def _counted(fn: F) -> F:
    """Count the call's failures (openautoglm_api_errors_total) by method and HTTP status; an
    outcome the method treats as success (a 409 on create, a 404 on delete) is not one."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            telemetry.api_error(fn.__name__, e.status)
            raise
        except (urllib3.exceptions.HTTPError, OSError):
            telemetry.api_error(fn.__name__, None)  # no response: connection refused, reset, timeout
            raise

    return wrapper  # type: ignore[return-value]


class Api:
    def __init__(self, api_client: client.ApiClient):
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    # ------------------------------------------------------------------ pods & services
    @_counted
    def ensure_pod(self, body: dict[str, Any]) -> None:
        _ignore(409, self.core.create_namespaced_pod, body["metadata"]["namespace"], body)

    @_counted
    def ensure_service(self, body: dict[str, Any]) -> None:
        _ignore(409, self.core.create_namespaced_service, body["metadata"]["namespace"], body)

    @_counted
    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        opts = client.V1DeleteOptions(grace_period_seconds=grace_seconds, propagation_policy="Background")
        _ignore(404, self.core.delete_namespaced_pod, name, namespace, body=opts)

    @_counted
    def delete_service(self, namespace: str, name: str) -> None:
        _ignore(404, self.core.delete_namespaced_service, name, namespace)

    @_counted
    def list_pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        items = self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        import json

        pods = json.loads(items.data)["items"]
        # Filter again here: the selector is an optimisation, not something we rely on.
        return [p for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]

    @_counted
    def list_services(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        import json

        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        raw = self.core.list_namespaced_service(namespace, label_selector=selector, _preload_content=False)
        items = json.loads(raw.data)["items"]
        return [s for s in items if all((s["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]

    # ------------------------------------------------------------------ tuning jobs
    @_counted
    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})

    @_counted
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    @_counted
    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        secret = self.core.read_namespaced_secret(name, namespace)
        data = (secret.data or {}).get(key)
        if data is None:
            raise KeyError(f"secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data).decode()


def _ignore(status: int, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ApiException as e:
        if e.status != status:
            raise
        return None

"""The one wrapper through which the operator writes to (and reads from) the API server.

Every write is idempotent: creating what exists (409 AlreadyExists) or deleting what is gone
(404) is success, so a reconcile pass can be repeated after any crash. That is also what makes
retrying safe: a call the API server may have carried out before it failed (a 500 after the
write, a connection dropped before the answer) is simply made again, and its second attempt
finds the pod created (409, success) or deleted (404, success), never a duplicate.

Transient failures are retried here, with exponential backoff and jitter, a few times within a
deadline (:class:`RetryPolicy`): 429 (honouring Retry-After), 500/502/503/504, 409 Conflict (the
object changed under us; our writes carry no resourceVersion, so the next attempt is just as
valid) and no response at all (connection refused or reset, timeouts). Anything else (403, 404
on a read, 422 Invalid) raises at once. What still fails after the retries raises
:class:`ApiUnavailable`; the controller then ends the pass early and the next one starts over.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import functools
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from openautoglm.k8s import telemetry
from openautoglm.spec import GROUP, PLURAL, VERSION

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)

#: Seconds (connect, read) a Secret read may take before it counts as failed (and is retried).
SECRET_READ_TIMEOUT: Final = (5.0, 10.0)
#: HTTP statuses worth another attempt: throttled, or the server (or a proxy before it) failed.
RETRIABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
#: What the kubernetes client raises when a call fails: an answer other than 2xx, or no answer
#: (urllib3's errors, OSError); :func:`is_transient` tells which are worth another attempt.
_CALL_ERRORS: Final = (ApiException, urllib3.exceptions.HTTPError, OSError)


class ApiUnavailable(Exception):
    """The API server did not serve a call, retries spent (the last failure is the cause).

    Distinct from the errors that are raised at once (403, 422, ...): this one says nothing about
    the request, only that the server, or the way to it, was in trouble for a while."""

    def __init__(self, operation: str, attempts: int, code: int | None):
        super().__init__(
            f"{operation}: the API server failed {attempts} attempt(s), the last with {code or 'no answer'}"
        )
        self.operation, self.attempts, self.code = operation, attempts, code


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How a failed call is retried: at most ``attempts`` calls, the n-th retry after a delay
    drawn from [d/2, d] with d = ``base_seconds`` * 2**(n-1) capped at ``cap_seconds`` (half
    jitter: passes of many jobs that failed together do not come back in lockstep), never sooner
    than the server's Retry-After, and no retry that would end after ``deadline_seconds``."""

    attempts: int = 5
    base_seconds: float = 0.25
    cap_seconds: float = 4.0
    deadline_seconds: float = 20.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (retry - 1))
        return rng.uniform(ceiling / 2, ceiling)


DEFAULT_RETRY: Final = RetryPolicy()


def _status_reason(err: ApiException) -> str | None:
    """The `reason` of the Status object the API server answered with (AlreadyExists, Conflict)."""
    try:
        return json.loads(err.body).get("reason") if err.body else None
    except (ValueError, AttributeError):
        return None


def is_transient(err: BaseException) -> bool:
    """Whether another attempt may succeed where this one failed."""
    if isinstance(err, ApiException):
        if err.status == 409:  # a Conflict may clear; AlreadyExists never does (create handles it)
            return _status_reason(err) != "AlreadyExists"
        # status 0: the client raised it without a response (e.g. a protocol error)
        return err.status in RETRIABLE_STATUSES or not err.status
    return isinstance(err, (urllib3.exceptions.HTTPError, OSError))


def retry_after(err: BaseException) -> float | None:
    """Seconds the server asked us to wait: the Retry-After header (seconds or an HTTP date), else
    the Status's details.retryAfterSeconds (what the API server's own throttling also sets)."""
    if not isinstance(err, ApiException):
        return None
    header = (err.headers or {}).get("Retry-After")  # urllib3's headers: any letter case
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(header).timestamp() - time.time())
            except (TypeError, ValueError):
                pass  # unreadable: back off as for any other failure
    try:
        seconds = (json.loads(err.body or "{}").get("details") or {}).get("retryAfterSeconds")
    except (ValueError, AttributeError):
        seconds = None
    return float(seconds) if isinstance(seconds, (int, float)) else None


def _resilient(fn: Callable[Concatenate[Api, P], R]) -> Callable[Concatenate[Api, P], R]:
    """Retry the call's transient failures (see :class:`RetryPolicy`), counting each retried
    attempt (openautoglm_api_retries_total) and each call that failed in the end, retries spent
    (openautoglm_api_errors_total), by method and HTTP status. An outcome the method treats as
    success (a 409 AlreadyExists on create, a 404 on delete) is neither."""

    @functools.wraps(fn)
    def wrapper(self: Api, *args: P.args, **kwargs: P.kwargs) -> R:
        policy = self.retry
        deadline = time.monotonic() + policy.deadline_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(self, *args, **kwargs)
            except _CALL_ERRORS as err:
                code = err.status if isinstance(err, ApiException) else None
                if not is_transient(err):
                    telemetry.api_error(fn.__name__, code)
                    raise
                delay = max(policy.backoff(attempt, self.rng), retry_after(err) or 0.0)
                if attempt >= policy.attempts or time.monotonic() + delay > deadline:
                    telemetry.api_error(fn.__name__, code)
                    raise ApiUnavailable(fn.__name__, attempt, code) from err
                telemetry.api_retry(fn.__name__, code)
                log.info(
                    "%s failed (%s), attempt %d of %d; retrying in %.2f s",
                    fn.__name__,
                    code or type(err).__name__,
                    attempt,
                    policy.attempts,
                    delay,
                )
                time.sleep(delay)

    return wrapper


class Api:
    def __init__(self, api_client: client.ApiClient, retry: RetryPolicy = DEFAULT_RETRY):
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.retry = retry
        self.rng = random.Random()  # jitter only; one per Api, shared by the pool's threads

    # ------------------------------------------------------------------ pods, services, policies
    # A create answers the object created, or None where one of that name exists: whose it is
    # the caller finds out with read_* (a name proves nothing; the owner's uid does). A delete
    # names the uid it means: a precondition the API server checks, so an object that took the
    # name meanwhile (someone else's) is never deleted for ours.
    @_resilient
    def ensure_pod(self, body: dict[str, Any]) -> dict[str, Any] | None:
        return _exists_ok(self.core.create_namespaced_pod, body["metadata"]["namespace"], body)

    @_resilient
    def ensure_service(self, body: dict[str, Any]) -> dict[str, Any] | None:
        return _exists_ok(self.core.create_namespaced_service, body["metadata"]["namespace"], body)

    @_resilient
    def ensure_network_policy(self, body: dict[str, Any]) -> dict[str, Any] | None:
        return _exists_ok(self.networking.create_namespaced_network_policy, body["metadata"]["namespace"], body)

    @_resilient
    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _read(self.core.read_namespaced_pod, name, namespace)

    @_resilient
    def read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _read(self.core.read_namespaced_service, name, namespace)

    @_resilient
    def read_network_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _read(self.networking.read_namespaced_network_policy, name, namespace)

    @_resilient
    def delete_pod(self, namespace: str, name: str, uid: str, grace_seconds: int | None = None) -> None:
        opts = _delete_options(uid, grace_seconds)
        _gone_ok(self.core.delete_namespaced_pod, name, namespace, body=opts)

    @_resilient
    def delete_service(self, namespace: str, name: str, uid: str) -> None:
        _gone_ok(self.core.delete_namespaced_service, name, namespace, body=_delete_options(uid))

    @_resilient
    def delete_network_policy(self, namespace: str, name: str, uid: str) -> None:
        _gone_ok(self.networking.delete_namespaced_network_policy, name, namespace, body=_delete_options(uid))

    @_resilient
    def list_pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return _list(self.core.list_namespaced_pod, namespace, labels)

    @_resilient
    def list_services(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return _list(self.core.list_namespaced_service, namespace, labels)

    @_resilient
    def list_network_policies(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return _list(self.networking.list_namespaced_network_policy, namespace, labels)

    # ------------------------------------------------------------------ tuning jobs
    @_resilient
    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})

    @_resilient
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    @_resilient
    def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (UnicodeDecodeError if it is not text). The API server
        bounds a Secret to 1 MiB; the read has a deadline of its own, as every tenant's read."""
        secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=SECRET_READ_TIMEOUT)
        data = (secret.data or {}).get(key)
        if data is None:
            raise KeyError(f"secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data).decode()


def _exists_ok(fn, *args, **kwargs) -> dict[str, Any] | None:
    """Create, where what exists already is success: names are deterministic, so an existing
    object may be the one a crashed pass (or an attempt whose answer was lost) created; the
    caller reads it to see whose it is. Only AlreadyExists counts: a 409 Conflict created
    nothing and is retried. Returns the object created, None where the name was taken."""
    try:
        return json.loads(fn(*args, _preload_content=False, **kwargs).data)
    except ApiException as e:
        if e.status != 409 or _status_reason(e) not in ("AlreadyExists", None):
            raise
        return None


def _read(fn, *args, **kwargs) -> dict[str, Any] | None:
    try:
        return json.loads(fn(*args, _preload_content=False, **kwargs).data)
    except ApiException as e:
        if e.status != 404:
            raise
        return None


def _list(fn, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    items = json.loads(fn(namespace, label_selector=selector, _preload_content=False).data)["items"]
    # Filter again here: the selector is an optimisation, not something we rely on.
    return [o for o in items if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]


def _delete_options(uid: str, grace_seconds: int | None = None) -> client.V1DeleteOptions:
    return client.V1DeleteOptions(
        grace_period_seconds=grace_seconds,
        propagation_policy="Background",
        preconditions=client.V1Preconditions(uid=uid),
    )


def _gone_ok(fn, *args, **kwargs) -> None:
    """Delete, where 404 (already gone) and a failed uid precondition (the name now holds another
    object, so ours is gone) are success: neither clears on a retry. Any other 409 Conflict is
    retried as usual."""
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        if e.status != 404 and not precondition_failed(e):
            raise


def precondition_failed(err: ApiException) -> bool:
    """A 409 whose Status says a delete's precondition did not hold (apimachinery's storage:
    "Precondition failed: UID in precondition: ..., UID in object meta: ...")."""
    if err.status != 409:
        return False
    try:
        message = json.loads(err.body).get("message") or "" if err.body else ""
    except (ValueError, AttributeError):
        return False
    return "precondition failed" in str(message).lower()

"""The operator's API wrapper (k8s/api.py) against a real HTTP server that answers as a troubled
API server would: transient failures are retried with backoff (Retry-After honoured) and bounded,
an ambiguous create is not duplicated, and what no retry can fix raises at once."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from openautoglm.k8s import api as api_mod

FAST = api_mod.RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05, deadline_seconds=10)
PODS = "/api/v1/namespaces/default/pods"
STATUS = "/apis/openautoglm.io/v1alpha1/namespaces/default/tuningjobs/job/status"


def _status(code: int, reason: str, **details: object) -> dict:
    out = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}
    return {**out, "details": details} if details else out


class ScriptedServer(http.server.ThreadingHTTPServer):
    """Answers each request with the next scripted (code, headers, body); 200 {} when none is left.
    Every request is recorded as (monotonic time, method, path)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[tuple[int, dict[str, str], dict]] = []
        self.requests: list[tuple[float, str, str]] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ScriptedServer

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((time.monotonic(), self.command, self.path.split("?")[0]))
        code, headers, body = self.server.script.pop(0) if self.server.script else (200, {}, {"items": []})
        data = json.dumps(body).encode()
        self.send_response(code)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _api(srv: ScriptedServer, retry: api_mod.RetryPolicy = FAST) -> api_mod.Api:
    config = client.Configuration(host=f"http://127.0.0.1:{srv.server_address[1]}")
    config.retries = 0  # urllib3's own retries off: every attempt is ours
    return api_mod.Api(client.ApiClient(config), retry=retry)


def _count(name: str, operation: str, code: int) -> float:
    return REGISTRY.get_sample_value(name, {"operation": operation, "code": str(code)}) or 0.0


POD = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}


def test_throttled_and_failing_calls_are_retried_honouring_retry_after(server):
    """429 (Retry-After: 1), then 500, then created: one call, three attempts, the second a full
    second after the first (the server's wish, not our 10 ms backoff); the retries are counted,
    the call is not an error."""
    server.script = [
        (429, {"Retry-After": "1"}, _status(429, "TooManyRequests", retryAfterSeconds=1)),
        (500, {}, _status(500, "InternalError")),
        (201, {}, POD),
    ]
    retries = {c: _count("openautoglm_api_retries_total", "ensure_pod", c) for c in (429, 500)}
    errors = _count("openautoglm_api_errors_total", "ensure_pod", 500)
    _api(server).ensure_pod(POD)
    times = [t for t, method, path in server.requests if (method, path) == ("POST", PODS)]
    assert len(times) == 3
    assert 1.0 <= times[1] - times[0] < 2.0, "Retry-After: 1 not honoured"
    assert times[2] - times[1] < 0.5, "a 500 waits our backoff, not a second"
    for code in (429, 500):
        assert _count("openautoglm_api_retries_total", "ensure_pod", code) == retries[code] + 1
    assert _count("openautoglm_api_errors_total", "ensure_pod", 500) == errors


def test_a_create_that_happened_before_its_500_is_not_duplicated(server):
    """The server created the pod and then answered 500 (the ambiguous failure): the retry gets
    409 AlreadyExists, which is success. A 409 Conflict created nothing: it is retried."""
    server.script = [
        (500, {}, _status(500, "InternalError")),
        (409, {}, _status(409, "AlreadyExists")),
        (409, {}, _status(409, "Conflict")),
        (201, {}, POD),
    ]
    api = _api(server)
    api.ensure_pod(POD)
    assert [m for _, m, _ in server.requests] == ["POST", "POST"]
    api.ensure_pod(POD)
    assert [m for _, m, _ in server.requests] == ["POST"] * 4


def test_what_no_retry_can_fix_raises_at_once(server):
    """422 Invalid and 403 Forbidden are answers about the request: one attempt each, raised as
    they are and counted as errors, never as retries."""
    api = _api(server)
    for code, reason in ((422, "Invalid"), (403, "Forbidden")):
        server.script = [(code, {}, _status(code, reason))]
        before = _count("openautoglm_api_errors_total", "patch_status", code)
        server.requests.clear()
        with pytest.raises(ApiException) as err:
            api.patch_status("default", "job", {"phase": "Running"})
        assert err.value.status == code and len(server.requests) == 1
        assert _count("openautoglm_api_errors_total", "patch_status", code) == before + 1
        assert _count("openautoglm_api_retries_total", "patch_status", code) == 0


def test_retries_are_bounded_by_attempts_and_by_the_deadline(server):
    """A server that keeps failing: `attempts` tries, then ApiUnavailable (the last failure its
    cause), counted once as an error. A Retry-After beyond the deadline is not waited for."""
    server.script = [(503, {}, _status(503, "ServiceUnavailable"))] * 10
    before = _count("openautoglm_api_errors_total", "patch_status", 503)
    with pytest.raises(api_mod.ApiUnavailable) as err:
        _api(server).patch_status("default", "job", {"phase": "Running"})
    assert (err.value.attempts, err.value.code) == (FAST.attempts, 503)
    assert len(server.requests) == FAST.attempts and all(p == STATUS for _, _, p in server.requests)
    assert _count("openautoglm_api_errors_total", "patch_status", 503) == before + 1

    server.requests.clear()
    server.script = [(429, {"Retry-After": "30"}, _status(429, "TooManyRequests"))]
    started = time.monotonic()
    with pytest.raises(api_mod.ApiUnavailable):
        _api(server, api_mod.RetryPolicy(deadline_seconds=5)).list_pods("default", {"a": "b"})
    assert len(server.requests) == 1 and time.monotonic() - started < 2


def test_no_answer_at_all_is_retried(server):
    """Connection refused (nothing listens any more): retried like a 503, then ApiUnavailable."""
    api = _api(server)
    server.shutdown()
    server.server_close()
    before = _count("openautoglm_api_retries_total", "list_services", 0)
    with pytest.raises(api_mod.ApiUnavailable) as err:
        api.list_services("default", {"a": "b"})
    assert err.value.code is None and err.value.attempts == FAST.attempts
    assert _count("openautoglm_api_retries_total", "list_services", 0) == before + FAST.attempts - 1


def test_a_delete_names_its_uid_and_a_failed_precondition_is_not_retried(server):
    """Deletes carry the uid of the object meant (DeleteOptions.preconditions): the API server's
    answer that the name now holds another object (409 "Precondition failed") is success, as a
    404 is: ours is gone. A plain 409 Conflict on a delete is retried as any other."""
    precondition = _status(409, "Conflict")
    precondition["message"] = (
        'Operation cannot be fulfilled on pods "p": Precondition failed: UID in precondition: a, UID in object meta: b'
    )
    server.script = [(409, {}, precondition)]
    api = _api(server)
    api.delete_pod("default", "p", "a")
    assert [m for _, m, _ in server.requests] == ["DELETE"]
    server.script = [(409, {}, _status(409, "Conflict")), (200, {}, {})]
    api.delete_service("default", "s", "a")
    assert [m for _, m, _ in server.requests] == ["DELETE"] * 3


def test_a_create_answers_the_object_or_none_where_the_name_is_taken(server):
    server.script = [(201, {}, {**POD, "metadata": {**POD["metadata"], "uid": "u1"}})]
    api = _api(server)
    assert api.ensure_pod(POD)["metadata"]["uid"] == "u1"
    server.script = [(409, {}, _status(409, "AlreadyExists")), (404, {}, _status(404, "NotFound"))]
    assert api.ensure_pod(POD) is None
    assert api.read_pod("default", "p") is None

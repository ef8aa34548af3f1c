"""Leader election on a coordination.k8s.io/v1 Lease: of the operator's replicas one drives every
TuningJob, the others stand by, and one of them takes over within the lease time when it dies.

kopf's peering does not give this: a KopfPeering object pauses operators of lower priority while
a higher one lives, and peers of equal priority all freeze, "leaving the cluster unserved"
(https://docs.kopf.dev/en/latest/peering/); there is no lease and no hand-over time. What follows
is client-go's leaderelection (the one controller-runtime uses), in small:

- the leader renews the Lease every ``retry_seconds``; a standby polls it as often;
- a standby takes the Lease over once it has seen the same revision for ``lease_seconds`` on its
  own monotonic clock (client-go's observedTime: clocks skewed between nodes do not matter), or at
  once when the leader released it on shutdown;
- every write is a replace carrying the resourceVersion it read, so of two replicas racing for an
  expired Lease the API server lets exactly one win (409 Conflict for the other);
- a leader that has not renewed for ``renew_seconds`` (less than ``lease_seconds``), or finds the
  Lease in another replica's hands, exits the process at once: it must not drive a job that a
  standby may take over (controller-runtime exits the same way, "leader election lost").

The decision and the Lease bodies are pure functions (tests/unit/test_leader.py); ``Elector`` does
the I/O with the kubernetes client, on a thread of its own so that a busy event loop cannot delay
a renewal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import http.server
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

#: On a released Lease: the replica that released it (its holderIdentity is empty then), so that
#: the next leader can say whom it took over from.
RELEASED_BY: Final = "openautoglm.io/released-by"


class Action(enum.Enum):
    CREATE = "create"  # no Lease yet
    ACQUIRE = "acquire"  # released, or its holder stopped renewing: take it over
    RENEW = "renew"  # ours
    WAIT = "wait"  # another replica holds it and renews it


@dataclasses.dataclass(frozen=True)
class Sighting:
    """The Lease revision this replica saw last, and when it first saw it (time.monotonic())."""

    resource_version: str
    at: float


@dataclasses.dataclass(frozen=True)
class Decision:
    action: Action
    #: The replica holding the Lease as read ("" when released or absent).
    holder: str = ""
    #: WAIT: seconds until the holder's lease runs out as seen from here.
    wait_seconds: float = 0.0


def holder_of(lease: Mapping[str, Any] | None) -> str:
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""


def sight(lease: Mapping[str, Any], previous: Sighting | None, now: float) -> Sighting:
    """The sighting after reading ``lease`` at ``now``: the clock restarts only when it changed."""
    rv = str(lease["metadata"]["resourceVersion"])
    if previous is not None and previous.resource_version == rv:
        return previous
    return Sighting(rv, now)


def decide(
    lease: Mapping[str, Any] | None, identity: str, seen: Sighting | None, now: float, lease_seconds: float
) -> Decision:
    """What this replica does with the Lease it just read (``seen``: ``sight`` of that read)."""
    if lease is None:
        return Decision(Action.CREATE)
    holder = holder_of(lease)
    if holder == identity:
        return Decision(Action.RENEW, holder)
    if not holder:
        return Decision(Action.ACQUIRE)
    # The holder's own duration: replicas of two versions may disagree on it.
    duration = (lease.get("spec") or {}).get("leaseDurationSeconds") or lease_seconds
    expires = (seen.at if seen is not None else now) + duration
    if now >= expires:
        return Decision(Action.ACQUIRE, holder)
    return Decision(Action.WAIT, holder, expires - now)


def _micro_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # metav1.MicroTime


def build_lease(
    name: str,
    namespace: str,
    identity: str,
    lease_seconds: int,
    now: dt.datetime,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Lease held by ``identity``: created, renewed (``previous`` is ours) or taken over.
    It carries ``previous``'s resourceVersion, so a replace fails if anyone wrote in between."""
    spec = dict((previous or {}).get("spec") or {})
    renewing = previous is not None and spec.get("holderIdentity") == identity
    transitions = int(spec.get("leaseTransitions") or 0)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None:
        metadata["resourceVersion"] = previous["metadata"]["resourceVersion"]
        metadata["labels"] = (previous["metadata"].get("labels")) or {}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": lease_seconds,
            "acquireTime": spec.get("acquireTime") if renewing else _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions if renewing or previous is None else transitions + 1,
        },
    }


def build_released(lease: Mapping[str, Any], identity: str, now: dt.datetime) -> dict[str, Any]:
    """Our Lease handed back on shutdown: no holder, so that a standby takes it at its next poll
    instead of waiting the lease time out (client-go's ReleaseOnCancel)."""
    spec = {k: v for k, v in (lease.get("spec") or {}).items() if k != "holderIdentity"}
    metadata = {k: lease["metadata"][k] for k in ("name", "namespace", "resourceVersion")}
    metadata["annotations"] = {**(lease["metadata"].get("annotations") or {}), RELEASED_BY: identity}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {**spec, "leaseDurationSeconds": 1, "renewTime": _micro_time(now)},
    }


@dataclasses.dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    #: How long a standby waits, after the Lease last changed, before it takes it over.
    lease_seconds: int = 15
    #: How long the leader goes on without a successful renewal before it gives up (and exits).
    renew_seconds: float = 10.0
    #: How often the leader renews and a standby polls.
    retry_seconds: float = 2.0

    def __post_init__(self) -> None:
        # client-go's own checks: the leader must give up before a standby may take over.
        if not 0 < self.retry_seconds < self.renew_seconds < self.lease_seconds:
            raise ValueError(
                "leader election needs 0 < retry < renew deadline < lease duration, got "
                f"{self.retry_seconds} / {self.renew_seconds} / {self.lease_seconds} s"
            )


@dataclasses.dataclass(frozen=True)
class Leadership:
    """This replica leads: since when, and whom it took over from (what the job status shows)."""

    identity: str
    since: str
    previous: str = ""
    #: How the previous leader left: LeaseExpired (it stopped renewing: killed, hung, cut off) or
    #: LeaseReleased (it shut down and handed the Lease back).
    handover: str = ""

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"replica": self.identity, "leaderSince": self.since}
        if self.previous:
            out |= {"previousReplica": self.previous, "handover": self.handover}
        return out


_CURRENT: dict[str, Leadership] = {}


def current() -> Leadership | None:
    """This process's leadership, if it runs with leader election and has won it."""
    return _CURRENT.get("leader")


def new_identity() -> str:
    """The pod's name (a pod's hostname) and a random part: a restarted process is a new candidate
    and waits out its predecessor's lease like any other."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class Elector:
    """Wins the Lease (blocking), then renews it on a thread until released or lost."""

    def __init__(
        self,
        coordination: client.CoordinationV1Api,
        cfg: LeaseConfig,
        identity: str,
        *,
        on_lost: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.api = coordination
        self.cfg = cfg
        self.identity = identity
        self.on_lost = on_lost
        self.clock = clock
        self._seen: Sighting | None = None
        self._lease: dict[str, Any] | None = None  # the Lease as we last wrote it (ours)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        #: clock() when the round that last wrote the Lease for us began: no later than the API
        #: server's write, so no later than any standby's sighting of it.
        self._held_from = -float("inf")
        self._deadline = float("inf")  # of the round in progress: no request outlives it
        # One hung request must not use up the renew deadline.
        self._timeout = max(0.5, min(self.cfg.renew_seconds / 2, 5.0))

    # ---------------------------------------------------------------- one round
    def _request_timeout(self) -> float:
        return max(0.05, min(self._timeout, self._deadline - self.clock()))

    def _read(self) -> dict[str, Any] | None:
        try:
            resp = self.api.read_namespaced_lease(
                self.cfg.name, self.cfg.namespace, _preload_content=False, _request_timeout=self._request_timeout()
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return json.loads(resp.data)

    def _write(self, body: dict[str, Any], create: bool) -> dict[str, Any]:
        if create:
            resp = self.api.create_namespaced_lease(
                self.cfg.namespace, body, _preload_content=False, _request_timeout=self._request_timeout()
            )
        else:
            resp = self.api.replace_namespaced_lease(
                self.cfg.name,
                self.cfg.namespace,
                body,
                _preload_content=False,
                _request_timeout=self._request_timeout(),
            )
        return json.loads(resp.data)

    def try_acquire_or_renew(self, *, renew_only: bool = False, deadline: float = float("inf")) -> Decision:
        """Read the Lease, decide, write if it is ours to take or keep. Returns the decision
        (RENEW/ACQUIRE/CREATE: we hold it now); raises on API errors, 409 included.
        ``renew_only``: the leader's round, which never takes a Lease it finds not its own;
        ``deadline`` (clock()): when its requests time out at the latest."""
        began, self._deadline = self.clock(), deadline
        lease = self._read()
        now = self.clock()
        if lease is not None:
            self._seen = sight(lease, self._seen, now)
        decision = decide(lease, self.identity, self._seen, now, self.cfg.lease_seconds)
        if decision.action is Action.WAIT or (renew_only and decision.action is not Action.RENEW):
            return decision
        body = build_lease(
            self.cfg.name, self.cfg.namespace, self.identity, self.cfg.lease_seconds, dt.datetime.now(dt.UTC), lease
        )
        self._lease = self._write(body, create=decision.action is Action.CREATE)
        self._held_from = began
        if decision.action is not Action.RENEW:
            released_by = ((lease or {}).get("metadata", {}).get("annotations") or {}).get(RELEASED_BY, "")
            previous = decision.holder or released_by
            _CURRENT["leader"] = Leadership(
                self.identity,
                self._lease["spec"]["acquireTime"],
                previous,
                "LeaseExpired" if decision.holder else ("LeaseReleased" if previous else ""),
            )
        return decision

    # ---------------------------------------------------------------- the loops
    def acquire(self) -> Leadership:
        """Block until this replica holds the Lease (a standby's whole life)."""
        where = f"{self.cfg.namespace}/{self.cfg.name}"
        waiting_for = None
        while True:
            started = self.clock()
            try:
                decision = self.try_acquire_or_renew()
            # Any failure is one round lost: 409 (another replica won it), the API server down
            # (urllib3's errors are no OSError), a body that does not parse.
            except Exception as err:
                log.info("leader election: %s not taken this round: %s", where, _short(err))
                decision = Decision(Action.WAIT, wait_seconds=self.cfg.retry_seconds)
            if decision.action is not Action.WAIT:
                lead = current()
                assert lead is not None
                log.warning(
                    "leader election: %s leads (Lease %s)%s",
                    self.identity,
                    where,
                    f"; took over from {lead.previous} ({lead.handover})" if lead.previous else "",
                )
                return lead
            if decision.holder and decision.holder != waiting_for:
                waiting_for = decision.holder
                log.warning(
                    "leader election: %s stands by: Lease %s is held by %s", self.identity, where, decision.holder
                )
            pause = min(self.cfg.retry_seconds, max(decision.wait_seconds, 0.05))
            time.sleep(max(0.0, pause - (self.clock() - started)))

    def keep(self) -> None:
        """Renew on a thread until ``release`` (or until lost: then ``on_lost``)."""
        self._renewer = threading.Thread(target=self._renew_loop, name="leader-lease", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        """Renew every ``retry_seconds``; give up ``renew_seconds`` after the last renewal began,
        at the latest: every request ends by then, and a standby waits ``lease_seconds`` (more)
        from when it saw that renewal, which the API server wrote after it began."""
        last_error = "none"
        while True:
            deadline = self._held_from + self.cfg.renew_seconds
            if self._stop.wait(max(0.0, min(self.cfg.retry_seconds, deadline - self.clock()))):
                return
            if self.clock() >= deadline:
                self.on_lost(f"no renewal for {self.cfg.renew_seconds} s (last error: {last_error})")
                return
            try:
                decision = self.try_acquire_or_renew(renew_only=True, deadline=deadline)
            # Whatever fails, the deadline counts on: a renewer that died of an unexpected error
            # would let the Lease run out under a leader that goes on driving jobs.
            except Exception as err:
                last_error = _short(err)
                if not self._stop.is_set():
                    log.warning("leader election: renewal failed (%s); retrying", last_error)
                continue
            if decision.action is not Action.RENEW:
                # Another replica holds it, or it is gone: either way another replica may have
                # driven jobs meanwhile, so this one must stop at once.
                self.on_lost(f"the Lease is held by {decision.holder or 'nobody'}")
                return

    def release(self) -> None:
        """Stop renewing and hand the Lease back, so a standby takes over at its next poll. Call
        only once nothing of this replica drives a job any more."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(self.cfg.renew_seconds)
        _CURRENT.pop("leader", None)
        lease = self._lease
        if lease is None or holder_of(lease) != self.identity:
            return
        self._deadline = float("inf")
        try:
            self._write(build_released(lease, self.identity, dt.datetime.now(dt.UTC)), create=False)
            log.warning("leader election: %s released Lease %s/%s", self.identity, self.cfg.namespace, self.cfg.name)
        except Exception as err:  # e.g. 409: it expired and was taken; nothing to hand back
            log.warning("leader election: Lease not released (%s); it expires by itself", _short(err))


def _short(err: BaseException) -> str:
    if isinstance(err, ApiException):
        return f"HTTP {err.status} {err.reason}"
    return f"{type(err).__name__}: {err}"


@contextlib.contextmanager
def standby_health(port: int) -> Iterator[None]:
    """Answer /healthz while standing by: kopf's own endpoint starts only with kopf, and a standby
    the kubelet kills for failing its liveness probe would never be there to take over."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            ok = self.path.split("?")[0] == "/healthz"
            body = b'{"standby": true}' if ok else b""
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass  # probes every few seconds: not worth a log line each

    if not port:
        yield
        return
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Health)
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()  # the port is kopf's next

"""Joining Horovod over Gloo the way horovodrun does, without horovodrun, MPI or ssh.

horovodrun (``horovod/runner/gloo_run.py: launch_gloo``) starts a ``RendezvousServer``, builds
the host plan with ``get_host_assignments(parse_hosts(...))``, calls ``init(plan)`` and then
starts every worker with the ``HOROVOD_*`` variables. Here rank 0 plays the launcher's part
inside its own process, and the other ranks only need the variables. Two differences matter:

* ``RendezvousServer.start()`` binds a random port; a pod needs a fixed, advertised one, so we
  bind ``RendezvousHTTPServer`` ourselves on ``HOROVOD_GLOO_RENDEZVOUS_PORT``.
* horovodrun starts workers only after its server is up. Pods start in any order, and
  Horovod's C++ HTTP store gives up after a few quick retries by *aborting the process*
  (``std::terminate``, no Python exception). So before ``hvd.init()`` every rank waits in
  Python: ranks > 0 until the server answers and then check in under a scope of our own;
  rank 0 until all ranks have checked in. Gloo's own 30 s store timeout then only has to
  cover the moments between the check-in and ``hvd.init()``.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .environment import HorovodPlacement
from .errors import RendezvousError

if TYPE_CHECKING:
    from horovod.runner.http.http_server import RendezvousHTTPServer

log = logging.getLogger(__name__)

#: KV scope of our check-ins; Horovod's own scopes are "global", "local_*" and "cross_*".
CHECKIN_SCOPE = "openautoglm"
# Loopback-cheap: a coarser poll was up to 0.2 s of every multi-worker start-up, per side.
_POLL_SECONDS = 0.05


def host_plan(placement: HorovodPlacement) -> list[Any]:
    """The Horovod host plan: one host with one slot per worker, in rank order.

    Args:
        placement: this worker's placement; ``worker_hosts`` lists every rank's hostname.

    Returns:
        The ``SlotInfo`` list horovodrun would compute for ``-H h0:1,h1:1,...``.
    """
    from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts

    hosts = parse_hosts(",".join(f"{host}:1" for host in placement.worker_hosts))
    plan = get_host_assignments(hosts, placement.size)
    for slot in plan:
        if placement.worker_hosts[slot.rank] != slot.hostname:  # pragma: no cover (invariant)
            raise RendezvousError(f"host plan puts rank {slot.rank} on {slot.hostname}")
    return plan


def start_server(bind_address: str, placement: HorovodPlacement) -> RendezvousHTTPServer:
    """Start Horovod's rendezvous HTTP server on the fixed port (rank 0 only).

    Args:
        bind_address: address to bind (``0.0.0.0`` in a pod).
        placement: rank 0's placement, with the port and every worker's hostname.

    Returns:
        The running server, already initialised with the host plan.
    """
    from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer

    plan = host_plan(placement)
    try:
        server = RendezvousHTTPServer((bind_address, placement.rendezvous_port), RendezvousHandler, 0)
    except OSError as exc:
        raise RendezvousError(
            f"cannot bind the rendezvous server on {bind_address}:{placement.rendezvous_port}: {exc}"
        ) from None
    # Same order as launch_gloo: init(plan) before any worker can ask for a key.
    server.init(plan)
    threading.Thread(target=server.serve_forever, name="horovod-rendezvous", daemon=True).start()
    log.info("rendezvous server for %d worker(s) on %s:%d", placement.size, bind_address, placement.rendezvous_port)
    return server


def check_in(placement: HorovodPlacement, timeout: float) -> None:
    """Wait until rank 0's rendezvous server answers, then record this rank (ranks > 0).

    Args:
        placement: this worker's placement.
        timeout: seconds to keep trying.

    Raises:
        RendezvousError: the server did not answer in time.
    """
    deadline = time.monotonic() + timeout
    key = f"/{CHECKIN_SCOPE}/rank_{placement.rank}"
    last_error = ""
    next_log = 0.0
    while time.monotonic() < deadline:
        try:
            status = _request(placement, "PUT", key, placement.hostname.encode())
            if status == 200:
                return
            last_error = f"HTTP {status}"
        except OSError as exc:  # refused, unreachable, DNS not there yet ...
            last_error = str(exc)
        if time.monotonic() >= next_log:
            log.info(
                "waiting for the rendezvous server at %s:%d (%s)",
                placement.rendezvous_addr,
                placement.rendezvous_port,
                last_error,
            )
            next_log = time.monotonic() + 10
        time.sleep(_POLL_SECONDS)
    raise RendezvousError(
        f"rendezvous server {placement.rendezvous_addr}:"
        f"{placement.rendezvous_port} (rank 0) did not answer within "
        f"{timeout:g}s: {last_error}"
    )


def wait_for_workers(server: RendezvousHTTPServer, placement: HorovodPlacement, timeout: float) -> None:
    """Wait until every other rank has checked in (rank 0 only).

    Args:
        server: rank 0's rendezvous server.
        placement: rank 0's placement.
        timeout: seconds to wait.

    Raises:
        RendezvousError: some ranks did not check in in time; the message names them.
    """
    deadline = time.monotonic() + timeout
    expected = {f"rank_{r}" for r in range(1, placement.size)}
    next_log = time.monotonic() + 10
    while True:
        with server.cache_lock:
            present = set(server.cache.get(CHECKIN_SCOPE, {}))
        missing = sorted(expected - present, key=lambda k: int(k.split("_")[1]))
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise RendezvousError(
                f"workers {', '.join(m.split('_')[1] for m in missing)} of {placement.size} did "
                f"not reach the rendezvous within {timeout:g}s"
            )
        if time.monotonic() >= next_log:
            log.info("waiting for workers %s to check in", ", ".join(missing))
            next_log = time.monotonic() + 10
        time.sleep(_POLL_SECONDS)


class Early:
    """The rendezvous begun before the heavy imports (see ``begin``)."""

    def __init__(self, server: RendezvousHTTPServer | None = None, check_in: threading.Thread | None = None):
        self.server = server
        self.check_in = check_in
        self.error: BaseException | None = None


def begin(placement: HorovodPlacement, bind_address: str | None, timeout: float) -> Early | None:
    """Start the rendezvous while the worker still imports torch: rank 0's server goes up and
    the other ranks check in from a thread, so that ``join`` later waits only for a peer that is
    really behind, not for a poll or a refused first connection. (Both take ~20 ms of imports.)
    The check-in's ``timeout`` counts from here."""
    if placement.standalone:
        return None
    if placement.rank == 0:
        return Early(server=start_server(bind_address or placement.rendezvous_addr or "0.0.0.0", placement))
    early = Early()

    def run() -> None:
        try:
            check_in(placement, timeout)
        except BaseException as exc:  # noqa: BLE001 - re-raised in join(), on the main thread
            early.error = exc

    early.check_in = threading.Thread(target=run, name="horovod-check-in", daemon=True)
    early.check_in.start()
    return early


def join(placement: HorovodPlacement, bind_address: str | None, timeout: float, early: Early | None = None) -> Any:
    """Join the trial's Horovod job and return the initialised ``horovod.torch`` module.

    Args:
        placement: this worker's placement.
        bind_address: address rank 0 binds its rendezvous server to; None binds the
            rendezvous address itself.
        timeout: seconds to wait for the peers.
        early: what ``begin`` started, if it was called; else it is called here.

    Returns:
        ``horovod.torch``, initialised; the rendezvous server (rank 0) keeps serving in a
        daemon thread for the life of the process.
    """
    import horovod.torch as hvd

    if early is None:
        early = begin(placement, bind_address, timeout)
    if early is not None:
        if early.server is not None:
            wait_for_workers(early.server, placement, timeout)
        elif early.check_in is not None:
            early.check_in.join()
            if early.error is not None:
                raise early.error
    started = time.monotonic()
    hvd.init()
    if (hvd.rank(), hvd.size()) != (placement.rank, placement.size):  # pragma: no cover
        raise RendezvousError(
            f"Horovod says rank {hvd.rank()} of {hvd.size()}, the environment says {placement.rank} of {placement.size}"
        )
    log.info("joined Horovod as rank %d of %d in %.2fs", hvd.rank(), hvd.size(), time.monotonic() - started)
    return hvd


def _request(placement: HorovodPlacement, method: str, path: str, body: bytes) -> int:
    connection = http.client.HTTPConnection(*placement.rendezvous, timeout=3)
    try:
        connection.request(method, path, body=body)
        return connection.getresponse().status
    finally:
        connection.close()

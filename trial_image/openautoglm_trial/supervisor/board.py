"""What the supervisors of one trial tell each other, through rank 0's rendezvous store.

The built-in tasks decide on allreduced values, so every rank stops at the same step. A
supervised program is opaque: often only rank 0 prints its metrics, so only rank 0's supervisor
sees a diverging loss. When it stops its program, the other ranks' programs lose their peer and
crash, which would fail the trial. So a rank that stops its program writes the decision under
our own scope of Horovod's KV store (rank 0 hosts it anyway); the other ranks poll it, stop
their programs with the same status and reason, and read it again before they blame a crash on
their own program. Ranks > 0 also record when they are done, so rank 0 keeps the store up until
they have read what they need.

Under torchrun there is no Horovod store (and the program's image need not have Horovod): rank 0's
supervisor serves a :class:`BoardServer` of its own instead, on MASTER_ADDR at the rendezvous port,
speaking the same HTTP (``PUT``/``GET /openautoglm/<key>``) with the same ``cache``, so the
check-in, :class:`LocalBoard` and :class:`RemoteBoard` work on either.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Final

from ..environment import Placement
from ..rendezvous import CHECKIN_SCOPE
from .recorder import Decision

if TYPE_CHECKING:
    from horovod.runner.http.http_server import RendezvousHTTPServer

log = logging.getLogger(__name__)

STOP_KEY: Final = "stop"
_TIMEOUT_SECONDS: Final = 2.0
#: A value larger than this is no check-in, stop decision or "done" (a reason is a few lines).
VALUE_LIMIT: Final = 16 * 1024
#: Keys the board holds at most: a check-in and a "done" per rank, one stop decision.
KEY_LIMIT: Final = 4096


class Board:
    """No peers (a single worker): nothing to share."""

    def publish(self, rank: int, decision: Decision) -> None:
        """Tell the other ranks that ``rank`` stopped its program."""

    def read(self) -> tuple[int, Decision] | None:
        """The first stop decision of any rank: (its rank, the decision), or None."""
        return None

    def done(self, rank: int) -> None:
        """Record that ``rank`` has written its result (ranks > 0)."""

    def wait_done(self, size: int, timeout: float) -> None:
        """Wait until every rank > 0 is done, at most ``timeout`` seconds (rank 0)."""


class LocalBoard(Board):
    """Rank 0's view: the store is in this process."""

    def __init__(self, server: RendezvousHTTPServer | BoardServer) -> None:
        """Use rank 0's rendezvous server."""
        self.server = server

    def publish(self, rank: int, decision: Decision) -> None:
        """See :meth:`Board.publish`; the first decision stays."""
        with self.server.cache_lock:
            self.server.cache.setdefault(CHECKIN_SCOPE, {}).setdefault(STOP_KEY, _encode(rank, decision))

    def read(self) -> tuple[int, Decision] | None:
        """See :meth:`Board.read`."""
        with self.server.cache_lock:
            raw = self.server.cache.get(CHECKIN_SCOPE, {}).get(STOP_KEY)
        return _decode(raw)

    def wait_done(self, size: int, timeout: float) -> None:
        """See :meth:`Board.wait_done`."""
        deadline = time.monotonic() + timeout
        expected = {f"done_{rank}" for rank in range(1, size)}
        while time.monotonic() < deadline:
            with self.server.cache_lock:
                if expected <= set(self.server.cache.get(CHECKIN_SCOPE, {})):
                    return
            time.sleep(0.1)
        log.info("not every rank reported done within %gs; exiting anyway", timeout)


class RemoteBoard(Board):
    """A rank > 0: the store is rank 0's, over HTTP."""

    def __init__(self, placement: Placement) -> None:
        """Use the rendezvous address of the placement."""
        self.placement = placement

    def publish(self, rank: int, decision: Decision) -> None:
        """See :meth:`Board.publish`; best effort (rank 0 may be gone)."""
        if self.read() is None:
            self._request("PUT", STOP_KEY, _encode(rank, decision))

    def read(self) -> tuple[int, Decision] | None:
        """See :meth:`Board.read`; None as well when rank 0 does not answer."""
        status, body = self._request("GET", STOP_KEY)
        return _decode(body) if status == 200 else None

    def done(self, rank: int) -> None:
        """See :meth:`Board.done`."""
        self._request("PUT", f"done_{rank}", b"1")

    def _request(self, method: str, key: str, body: bytes | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(*self.placement.rendezvous, timeout=_TIMEOUT_SECONDS)
        try:
            connection.request(method, f"/{CHECKIN_SCOPE}/{key}", body=body)
            response = connection.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""
        finally:
            connection.close()


def _encode(rank: int, decision: Decision) -> bytes:
    return json.dumps({"rank": rank, "status": decision.status, "reason": decision.reason}).encode()


def _decode(raw: bytes | None) -> tuple[int, Decision] | None:
    if not raw:
        return None
    try:
        doc = json.loads(raw)
        return int(doc["rank"]), Decision(str(doc["status"]), str(doc["reason"]))
    except (ValueError, KeyError, TypeError):
        return None


class BoardServer(ThreadingHTTPServer):
    """Rank 0's store under torchrun: the part of Horovod's rendezvous server the board uses.

    ``cache`` maps a scope to its keys and values, guarded by ``cache_lock``, as in Horovod's
    ``RendezvousHTTPServer``; only our scope is served.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        """Bind ``address`` (host, port); :meth:`start` serves it."""
        super().__init__(address, _BoardHandler)
        self.cache_lock = threading.Lock()
        self.cache: dict[str, dict[str, bytes]] = {CHECKIN_SCOPE: {}}

    def start(self) -> BoardServer:
        """Serve in a daemon thread for the life of the process."""
        threading.Thread(target=self.serve_forever, name="board-server", daemon=True).start()
        return self


class _BoardHandler(BaseHTTPRequestHandler):
    server: BoardServer
    #: a peer that stops half-way holds one thread this long at most
    timeout = 5.0

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        key = self._key()
        if key is None:
            return
        with self.server.cache_lock:
            value = self.server.cache[CHECKIN_SCOPE].get(key)
        if value is None:
            self._send(404)
        else:
            self._send(200, value)

    def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
        key = self._key()
        if key is None:
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if not 0 <= length <= VALUE_LIMIT:
            self._send(413)
            return
        value = self.rfile.read(length)
        with self.server.cache_lock:
            keys = self.server.cache[CHECKIN_SCOPE]
            if key not in keys and len(keys) >= KEY_LIMIT:
                self._send(507)
                return
            keys[key] = value
        self._send(200)

    def _key(self) -> str | None:
        scope, _, key = self.path.lstrip("/").partition("/")
        if scope != CHECKIN_SCOPE or not key or "/" in key:
            self._send(404)
            return None
        return key

    def _send(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: every poll would be a line."""

"""A trial's /metrics is read at most 1 MiB deep and within one deadline for the whole request,
against real local servers that answer too much, too slowly, or badly (issue 21, cases 1-2).

On main a 200 MiB body was read whole (~1 GiB of operator RSS) and an answer trickling a byte
every 1.5 s held a scrape for 12 s+ (urllib's timeout is per socket read, not per request).
"""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from openautoglm.engine.metrics import SCRAPE_LIMIT_BYTES, ScrapeSource
from openautoglm.engine.trials import RUNNING, TrialObservation, WorkerObservation
from openautoglm_trial.boundedhttp import FetchError, get

MiB = 1024 * 1024
BLOCK = (b"# " + b"x" * 1021 + b"\n") * 1024  # 1 MiB of comment lines
GOOD = b'openautoglm_trial_epoch 2\nopenautoglm_trial_metric{metric="score"} 0.5\n'
#: Wall time allowed beyond a deadline (thread start, a loaded CI machine).
SLACK = 1.0


class Server:
    """A local server that runs ``answer(conn)`` for every connection, each in its own thread,
    and counts the bytes it managed to send."""

    def __init__(self, answer: Callable[[socket.socket, Server], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.answer = answer
        self.sent = 0
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/metrics"

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                self.answer(conn, self)
            except OSError:
                pass  # the reader gave up and closed


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(answer: Callable[[socket.socket, Server], None]) -> Server:
        servers.append(Server(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.stop.set()
        s.sock.close()


def huge(conn: socket.socket, server: Server) -> None:
    """200 MiB, streamed without a length (the body ends when the server closes)."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
    for _ in range(200):
        server.send(conn, BLOCK)


def trickle(conn: socket.socket, server: Server) -> None:
    """A byte every 0.2 s, forever: never idle long enough for a per-read timeout."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    for i in range(10_000):
        server.send(conn, head[i : i + 1] or b"#")
        if server.stop.wait(0.2):
            return


def fetch_measured(url: str, **kw) -> tuple[bytes | FetchError, float, int]:
    """(body or the error, seconds, peak bytes allocated by Python meanwhile)."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        out: bytes | FetchError = get(url, **kw)
    except FetchError as err:
        out = err
    elapsed = time.monotonic() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, elapsed, peak


def test_a_200_mib_answer_is_refused_after_1_mib_in_bounded_memory(serve) -> None:
    server = serve(huge)
    out, elapsed, peak = fetch_measured(server.url, limit_bytes=MiB, deadline_seconds=5)
    assert isinstance(out, FetchError) and str(out) == "answer larger than 1 MiB: not read" and not out.gone
    assert peak < 4 * MiB, peak  # the limit and one receive buffer, not 200 MiB
    time.sleep(0.2)
    assert server.sent < 32 * MiB, server.sent  # what the kernel's buffers took before we closed


def test_a_content_length_above_the_limit_is_refused_before_its_body(serve) -> None:
    def announce(conn: socket.socket, server: Server) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\n")
        server.stop.wait(5)  # the body would follow: it is never asked for
        server.send(conn, BLOCK)

    server = serve(announce)
    out, elapsed, _ = fetch_measured(server.url, limit_bytes=MiB, deadline_seconds=5)
    assert isinstance(out, FetchError) and str(out) == "answer larger than 1 MiB: not read"
    assert elapsed < 1.0


@pytest.mark.parametrize("where", ["head", "body"])
def test_a_trickling_answer_is_given_up_at_the_deadline(serve, where) -> None:
    def body_trickle(conn: socket.socket, server: Server) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not server.stop.wait(0.2):
            server.send(conn, b"#")

    server = serve(trickle if where == "head" else body_trickle)
    out, elapsed, _ = fetch_measured(server.url, limit_bytes=MiB, deadline_seconds=1.0)
    assert isinstance(out, FetchError) and str(out) == "no complete answer within 1 s" and not out.gone
    assert 0.9 < elapsed < 1.0 + SLACK, elapsed


def test_a_server_that_accepts_and_never_answers_costs_one_deadline(serve) -> None:
    server = serve(lambda conn, server: server.stop.wait(10))
    out, elapsed, _ = fetch_measured(server.url, limit_bytes=MiB, deadline_seconds=0.5)
    assert isinstance(out, FetchError) and str(out) == "no complete answer within 0.5 s"
    assert elapsed < 0.5 + SLACK


def chunked(body: bytes, size: int) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"


BODY = bytes(range(256)) * 4096  # 1 MiB exactly, every byte value


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY,  # ends at the close
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(BODY) + BODY,
        chunked(BODY, 7000),
    ],
    ids=["content-length", "until-close", "after-100", "chunked"],
)
def test_bodies_up_to_the_limit_are_read_whole(serve, answer: bytes) -> None:
    server = serve(lambda conn, server: server.send(conn, answer))
    assert get(server.url, limit_bytes=len(BODY), deadline_seconds=10) == BODY


def test_one_byte_chunks_are_read_whole(serve) -> None:
    body = BODY[: 64 * 1024]  # 65,536 chunks: framing 6x the body
    server = serve(lambda conn, server: server.send(conn, chunked(body, 1)))
    assert get(server.url, limit_bytes=len(body), deadline_seconds=10) == body


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
        b"HTTP/1.0 200 OK\r\n\r\n" + BODY,
        chunked(BODY, 7000),
    ],
    ids=["content-length", "until-close", "chunked"],
)
def test_one_byte_over_the_limit_is_refused(serve, answer: bytes) -> None:
    server = serve(lambda conn, server: server.send(conn, answer))
    with pytest.raises(FetchError, match=r"^answer larger than 1048575 bytes: not read$"):
        get(server.url, limit_bytes=len(BODY) - 1, deadline_seconds=10)


@pytest.mark.parametrize(
    ("answer", "reason", "gone"),
    [
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", "HTTP 500", False),
        (b"\x00\x01garbage\r\n\r\n", "not an HTTP answer", False),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP answer", False),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
            "not an HTTP answer (malformed Content-Length)",
            False,
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not an HTTP answer (malformed chunk)", False),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000, "headers longer than 16 KiB: not an HTTP answer", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", "answer cut short", True),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "answer cut short", True),
        (b"", "closed without answering", True),
    ],
)
def test_a_bad_answer_is_one_error_with_a_short_reason(serve, answer: bytes, reason: str, gone: bool) -> None:
    server = serve(lambda conn, server: server.send(conn, answer))
    with pytest.raises(FetchError) as caught:
        get(server.url, limit_bytes=MiB, deadline_seconds=2)
    assert str(caught.value) == reason and caught.value.gone is gone


def test_nothing_listening_is_a_worker_not_up_yet() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="^connection refused$") as caught:
        get(f"http://127.0.0.1:{port}/metrics", limit_bytes=MiB, deadline_seconds=1)
    assert caught.value.gone
    for url in ("ftp://x/", "http:///nohost", "http://a b/", "http://h:99999/"):
        with pytest.raises(FetchError):
            get(url, limit_bytes=MiB, deadline_seconds=1)


def test_prometheus_clients_own_server_is_read(serve) -> None:
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    Gauge("openautoglm_trial_epoch", "epochs", registry=registry).set(3)
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        body = get(f"http://127.0.0.1:{port}/metrics", limit_bytes=MiB, deadline_seconds=5)
    finally:
        server.shutdown()
    assert b"openautoglm_trial_epoch 3.0" in body


# ----------------------------------------------------------------------------- the engine's scrape
def _observe(server: Server) -> TrialObservation:
    endpoint = server.url.removeprefix("http://").removesuffix("/metrics")
    return TrialObservation(1, [WorkerObservation(0, RUNNING, endpoint)], 1)


def test_the_engines_scrape_records_a_huge_or_slow_metrics_as_the_trials_problem(serve) -> None:
    assert SCRAPE_LIMIT_BYTES == MiB
    source = ScrapeSource(None, limit_bytes=MiB, deadline_seconds=1.0)  # type: ignore[arg-type]
    reading = source.read(_observe(serve(huge)))
    assert reading is not None and reading.values == {}
    assert reading.problem == "/metrics: answer larger than 1 MiB: not read"
    t0 = time.monotonic()
    reading = source.read(_observe(serve(trickle)))
    assert time.monotonic() - t0 < 1.0 + SLACK
    assert reading is not None and reading.problem == "/metrics: no complete answer within 1 s"
    good = source.read(_observe(serve(lambda conn, server: server.send(conn, b"HTTP/1.0 200 OK\r\n\r\n" + GOOD))))
    assert good is not None and good.problem is None and good.epoch == 2 and good.values == {"score": 0.5}


def test_the_scrape_limits_come_from_the_settings(monkeypatch) -> None:
    monkeypatch.setenv("OPENAUTOGLM_SCRAPE_LIMIT_BYTES", "4096")
    monkeypatch.setenv("OPENAUTOGLM_SCRAPE_DEADLINE_SECONDS", "0.25")
    source = ScrapeSource(None)  # type: ignore[arg-type]
    assert (source.limit_bytes, source.deadline_seconds) == (4096, 0.25)

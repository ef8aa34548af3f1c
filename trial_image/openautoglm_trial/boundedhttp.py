"""One HTTP GET that reads at most so many bytes and ends by one deadline, whatever answers.

A trial's /metrics is written by whoever wrote the trial, and the operator that reads it is
shared by every tenant: a 200 MiB answer must not be held in memory, and an answer that trickles
one byte a second must not hold a reader for minutes. urllib cannot promise the second: its
timeout bounds each socket operation, and ``read(n)``/``readline()`` loop over many ``recv()``
calls that each get the whole timeout again. So the request is spoken here on a plain socket
(HTTP/1.1, ``Connection: close``): every ``recv()`` waits only for the time left, the status
line and headers are capped, and the body is read from a Content-Length (refused above the
limit before a byte of it is read), from chunks, or up to the close, never past the limit.

Standard library only: the engine reads trials with it and the trial supervisor reads the
program it runs. Proxies (``http_proxy``) are not used: trial endpoints are pod addresses.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
import urllib.parse
from typing import Final

#: Status line and headers longer than this are no metrics endpoint's answer.
HEAD_LIMIT: Final = 16 * 1024
#: One chunk-size line of a chunked body (hex size and extensions).
CHUNK_LINE_LIMIT: Final = 1024
#: Bytes asked of the socket at once.
_RECV: Final = 64 * 1024
_STATUS: Final = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: |\r?$)")
#: Characters that would end the request line or a header early (request smuggling).
_UNSAFE: Final = re.compile(r"[\x00-\x20\x7f]")


class FetchError(Exception):
    """No body was read; ``str(err)`` says why, in a few words for people.

    Attributes:
        gone: nothing answered, or the answer stopped half-way (connection refused or reset,
            closed early): normal while a worker starts or exits, and no fault of an answer. False
            for an answer that is too large, too slow, not HTTP, or not a 200.
    """

    def __init__(self, reason: str, *, gone: bool = False) -> None:
        super().__init__(reason)
        self.gone = gone


def get(url: str, *, limit_bytes: int, deadline_seconds: float) -> bytes:
    """GET ``url`` and return the body of its 200 answer.

    Args:
        url: ``http://`` or ``https://`` URL.
        limit_bytes: the largest body read; a larger one is refused.
        deadline_seconds: wall time for the whole request: connecting, TLS, sending, the
            headers and the body.

    Returns:
        The body (chunked transfer coding removed).

    Raises:
        FetchError: no body within the limits, with the reason ("answer larger than 1 MiB: not
            read", "no complete answer within 2 s", "HTTP 500", "connection refused", ...).
    """
    end = time.monotonic() + deadline_seconds
    parts = _split(url)
    sock = _connect(parts, end, deadline_seconds)
    try:
        wire = _Wire(sock, end, deadline_seconds)
        wire.send(_request(parts))
        status, headers = _head(wire)
        while 100 <= status < 200:  # informational answers precede the real one
            status, headers = _head(wire)
        if status != 200:
            raise FetchError(f"HTTP {status}")
        return _body(wire, headers, limit_bytes)
    finally:
        sock.close()


def size_text(n: int) -> str:
    """1048576 -> "1 MiB", for reasons."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


# ----------------------------------------------------------------------------- the request
def _split(url: str) -> urllib.parse.SplitResult:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a port out of range
    except ValueError:
        raise FetchError("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or _UNSAFE.search(url):
        raise FetchError("not a valid http:// URL")
    return parts


def _request(parts: urllib.parse.SplitResult) -> bytes:
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]  # user:password@ is not sent
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: openautoglm\r\n"
        "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
    ).encode("ascii", "replace")


def _connect(parts: urllib.parse.SplitResult, end: float, deadline: float) -> socket.socket:
    """A connected (and for https, handshaken) socket. Not reaching the server at all is
    ``gone``: a worker whose server is not up yet. Name resolution is not under the deadline
    (the C resolver cannot be interrupted); trial endpoints are addresses, not names."""
    tls = parts.scheme == "https"
    host, port = parts.hostname or "", parts.port or (443 if tls else 80)
    sock = _connect_any(host, port, end, deadline)
    if not tls:
        return sock
    try:
        wrapped = ssl.create_default_context().wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        wrapped.settimeout(max(0.001, end - time.monotonic()))
        wrapped.do_handshake()  # one call: the ssl module bounds it by the timeout as a whole
        return wrapped
    except TimeoutError:
        sock.close()
        raise FetchError(f"no complete answer within {deadline:g} s") from None
    except (ssl.SSLError, OSError) as err:
        sock.close()
        raise FetchError(f"TLS failed: {getattr(err, 'reason', None) or err}") from None


def _connect_any(host: str, port: int, end: float, deadline: float) -> socket.socket:
    """socket.create_connection, but every address tried only in the time left (it gives each
    address the whole timeout)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise FetchError(f"cannot resolve {host}", gone=True) from None
    error: OSError = TimeoutError()
    for family, kind, proto, _, address in addresses:
        left = end - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(left)
        try:
            sock.connect(address)
            return sock
        except OSError as err:
            sock.close()
            error = err
    if isinstance(error, TimeoutError):
        raise FetchError(f"no connection within {deadline:g} s", gone=True)
    if isinstance(error, ConnectionRefusedError):
        raise FetchError("connection refused", gone=True)
    raise FetchError(f"cannot connect: {error.strerror or error}", gone=True)


# ----------------------------------------------------------------------------- the answer
class _Wire:
    """The socket read as a stream of bytes, every wait cut to the time left before the deadline."""

    def __init__(self, sock: socket.socket, end: float, deadline: float) -> None:
        self.sock, self.end, self.deadline = sock, end, deadline
        self.buf = bytearray()
        self.pos = 0  # bytes of buf consumed: dropped in blocks, not one memmove per chunk

    def send(self, data: bytes) -> None:
        self._wait_for()
        try:
            self.sock.sendall(data)  # since 3.5 the timeout bounds the whole sendall
        except TimeoutError:
            raise FetchError(self._late()) from None
        except OSError as err:
            raise FetchError(f"connection lost: {err.strerror or err}", gone=True) from None

    def more(self) -> bool:
        """Receive what the peer sent next; False once it has closed."""
        self._wait_for()
        try:
            data = self.sock.recv(_RECV)
        except TimeoutError:
            raise FetchError(self._late()) from None
        except ssl.SSLError as err:
            raise FetchError(f"TLS failed: {err.reason or err}") from None
        except OSError as err:
            raise FetchError(f"connection lost: {err.strerror or err}", gone=True) from None
        if self.pos >= _RECV:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data
        return bool(data)

    def available(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int) -> bytes:
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += len(out)
        return out

    def until(self, sep: bytes, cap: int, too_long: str) -> bytes:
        """The bytes before ``sep`` (consumed with it); more than ``cap`` of them: FetchError."""
        scanned = 0  # bytes after pos searched already (more() may move pos, never them)
        while (i := self.buf.find(sep, self.pos + scanned)) < 0:
            if self.available() > cap:
                raise FetchError(too_long)
            scanned = max(0, self.available() - len(sep) + 1)
            if not self.more():
                raise FetchError("answer cut short", gone=True)
        line = self.take(i - self.pos)
        self.pos += len(sep)
        return line

    def exactly(self, n: int) -> bytes:
        while self.available() < n:
            if not self.more():
                raise FetchError("answer cut short", gone=True)
        return self.take(n)

    def _wait_for(self) -> None:
        left = self.end - time.monotonic()
        if left <= 0:
            raise FetchError(self._late())
        self.sock.settimeout(left)

    def _late(self) -> str:
        return f"no complete answer within {self.deadline:g} s"


def _head(wire: _Wire) -> tuple[int, dict[str, str]]:
    """The status and the headers (names lower case; a repeated one joined with ", ")."""
    while wire.available() < 5 and wire.more():
        pass
    if wire.available() == 0:
        raise FetchError("closed without answering", gone=True)
    if not b"HTTP/".startswith(bytes(wire.buf[wire.pos : wire.pos + 5])):
        raise FetchError("not an HTTP answer")  # said at once, not after the whole head
    head = wire.until(b"\r\n\r\n", HEAD_LIMIT, f"headers longer than {size_text(HEAD_LIMIT)}: not an HTTP answer")
    status_line, *lines = head.split(b"\r\n")
    match = _STATUS.match(status_line)
    if match is None:
        raise FetchError("not an HTTP answer")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name.strip():
            raise FetchError("not an HTTP answer (malformed header)")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(match.group(1)), headers


def _body(wire: _Wire, headers: dict[str, str], limit: int) -> bytes:
    too_large = f"answer larger than {size_text(limit)}: not read"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _chunked(wire, limit, too_large)
    if "content-length" in headers:
        lengths = {v.strip() for v in headers["content-length"].split(",")}
        if len(lengths) != 1 or not (length := lengths.pop()).isdigit() or len(length) > 18:
            raise FetchError("not an HTTP answer (malformed Content-Length)")
        if int(length) > limit:
            raise FetchError(too_large)  # refused before a byte of the body is read
        return wire.exactly(int(length))
    while wire.more():  # no length: the body ends where the server closes
        if wire.available() > limit:
            raise FetchError(too_large)
    return wire.take(wire.available())


def _chunked(wire: _Wire, limit: int, too_large: str) -> bytes:
    body = bytearray()
    while True:
        line = wire.until(b"\r\n", CHUNK_LINE_LIMIT, "not an HTTP answer (chunk size line too long)")
        size_hex = line.split(b";", 1)[0].strip()
        if not size_hex or len(size_hex) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in size_hex):
            raise FetchError("not an HTTP answer (malformed chunk)")
        size = int(size_hex, 16)
        if size == 0:
            return bytes(body)  # trailers, if any, are not needed: the server closes
        if len(body) + size > limit:
            raise FetchError(too_large)
        body += wire.exactly(size)
        if wire.exactly(2) != b"\r\n":
            raise FetchError("not an HTTP answer (malformed chunk)")

"""Cluster DNS for pod processes: a managed block of /etc/hosts.

Pod processes resolve names through glibc (Python's getaddrinfo, and gloo's C++ alike), and
glibc's `files` source reads /etc/hosts on every lookup, so a block of lines there is a DNS
server every process sees at once. Each Cluster owns one block:

    # BEGIN k8s-harness <tag> pid=<owner pid>
    127.250.0.1 w0.trial w0.trial.default.svc w0.trial.default.svc.cluster.local
    # END k8s-harness <tag>

Updates are read-modify-write under an exclusive flock of /etc/hosts, written in place (the file
is often a bind mount, which a rename would not replace). A block whose owner pid is dead is a
leftover of a crashed run and is removed when the next HostsFile starts.
"""

from __future__ import annotations

import fcntl
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Final

HOSTS: Final = Path("/etc/hosts")
MARKER: Final = "k8s-harness"
_BLOCK: Final = re.compile(
    rf"^# BEGIN {MARKER} (?P<tag>\S+) pid=(?P<pid>\d+)\n.*?^# END {MARKER} (?P=tag)\n", re.S | re.M
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HostsFile:
    """The managed /etc/hosts block of one Cluster: `update()` replaces its entries."""

    def __init__(self, path: Path = HOSTS):
        self.path = path
        self.tag = uuid.uuid4().hex[:12]
        self._entries: list[tuple[str, tuple[str, ...]]] = []

    def _rewrite(self, block: str | None) -> None:
        with open(self.path, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                text = f.read()

                def keep(m: re.Match[str]) -> str:
                    mine = m.group("tag") == self.tag
                    stale = not _alive(int(m.group("pid")))
                    return "" if mine or stale else m.group(0)

                text = _BLOCK.sub(keep, text)
                if block:
                    text = (text if text.endswith("\n") or not text else text + "\n") + block
                f.seek(0)
                f.write(text)
                f.truncate()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def start(self) -> None:
        """Remove stale blocks of dead owners (and any of ours)."""
        self._rewrite(None)

    def update(self, entries: Iterable[tuple[str, Iterable[str]]]) -> None:
        """Set the block to these (ip, names) entries; no write when nothing changed."""
        normalized = sorted((ip, tuple(names)) for ip, names in entries)
        if normalized == self._entries:
            return
        self._entries = normalized
        lines = [f"{ip} {' '.join(names)}\n" for ip, names in normalized if names]
        block = (
            (f"# BEGIN {MARKER} {self.tag} pid={os.getpid()}\n" + "".join(lines) + f"# END {MARKER} {self.tag}\n")
            if lines
            else None
        )
        self._rewrite(block)

    def close(self) -> None:
        self._entries = []
        self._rewrite(None)

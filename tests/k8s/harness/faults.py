"""API server trouble on demand, for the tests that want it: not a gap of kmock but a test's wish.

Installed with `Cluster.inject_faults`: 409, 429 + Retry-After, 500 before or after the write,
watch connections cut, at seeded fixed rates and for chosen clients only. The HTTP front
(emulator.py) asks `draw` for every resource request and `watch_drop` for every watch.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import re
from collections.abc import Mapping
from typing import Final

import aiohttp.web
from apitypes import ApiError

#: The faults a FaultInjector can inject, each at its own rate per eligible request.
CONFLICT: Final = "409-conflict"  # a write refused, nothing done (the object "changed meanwhile")
THROTTLED: Final = "429-throttled"  # any verb, with Retry-After (and details.retryAfterSeconds)
ERROR_BEFORE: Final = "500-before"  # any verb, refused before anything happened
ERROR_AFTER: Final = "500-after"  # a write carried out, and then answered 500: the ambiguous failure
WATCH_DROP: Final = "watch-dropped"  # a watch's connection cut (no clean end) after a few events
FAULT_KINDS: Final = (CONFLICT, THROTTLED, ERROR_BEFORE, ERROR_AFTER, WATCH_DROP)
_WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclasses.dataclass
class FaultInjector:
    """API server trouble at fixed rates, for the requests of chosen clients only.

    Each request to a resource path (`/api/v1/...`, `/apis/g/v/...`; discovery is spared) whose
    User-Agent starts with one of `agents` (and whose path matches `paths`, if given) draws one
    number from a generator seeded with `seed`, which picks 429 or 500-before by their `rates`
    (probability per eligible request); a write that got neither draws from a second seeded
    generator for 409 or 500-after (writes only). At most one fault per request. A watch
    request that got through draws again for WATCH_DROP and is then cut after `drop_after`
    (min, max) events. The draws are seeded, the order of requests is the clients' own: the rate
    is fixed, not which request gets the fault.
    """

    rates: Mapping[str, float]
    seed: int = 0
    #: kopf ("kopf/1.x") and the kubernetes client ("OpenAPI-Generator/x/python"): the operator;
    #: not kubectl, whose reads and applies are the test's own.
    agents: tuple[str, ...] = ("kopf/", "OpenAPI-Generator/")
    #: only requests whose path matches this regular expression (None: every resource path)
    paths: str | None = None
    retry_after_s: int = 1
    drop_after: tuple[int, int] = (1, 5)
    #: faults injected so far, by kind
    injected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: (kind, User-Agent, "METHOD path") of every fault, for failure messages
    log: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self._rng = random.Random(self.seed)
        self._writes = random.Random(f"{self.seed}/writes")

    def _eligible(self, request: aiohttp.web.BaseRequest) -> str | None:
        agent = request.headers.get("User-Agent", "")
        if self.paths is not None and not re.search(self.paths, request.path):
            return None
        return agent if agent.startswith(self.agents) else None

    def record(self, kind: str, agent: str, request: aiohttp.web.BaseRequest) -> None:
        self.injected[kind] += 1
        self.log.append((kind, agent, f"{request.method} {request.path_qs}"))

    def draw(self, request: aiohttp.web.BaseRequest, watch: bool) -> str | None:
        """The fault this request gets (counted), or None."""
        agent = self._eligible(request)
        if agent is None:
            return None
        # Two seeded streams: one drawn by every request (429, 500 before the write), one by writes
        # only (409, 500 after the write). Which requests meet which kind then depends on how many
        # requests and writes the clients make, not on how reads and writes interleave (with one
        # stream a change to the operator's calls once drew every low roll on writes, as 409s, and
        # a run met no 429 at all).
        streams = [(self._rng, (THROTTLED, ERROR_BEFORE))]
        if request.method in _WRITES and not watch:
            streams.append((self._writes, (CONFLICT, ERROR_AFTER)))
        for rng, kinds in streams:
            roll, edge = rng.random(), 0.0
            for kind in kinds:
                edge += self.rates.get(kind, 0.0)
                if roll < edge:
                    self.record(kind, agent, request)
                    return kind
        return None

    def error(self, kind: str, request: aiohttp.web.BaseRequest) -> ApiError:
        """The Status the real API server answers with for this kind of trouble."""
        if kind == CONFLICT:
            return ApiError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {request.path}: the object has been modified; "
                "please apply your changes to the latest version and try again",
            )
        if kind == THROTTLED:
            return ApiError(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                {"retryAfterSeconds": self.retry_after_s},
            )
        return ApiError(500, "InternalError", f"Internal error occurred: injected ({kind})")

    def watch_drop(self, request: aiohttp.web.BaseRequest) -> int | None:
        """After how many events this watch's connection is cut (counted when it is), or None."""
        agent = self._eligible(request)
        if agent is None or self._rng.random() >= self.rates.get(WATCH_DROP, 0.0):
            return None
        return self._rng.randint(*self.drop_after)

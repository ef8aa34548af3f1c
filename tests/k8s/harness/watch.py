"""The emulated API server's watch streams: what kopf and kubectl see of every change.

kmock's watches ignore `resourceVersion` and selectors and replay everything. Here a watch
resumes after the requested revision from the store's history (410 Expired when it is too old),
honours `labelSelector`/`fieldSelector` (including the ADDED/DELETED a watch sees when an object
starts or stops matching), `sendInitialEvents` (with the initial-events-end BOOKMARK kopf waits
for) and `timeoutSeconds`, and sends periodic BOOKMARKs under kopf's 70 s inactivity timeout. A
fault injector (faults.py) may cut a stream's connection after a few events.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Final

import aiohttp.web
from apitypes import ApiError, Event, Obj, ResourceType
from faults import WATCH_DROP, FaultInjector
from store import ObjectStore, selector_matcher

BOOKMARK_INTERVAL_S: Final = 30.0  # kopf reconnects a watch silent for 70 s (inactivity_timeout)


@dataclasses.dataclass
class Watcher:
    """One open watch stream's subscription: the events of one resource, queued (None: shut down)."""

    storage: tuple[str, str]
    queue: asyncio.Queue[Event | None]


def watch_event_type(event: Event, visible: Callable[[Obj | None], bool]) -> str | None:
    """What a watch that sees only `visible` objects is told of `event` (None: nothing)."""
    now_in, was_in = visible(event.object), visible(event.old)
    if event.type == "MODIFIED" and now_in and not was_in:
        return "ADDED"
    if event.type == "MODIFIED" and was_in and not now_in:
        return "DELETED"
    if event.type == "DELETED" and (was_in or now_in):
        return "DELETED"
    if event.type != "DELETED" and now_in:
        return event.type
    return None


class WatchHub:
    """Every open watch stream of one API server, fed by its store."""

    def __init__(self, store: ObjectStore, faults: Callable[[], FaultInjector | None]) -> None:
        self.store = store
        #: the injector installed now (Cluster.inject_faults may change it while a stream is open)
        self.faults = faults
        self.watchers: list[Watcher] = []
        store.subscribers.append(self.publish)

    def publish(self, event: Event) -> None:
        for watcher in self.watchers:
            if watcher.storage == event.storage:
                watcher.queue.put_nowait(event)

    def close(self) -> None:
        """End every open stream (the server is shutting down)."""
        for watcher in self.watchers:
            watcher.queue.put_nowait(None)

    def _backlog(self, rtype: ResourceType, since: str, initial: bool) -> list[Event] | None:
        """The stored events a watch from revision `since` starts with (None: too old, relist)."""
        history = self.store.history
        expired = len(history) == history.maxlen and int(since or 0) < history[0].revision - 1
        if not initial and expired:
            return None
        return [] if initial else [e for e in history if e.storage == rtype.storage and e.revision > int(since)]

    def _bookmark(self, rtype: ResourceType, **annotations: str) -> Obj:
        metadata: Obj = {"resourceVersion": str(self.store.revision)}
        if annotations:
            metadata["annotations"] = annotations
        return {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": metadata}

    async def serve(
        self, request: aiohttp.web.BaseRequest, rtype: ResourceType, namespace: str | None, name: str | None
    ) -> aiohttp.web.StreamResponse:
        """One watch request, streamed until its timeout, the client leaving or the server closing."""
        query = request.query
        match = selector_matcher(query)
        if name is not None:
            base, match = match, lambda obj: base(obj) and obj["metadata"]["name"] == name

        def visible(obj: Obj | None) -> bool:
            return (
                obj is not None and (namespace is None or obj["metadata"].get("namespace") == namespace) and match(obj)
            )

        since = query.get("resourceVersion") or ""
        initial = query.get("sendInitialEvents") == "true" or since in ("", "0")
        bookmarks = query.get("allowWatchBookmarks") == "true"
        if not initial and (not since.isdigit()):
            raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}")
        backlog = self._backlog(rtype, since, initial)
        # Snapshot and subscription in one synchronous step: no event falls between them.
        watcher = Watcher(rtype.storage, asyncio.Queue())
        self.watchers.append(watcher)
        snapshot = self.store.list(rtype, namespace, match) if initial else []
        deadline = time.monotonic() + float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        #: events left before the injector cuts this watch's connection (None: never), drawn by
        #: the injector in place when this watch began, or, for one begun before, when it came
        drop_in, drawn_by = None, None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)

            async def send(kind: str, obj: Obj) -> None:
                await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

            if backlog is None:
                history = self.store.history
                await send(
                    "ERROR",
                    ApiError(410, "Expired", f"too old resource version: {since} ({history[0].revision})").status(),
                )
                return response
            for obj in snapshot:
                await send("ADDED", obj)
            if query.get("sendInitialEvents") == "true" and bookmarks:
                await send("BOOKMARK", self._bookmark(rtype, **{"k8s.io/initial-events-end": "true"}))
            pending: collections.deque[Event] = collections.deque(backlog)
            while True:
                if not pending:
                    timeout = BOOKMARK_INTERVAL_S
                    if deadline is not None:
                        timeout = min(timeout, deadline - time.monotonic())
                        if timeout <= 0:
                            break
                    try:
                        event = await asyncio.wait_for(watcher.queue.get(), timeout)
                    except TimeoutError:
                        if bookmarks:
                            await send("BOOKMARK", self._bookmark(rtype))
                        continue
                    if event is None:  # the server is shutting down
                        break
                    pending.append(event)
                event = pending.popleft()
                kind = watch_event_type(event, visible)
                if kind is None:
                    continue
                await send(kind, self.store.present(rtype, event.object))
                faults = self.faults()
                if faults is not None and drawn_by is not faults:
                    drawn_by, drop_in = faults, faults.watch_drop(request)
                if drop_in is not None:
                    drop_in -= 1
                    if drop_in <= 0 and faults is not None and request.transport is not None:
                        # Cut, not ended: no final chunk, as a proxy or a restarting API server
                        # leaves it; the client sees a broken payload, not a finished stream.
                        faults.record(WATCH_DROP, request.headers.get("User-Agent", ""), request)
                        request.transport.abort()
                        break
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.watchers.remove(watcher)
        return response

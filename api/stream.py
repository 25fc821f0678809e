"""``GET /v1/players/{player_id}/stream``: the player's triggered lists as Server-Sent Events.

Each process keeps a :class:`PushHub` (created with its first stream, on ``app.state``): its open
streams by player, each an asyncio queue, and — while any stream is open — one thread that LISTENs
on ``recsys_push`` (``recsys.db.push``). A notification for a player with a stream here is handed
to the event loop, which reads the list from ``recommendations`` once, on the online pool, by id
and only as that player's list (a payload is a hint, never content), and queues it for each of
that player's streams. Every read of a stream is awaited on the online pool
(``recsys.db.pool``); the LISTEN connection stays a thread (``recsys.db.listener``).

Protection is checked at delivery: every list, live or replayed, goes through the gate and the
disabled-slot and market filters as they stand when it is sent (``recsys.serving.delivery``).

Every list is an event ``recommendation`` whose ``id`` is the recommendation id. What a client
missed while it was away is replayed from the table after the ``Last-Event-ID`` it sends back
(the browser's ``EventSource`` does so by itself). A fresh stream starts with an ``id``-only
message naming the player's latest pushed list (``0``: none yet), so even a client that received
nothing before its connection broke resumes without a gap. A stream ends itself, for the client to
reconnect and replay, when its queue overflows (a client that does not read) and when its
process's LISTEN connection was lost (notifications may have been missed).

Open streams are capped per process (``RECSYS_STREAMS_MAX``: 503) and per API key
(``RECSYS_STREAMS_PER_KEY``: 429), both with ``Retry-After``: 1,024 streams opened with one key took
every request slot of the API (issue 22).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

import anyio
import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.exceptions import ServiceUnavailableException, TooManyRequestsException
from litestar.params import FromPath, HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.auth import READ
from recsys.db import push
from recsys.db.apikeys import prefix_of
from recsys.db.engine import DatabaseUnavailable
from recsys.db.listener import Listener
from recsys.db.pool import OnlinePool
from recsys.errors import NotFound, NotReady
from recsys.serving.delivery import deliverable
from recsys.serving.lists import TriggeredList

log = logging.getLogger(__name__)

QUEUE_SIZE = 64
"""Lists waiting for one slow client; beyond, its stream ends and the client replays on reconnecting."""
REPLAY_LIMIT = 50
"""At most this many missed lists (the latest) are replayed to a reconnecting client."""
READY_SECONDS = 5.0
"""A stream waits this long for its process's LISTEN connection before answering 503."""
RETRY_MS = 2000
"""The reconnection delay the stream asks the client's EventSource to use."""
FULL_RETRY_SECONDS = 5
"""``Retry-After`` of a stream refused at a cap: streams end and reconnect all the time."""
NO_LIST = "0"
"""``Last-Event-ID`` of a client that has seen no list: everything is replayed (at most REPLAY_LIMIT)."""


class _Stream:
    """One open stream's queue, and the event loop that serves it."""

    def __init__(self, player_id: str, key: str, loop: asyncio.AbstractEventLoop) -> None:
        self.player_id = player_id
        self.key = key
        self.loop = loop
        self.queue: asyncio.Queue[TriggeredList | None] = asyncio.Queue(QUEUE_SIZE)
        self.ended = False

    def offer(self, item: TriggeredList) -> None:
        """On the loop: queue ``item``, or end the stream when its client does not keep up."""
        if self.ended:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.end()

    def end(self) -> None:
        """On the loop: the stream ends after what it is sending now."""
        self.ended = True
        if not self.queue.full():
            self.queue.put_nowait(None)


class _Listener:
    """The LISTEN thread of one hub, from the first open stream until the last one closes."""

    def __init__(self, hub: PushHub) -> None:
        self.ready = threading.Event()
        self.hub = hub
        self.listener = Listener(
            hub.url,
            (push.CHANNEL,),
            self._heard,
            on_connect=self._connected,
            on_disconnect=self.ready.clear,
            debounce_seconds=0.005,  # a player waits for these: batch only what arrives at once
            name="recsys-push",
        ).start()

    def _heard(self, notifies) -> None:
        self.hub.deliver([n for n in map(push.notice, notifies) if n is not None])

    def _connected(self, first: bool) -> None:
        if not first:
            self.hub.end_all()  # notifications were missed while disconnected: clients replay
        self.ready.set()


class PushHub:
    """This process's open streams by player, fed by a LISTEN thread while any is open."""

    def __init__(self, pool: OnlinePool, url: str) -> None:
        self.pool = pool
        self.url = url
        self.loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        # Weak: a stream whose response never started (client gone at once) leaves by itself, and
        # stops counting against the caps with it.
        self._streams: dict[str, weakref.WeakSet[_Stream]] = {}
        self._all: weakref.WeakSet[_Stream] = weakref.WeakSet()
        self._by_key: dict[str, weakref.WeakSet[_Stream]] = {}
        self._listener: _Listener | None = None

    def open(self, player_id: str, key: str, *, most: int, most_per_key: int) -> tuple[_Stream, _Listener]:
        """Register a stream (on its event loop) opened with API key ``key`` (its prefix); starts the
        LISTEN thread if none runs. Past ``most`` open streams in this process: 503; past
        ``most_per_key`` with this key: 429 (both with ``Retry-After``)."""
        stream = _Stream(player_id, key, asyncio.get_running_loop())
        with self._lock:
            if len(self._all) >= most:
                raise ServiceUnavailableException(
                    f"this server has {most} open streams (RECSYS_STREAMS_MAX); retry later",
                    headers={"Retry-After": str(FULL_RETRY_SECONDS)},
                )
            keyed = self._by_key.setdefault(key, weakref.WeakSet())
            if len(keyed) >= most_per_key:
                raise TooManyRequestsException(
                    f"this API key has {most_per_key} open streams on this server (RECSYS_STREAMS_PER_KEY); "
                    "close one or retry later",
                    headers={"Retry-After": str(FULL_RETRY_SECONDS)},
                )
            keyed.add(stream)
            self._all.add(stream)
            self._streams.setdefault(player_id, weakref.WeakSet()).add(stream)
            if self._listener is None:
                self._listener = _Listener(self)
            return stream, self._listener

    def close(self, stream: _Stream) -> None:
        """Unregister a stream; the last one out stops the LISTEN thread."""
        with self._lock:
            self._all.discard(stream)
            keyed = self._by_key.get(stream.key)
            if keyed is not None:
                keyed.discard(stream)
                if not keyed:
                    del self._by_key[stream.key]
            streams = self._streams.get(stream.player_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._streams[stream.player_id]
            if not any(self._streams.values()) and self._listener is not None:
                self._listener.listener.stop()
                self._listener = None

    def deliver(self, notices: list[push.Notice]) -> None:
        """On the LISTEN thread: hand the notices meant for players with a stream here to the event
        loop, which reads their lists and queues them."""
        with self._lock:
            wanted = [n for n in notices if self._streams.get(n.player_id)]
        if wanted:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone, and the streams too
                asyncio.run_coroutine_threadsafe(self._read(wanted), self.loop)

    async def _read(self, notices: list[push.Notice]) -> None:
        """On the loop: read the noticed lists (by id, as those players' lists) and queue them. When
        the database cannot say, the players' streams end: their clients replay on reconnecting."""
        try:
            async with self.pool.connection() as conn:
                lists = await push.load_pushed(conn, notices)
        except DatabaseUnavailable as exc:
            log.warning("cannot read pushed lists (%s): ending those players' streams", exc.reason)
            with self._lock:
                streams = [s for n in notices for s in self._streams.get(n.player_id, ())]
            for stream in streams:
                stream.end()
            return
        now = datetime.now(UTC)
        for pushed in lists:
            item = deliverable(pushed, now)
            if item is None:
                continue
            with self._lock:
                streams = list(self._streams.get(pushed.player_id, ()))
            for stream in streams:
                stream.offer(item)

    def end_all(self) -> None:
        with self._lock:
            streams = [s for group in self._streams.values() for s in group]
        for stream in streams:
            _call_on_loop(stream, stream.end)


def _call_on_loop(stream: _Stream, callback, *args) -> None:
    try:
        stream.loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed: the server is gone, and the stream with it
        stream.ended = True


def _hub(state: State) -> PushHub:
    hub = state.get("push_hub")
    if hub is None:  # on the event loop: no other coroutine runs between the test and the set
        hub = state.push_hub = PushHub(state.pool, state.serving.url)
    return hub


@get("/v1/players/{player_id:str}/stream", guards=[READ], tags=["events"])
async def player_stream(
    state: State,
    request: Request,
    player_id: FromPath[str],
    last_event_id: Annotated[str | None, HeaderParameter(name="last-event-id", max_length=64)] = None,
) -> ServerSentEvent:
    """The player's triggered lists as Server-Sent Events; send ``Last-Event-ID`` to get what you missed."""
    pool: OnlinePool = state.pool
    start = await _start(pool, player_id)
    hub = _hub(state)
    realtime = state.serving.settings.realtime
    key = prefix_of(request.headers.get("authorization", "").partition(" ")[2].strip()) or ""
    stream, listener = hub.open(player_id, key, most=realtime.streams_max, most_per_key=realtime.streams_per_key)
    try:
        # LISTEN is in place before the backlog is read: a list committed meanwhile is in one or the other.
        if not await _wait(listener.ready, READY_SECONDS):
            raise NotReady("cannot LISTEN for pushes: the database does not answer")
        after, announce = _cursor(last_event_id, start)
        backlog = await _replay(pool, start.player_key, after)
        if backlog is None:  # an id we cannot place: start from the present
            announce = str(start.latest or NO_LIST)
            backlog = await _replay(pool, start.player_key, start.latest)
    except BaseException:
        hub.close(stream)
        raise
    keepalive = state.serving.settings.realtime.stream_keepalive_seconds
    return ServerSentEvent(_events(hub, stream, announce, backlog or [], keepalive))


async def _start(pool: OnlinePool, player_id: str) -> push.StreamStart:
    async with pool.connection() as conn:
        start = await push.stream_start(conn, player_id)
    if start is None:
        raise NotFound("player", player_id)
    return start


async def _replay(pool: OnlinePool, player_key: int, after: uuid.UUID | None) -> list[TriggeredList] | None:
    async with pool.connection() as conn:
        lists = await push.replay(conn, player_key, after, REPLAY_LIMIT)
    if lists is None:
        return None
    now = datetime.now(UTC)
    return [item for item in (deliverable(p, now) for p in lists) if item is not None]


def _cursor(last_event_id: str | None, start: push.StreamStart) -> tuple[uuid.UUID | None, str | None]:
    """(replay after this list, the ``id`` to announce first). No header: from the latest list now
    (announced, so that the client's next reconnection resumes from it)."""
    if last_event_id is None or not last_event_id.strip():
        return start.latest, str(start.latest or NO_LIST)
    if last_event_id.strip() == NO_LIST:
        return None, None
    try:
        return uuid.UUID(last_event_id.strip()), None
    except ValueError:
        return start.latest, str(start.latest or NO_LIST)


async def _wait(event: threading.Event, seconds: float) -> bool:
    deadline = anyio.current_time() + seconds
    while not event.is_set() and anyio.current_time() < deadline:
        await anyio.sleep(0.01)
    return event.is_set()


async def _events(
    hub: PushHub, stream: _Stream, announce: str | None, backlog: list[TriggeredList], keepalive: float
) -> AsyncIterator[ServerSentEventMessage]:
    try:
        yield ServerSentEventMessage(data=None, id=announce, retry=RETRY_MS, comment="connected")
        replayed = set()
        for item in backlog:
            replayed.add(item.recommendation_id)
            yield _message(item)
        while not stream.ended:
            try:
                item = await asyncio.wait_for(stream.queue.get(), keepalive)
            except TimeoutError:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                continue
            if item is None or stream.ended:
                break
            if item.recommendation_id not in replayed:  # committed while the backlog was read
                yield _message(item)
    finally:
        hub.close(stream)


def _message(item: TriggeredList) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        data=msgspec.json.encode(item).decode(), event="recommendation", id=str(item.recommendation_id)
    )


ROUTES = [player_stream]

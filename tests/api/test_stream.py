"""GET /v1/players/{player_id}/stream: Server-Sent Events from a real server on 127.0.0.1.

Lists are triggered through a second app (another "replica", the TestClient's) and reach the
stream's server through PostgreSQL NOTIFY. Every read is bounded by the HTTP client's timeout.
"""

import dataclasses
import json
import socket
import threading
import time

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from api.app import create_app
from tests.api.conftest import SERVING, assert_problem, wait_until
from tests.api.test_events import heartbeats, post

KEEPALIVE = 0.3


@pytest.fixture
def live(world, settings):
    """The app served by uvicorn in a thread: ``http://127.0.0.1:<port>``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings.replace(**SERVING, stream_keepalive_seconds=KEEPALIVE))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    assert wait_until(lambda: server.started, timeout=10)
    assert wait_until(lambda: httpx.get(base + "/readyz").status_code == 200, timeout=10)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


@dataclasses.dataclass
class Event:
    id: str | None = None
    event: str | None = None
    data: str | None = None
    comments: tuple[str, ...] = ()


class Stream:
    """A blocking SSE reader: :meth:`next` returns the next message (comments included)."""

    def __init__(self, base: str, player: str, headers: dict) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(5.0))
        self.response = self.client.send(
            self.client.build_request("GET", f"{base}/v1/players/{player}/stream", headers=headers), stream=True
        )
        self.lines = self.response.iter_lines()

    def next(self) -> Event:
        fields: dict = {"comments": []}
        for line in self.lines:
            if not line:
                if fields.keys() - {"comments"} or fields["comments"]:
                    fields["comments"] = tuple(fields["comments"])
                    return Event(**{k: v for k, v in fields.items() if k in ("id", "event", "data", "comments")})
                continue
            name, _, value = line.partition(":")
            if name == "":
                fields["comments"].append(value.strip())
            else:
                fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    def next_list(self) -> Event:
        """The next ``recommendation`` event, skipping keep-alives."""
        while (event := self.next()).event != "recommendation":
            assert event.comments == ("keep-alive",), event
        return event

    def close(self) -> None:
        self.response.close()
        self.client.close()


@pytest.fixture
def open_stream(live, keys):
    streams = []

    def open_(player: str = "p1", last_event_id: str | None = None, scope: str = "read") -> Stream:
        headers = dict(keys[scope])
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        stream = Stream(live, player, headers)
        streams.append(stream)
        return stream

    yield open_
    for stream in streams:
        stream.close()


def trigger(client, keys, session: str, player: str = "p1", slot: str = "s10") -> dict:
    """Cross the hour in one batch on the other replica; the triggered list it answers with."""
    [rec] = post(client, keys, heartbeats(session, range(0, 61), player=player, slot=slot)).json()["recommendations"]
    return rec


def test_a_list_triggered_on_another_replica_reaches_the_open_stream(open_stream, client, keys):
    stream = open_stream()
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    hello = stream.next()
    assert (hello.id, hello.comments) == ("0", ("connected",))  # no list yet: replay-from-the-start marker
    started = time.monotonic()
    rec = trigger(client, keys, "a")
    event = stream.next_list()
    assert time.monotonic() - started < 3
    assert event.id == rec["recommendation_id"]
    assert json.loads(event.data) == rec
    other = trigger(client, keys, "b", player="p2")  # another player's list stays off this stream
    mine = trigger(client, keys, "c", slot="s3")
    assert stream.next_list().id == mine["recommendation_id"] != other["recommendation_id"]


def test_an_idle_stream_sends_keep_alive_comments(open_stream):
    stream = open_stream()
    stream.next()
    started = time.monotonic()
    assert stream.next().comments == ("keep-alive",)
    assert time.monotonic() - started < KEEPALIVE + 2


def test_a_reconnecting_client_gets_what_it_missed(open_stream, client, keys, world, db):
    first = trigger(client, keys, "a")
    hello = open_stream().next()
    assert hello.id == first["recommendation_id"]  # a fresh stream starts from the latest list
    second, third = trigger(client, keys, "b", slot="s3"), trigger(client, keys, "c", slot="s15")
    with db.begin() as conn:  # a stopped player's list is logged but never shown, live or replayed
        conn.execute(sa.text("UPDATE players SET risk_flag = true WHERE player_id = 'p1'"))
    trigger(client, keys, "d", slot="s18")
    with db.begin() as conn:  # allowed again: the lists made before are shown again (checked at delivery)
        conn.execute(sa.text("UPDATE players SET risk_flag = false WHERE player_id = 'p1'"))

    resumed = open_stream(last_event_id=first["recommendation_id"])
    assert resumed.next().comments == ("connected",)
    assert [resumed.next_list().id for _ in range(2)] == [second["recommendation_id"], third["recommendation_id"]]

    from_start = open_stream(last_event_id="0")
    from_start.next()
    assert [json.loads(from_start.next_list().data) for _ in range(3)] == [first, second, third]

    unknown = open_stream(last_event_id="not-an-id")
    assert unknown.next().id == third["recommendation_id"]  # starts over from the latest list
    assert unknown.next().comments == ("keep-alive",)  # and replays nothing


def test_streams_need_a_known_player_and_the_read_scope(client, keys, world):
    assert_problem(client.get("/v1/players/nobody/stream", headers=keys["read"]), 404)
    assert_problem(client.get("/v1/players/p1/stream", headers=keys["ingest"]), 403)
    assert_problem(client.get("/v1/players/p1/stream"), 401)


# --- protection at delivery (issue 22, failure 1) --------------------------------------------------


def test_a_player_excluded_after_a_list_gets_no_games_on_replay(open_stream, client, keys, db):
    rec = trigger(client, keys, "a")
    assert rec["items"]
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE players SET self_excluded_until = now() + interval '30 days' "
                             "WHERE player_id = 'p1'"))
    stream = open_stream(last_event_id="0")
    stream.next()
    event = stream.next_list()
    body = json.loads(event.data)
    assert event.id == rec["recommendation_id"]  # the cursor moves on: the client does not ask again
    assert (body["items"], body["action"], body["suppressed"]) == ([], None, {"reason": "self_excluded"})
    assert stream.next().comments == ("keep-alive",)  # and nothing else


def test_a_slot_disabled_or_moved_out_of_market_since_is_not_replayed(open_stream, client, keys, db):
    rec = trigger(client, keys, "a")
    first, second, *rest = [item["slot_id"] for item in rec["items"]]
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE slots SET active = false WHERE slot_id = :s"), {"s": first})
        conn.execute(sa.text("UPDATE slots SET markets = '{MT}' WHERE slot_id = :s"), {"s": second})  # p1 is GB
    stream = open_stream(last_event_id="0")
    stream.next()
    body = json.loads(stream.next_list().data)
    assert [item["slot_id"] for item in body["items"]] == rest
    assert body["suppressed"] is None

    with db.begin() as conn:  # every game gone: nothing is sent for that list
        conn.execute(sa.text("UPDATE slots SET active = false WHERE slot_id = ANY(:s)"), {"s": rest})
    again = open_stream(last_event_id="0")
    again.next()
    assert again.next().comments == ("keep-alive",)


def notify(db, recommendation_id: str, player_id: str) -> None:
    """A hand-made payload on the push channel, signed as the application's role signs (any other
    role's NOTIFY is dropped unheard since issue 22: tests/db/test_analytics.py)."""
    with db.begin() as conn:
        conn.execute(sa.text("SELECT recsys_notify('recsys_push', :payload)"),
                     {"payload": json.dumps({"recommendation_id": recommendation_id, "player_id": player_id})})


def test_a_forged_notification_pushes_nothing_the_player_may_not_see(open_stream, client, keys, db):
    stream = open_stream()
    stream.next()
    other = trigger(client, keys, "b", player="p2")
    theirs = open_stream("p2")
    theirs.next()
    notify(db, other["recommendation_id"], "p1")  # another player's list, addressed to p1
    mine = trigger(client, keys, "a")
    event = stream.next_list()
    assert event.id == mine["recommendation_id"]  # the forged one never arrived before it
    later = trigger(client, keys, "c", player="p2", slot="s3")
    assert theirs.next_list().id == later["recommendation_id"]  # nor at its owner's stream

    with db.begin() as conn:
        conn.execute(sa.text("UPDATE players SET self_excluded_until = now() + interval '30 days' "
                             "WHERE player_id = 'p1'"))
    notify(db, mine["recommendation_id"], "p1")  # a stored list of p1's, pushed again after the exclusion
    body = json.loads(stream.next_list().data)
    assert (body["items"], body["suppressed"]) == ([], {"reason": "self_excluded"})

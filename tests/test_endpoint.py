"""``nexios.endpoint``: the protocol served by ``app.channels_endpoint``, in process.

Every test drives the endpoint the way a client does: real protocol frames through the
in-process test client (memory layer, memory history). The same endpoint over real
sockets, many processes and faults is in ``test_client.py`` and the browser tests.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nexios import NexiosApp
from nexios.endpoint import CLIENT_PATH, PRESENCE_PREFIX, Identity, ProtocolFramer
from nexios.exceptions import ProtocolError, WebSocketDisconnect
from nexios.framing import FrameSet
from nexios.limits import Limits
from nexios.protocol import COMMAND_TYPES, ConnectCommand, parse_command
from nexios.runtime import Channel
from nexios.security import AuthError
from nexios.testing import TestClient
from nexios.websockets import ChannelBox, WebSocket
from tests.support.protocol_conn import Conn, protocol

TIMEOUT = 5.0
JS = Path(__file__).parents[1] / "clients" / "js" / "nexios.js"


def make_app(**options: Any) -> NexiosApp:
    app = NexiosApp(channels_url="memory://", history_url="memory://", limits=Limits.unlimited())

    @app.post("/send/{group}")
    async def send(group: str) -> dict[str, Any]:
        sent = await ChannelBox.group_send(group, {"from": "http"}, save_history=True)
        return {"seq": sent.seq}

    app.channels_endpoint("/connect", **options)
    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app(), timeout=TIMEOUT) as client:
        yield client


# ---------------------------------------------------------------------- connection


def test_a_client_without_the_subprotocol_is_told_why_and_closed(client: TestClient) -> None:
    with client.websocket_connect("/connect") as ws:
        assert ws.receive_json() == {
            "type": "disconnect",
            "code": 4502,
            "reason": "offer the WebSocket subprotocol 'nexios.v1'",
            "reconnect": False,
        }
        assert ws.wait_closed() == 4502


def test_connect_reply_and_commands_before_it(client: TestClient) -> None:
    with client.websocket_connect("/connect", subprotocols=["nexios.v1"]) as ws:
        conn = Conn(ws)
        error = conn.refused("subscribe", group="room")
        assert error["code"] == 400 and "connect" in error["message"]
        result = conn.call("connect")
        assert set(result) == {"client", "ping", "expires", "groups"}
        assert (result["ping"], result["expires"], result["groups"]) == (25.0, None, {})
        assert conn.refused("connect")["code"] == 400  # once only
        conn.nothing_more()


def test_no_connect_frame_in_time_is_4002() -> None:
    with (
        TestClient(make_app(connect_timeout=0.2), timeout=TIMEOUT) as client,
        client.websocket_connect("/connect", subprotocols=["nexios.v1"]) as ws,
    ):
        push = ws.receive_json()
        assert (push["type"], push["code"], push["reconnect"]) == ("disconnect", 4002, True)
        assert ws.wait_closed() == 4002


def test_a_malformed_connect_is_refused_and_closed_with_4503(client: TestClient) -> None:
    with client.websocket_connect("/connect", subprotocols=["nexios.v1"]) as ws:
        ws.send_json({"id": 1, "type": "connect", "groups": {"g": {"sinse": 1}}})
        assert ws.receive_json()["error"]["code"] == 400
        assert ws.receive_json()["code"] == 4503
        assert ws.wait_closed() == 4503


def test_pings_are_pushed_and_pongs_need_no_reply() -> None:
    with (
        TestClient(make_app(ping_interval=0.05), timeout=TIMEOUT) as client,
        client.websocket_connect("/connect", subprotocols=["nexios.v1"]) as ws,
    ):
        conn = Conn(ws)
        assert conn.call("connect")["ping"] == 0.05
        assert conn.push("ping") == {"type": "ping"}
        ws.send_json({"type": "pong"})
        assert conn.push("ping") == {"type": "ping"}  # and the connection is still served
        assert conn.call("ping") == {}


# ---------------------------------------------------------------------- groups


def test_connect_subscribes_many_groups_and_refusals_stay_per_group() -> None:
    async def no_secrets(channel: Channel, group: str) -> bool:
        return not group.startswith("secret")

    app = make_app(can_subscribe=no_secrets)
    with TestClient(app, timeout=TIMEOUT) as client:
        with client.websocket_connect("/connect", subprotocols=["nexios.v1"]) as ws:
            conn = Conn(ws)
            result = conn.call("connect", groups={"a": {}, "b": {"presence": True}, "secret": {}})
            groups = result["groups"]
            assert groups["a"] == {"epoch": "", "seq": 0, "complete": True, "recovered": 0}
            assert groups["b"]["presence"] == [{"id": result["client"], "info": {}}]
            assert groups["secret"]["error"]["code"] == 403
            client.post("/send/a")
            client.post("/send/b")
            pushed = conn.messages(2)
            assert [(m["group"], m["seq"], m["data"]) for m in pushed] == [
                ("a", 1, {"from": "http"}),
                ("b", 1, {"from": "http"}),
            ]


def test_messages_from_any_handler_reach_every_subscriber_built_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    original = ProtocolFramer.__call__

    def counting(self: ProtocolFramer, frames: FrameSet) -> Any:
        built.append(frames.seq)
        return original(self, frames)

    monkeypatch.setattr(ProtocolFramer, "__call__", counting)
    with contextlib.ExitStack() as stack:
        subscribers = [stack.enter_context(protocol(client)) for _ in range(3)]
        for conn in subscribers:
            assert conn.call("subscribe", group="room")["seq"] == 0
        for _ in range(5):
            assert client.post("/send/room").status_code == 200
        frames = [[orjson.dumps(m) for m in conn.messages(5)] for conn in subscribers]
    assert frames[0] == frames[1] == frames[2]
    assert [orjson.loads(f)["seq"] for f in frames[0]] == [1, 2, 3, 4, 5]
    assert built == [1, 2, 3, 4, 5]  # one message push per message, for all three


def test_subscribe_errors(client: TestClient) -> None:
    with protocol(client) as conn:
        assert conn.call("subscribe", group="room")["complete"] is True
        assert conn.refused("subscribe", group="room")["code"] == 409
        assert conn.refused("subscribe", group="bad\x00name")["code"] == 404
        assert conn.refused("subscribe", group="room", sinse=1)["code"] == 400
        conn.nothing_more()


def test_the_subscription_limit_is_413() -> None:
    with TestClient(make_app(max_subscriptions=2), timeout=TIMEOUT) as client:
        with protocol(client) as conn:
            conn.call("subscribe", group="a")
            conn.call("subscribe", group="b")
            error = conn.refused("subscribe", group="c")
            assert error["code"] == 413 and "2 subscriptions" in error["message"]
            conn.call("unsubscribe", group="a")
            conn.call("subscribe", group="c")


def test_groups_not_served_are_404() -> None:
    with TestClient(make_app(groups=lambda name: name.startswith("room:")), timeout=TIMEOUT) as c:
        with protocol(c) as conn:
            conn.call("subscribe", group="room:1")
            for kind in ("subscribe", "history", "presence", "unsubscribe"):
                assert conn.refused(kind, group="other")["code"] == 404
            assert conn.refused("publish", group="other", data=1)["code"] == 404


def test_unsubscribe_stops_the_pushes_and_is_idempotent(client: TestClient) -> None:
    with protocol(client) as conn:
        conn.call("subscribe", group="a")
        conn.call("subscribe", group="b")
        assert conn.call("unsubscribe", group="a") == {}
        assert conn.call("unsubscribe", group="a") == {}
        client.post("/send/a")
        client.post("/send/b")
        assert conn.push("message")["group"] == "b"
        conn.nothing_more()


def test_subscribe_with_since_replays_exactly_what_was_missed(client: TestClient) -> None:
    with protocol(client) as conn:
        conn.call("subscribe", group="room")
        for _ in range(3):
            client.post("/send/room")
        first = conn.messages(3)
        epoch = first[0]["epoch"]
        conn.call("unsubscribe", group="room")
        for _ in range(4):
            client.post("/send/room")
        command_id = conn.send({"type": "subscribe", "group": "room", "since": 3, "epoch": epoch})
        reply = conn.reply(command_id)["result"]
        assert reply == {"epoch": epoch, "seq": 7, "complete": True, "recovered": 4}
        # The replay came before the reply, as pushes: the client keeps them until then.
        assert [m["seq"] for m in conn.pushes if m["type"] == "message"] == [4, 5, 6, 7]
        conn.pushes.clear()
        conn.call("unsubscribe", group="room")
        stale = conn.call("subscribe", group="room", since=3, epoch="another")
        assert stale == {"epoch": epoch, "seq": 7, "complete": False, "recovered": 0}
        conn.nothing_more()


# ---------------------------------------------------------------------- publish


def test_publish_saves_dedupes_and_reaches_the_publisher(client: TestClient) -> None:
    with protocol(client) as conn:
        conn.call("subscribe", group="room")
        first = conn.call("publish", group="room", data={"n": 1}, idempotency_key="k1")
        again = conn.call("publish", group="room", data={"n": 1}, idempotency_key="k1")
        assert first == again and first["seq"] == 1 and len(first["epoch"]) == 16
        assert conn.call("publish", group="room", data="text")["seq"] == 2
        pushed = conn.messages(2)
        assert [(m["seq"], m["data"]) for m in pushed] == [(1, {"n": 1}), (2, "text")]
        history = conn.call("history", group="room", since=0)
        assert [m["data"] for m in history["messages"]] == [{"n": 1}, "text"]
        assert conn.refused("publish", group="room", data=None)["code"] == 400
        conn.nothing_more()


def test_publish_hooks_validate_transform_and_refuse() -> None:
    async def check(channel: Channel, group: str, data: Any) -> Any:
        if data == "too long":
            raise ProtocolError(413, "at most 3 characters")
        return {"text": str(data).upper(), "by": channel.metadata.get("name")}

    async def not_in_news(channel: Channel, group: str) -> bool:
        return group != "news"

    app = make_app(
        on_publish=check,
        can_publish=not_in_news,
        history=lambda group: group != "live",
        authenticate=lambda ws, token: _identity(token),
    )
    with TestClient(app, timeout=TIMEOUT) as client:
        with protocol(client, token="ada") as conn:
            conn.call("subscribe", group="live")
            conn.call("subscribe", group="news")
            assert conn.call("publish", group="live", data="hi") == {}  # not saved: no seq
            message = conn.push("message")
            assert message == {
                "type": "message",
                "group": "live",
                "data": {"text": "HI", "by": "ada"},
            }
            error = conn.refused("publish", group="live", data="too long")
            assert error == {"code": 413, "message": "at most 3 characters"}
            assert conn.refused("publish", group="news", data="x")["code"] == 403
            conn.nothing_more()
    with TestClient(make_app(can_publish=False), timeout=TIMEOUT) as client:
        with protocol(client) as conn:
            error = conn.refused("publish", group="room", data=1)
            assert error["code"] == 403 and "client publishes" in error["message"]


async def _identity(token: str | None) -> Identity | None:
    if token is None:
        return None
    return Identity(token, {"name": token})


# ---------------------------------------------------------------------- history


def test_history_pages_and_epochs(client: TestClient) -> None:
    with protocol(client) as conn:
        for _ in range(5):
            client.post("/send/room")
        newest = conn.call("history", group="room", limit=2)
        assert [m["seq"] for m in newest["messages"]] == [4, 5]
        assert (newest["seq"], newest["complete"]) == (5, True)
        after = conn.call("history", group="room", since=1, limit=2, epoch=newest["epoch"])
        assert [m["seq"] for m in after["messages"]] == [2, 3]
        error = conn.refused("history", group="room", since=1, epoch="gone")
        assert error["code"] == 416
        assert conn.refused("history", group="room", limit=1001)["code"] == 413


# ---------------------------------------------------------------------- presence


def test_presence_snapshot_then_diffs(client: TestClient) -> None:
    async def identify(ws: WebSocket, token: str | None) -> Identity:
        return Identity(token, {"name": token})

    with TestClient(make_app(authenticate=identify), timeout=TIMEOUT) as client:
        with protocol(client, token="ada") as ada:
            result = ada.call("subscribe", group="room", presence=True)
            assert result["presence"] == [{"id": ada.client, "info": {"name": "ada"}}]
            assert ada.push("join")["member"]["id"] == ada.client  # its own join, after
            with protocol(client, token="bob") as bob:
                bob.call("subscribe", group="room")
                join = ada.push("join")
                assert join == {
                    "type": "join",
                    "group": "room",
                    "member": {"id": bob.client, "info": {"name": "bob"}},
                }
                members = ada.call("presence", group="room")["members"]
                assert {m["info"]["name"] for m in members} == {"ada", "bob"}
                bob.call("unsubscribe", group="room")
                leave = ada.push("leave")
                assert (leave["member"]["id"], leave["reason"]) == (bob.client, "left")
                bob.call("subscribe", group="room")
                assert ada.push("join")["member"]["id"] == bob.client
            # bob's socket ended
            leave = ada.push("leave")
            assert (leave["member"]["id"], leave["reason"]) == (bob.client, "disconnected")
            # The companion group is hidden: not in presence, not in the groups' names seen.
            assert [m.metadata["name"] for m in client.run(ChannelBox.presence("room"))] == ["ada"]
            groups = client.run(ChannelBox.show_groups())
            assert set(groups) == {"room", PRESENCE_PREFIX + "room"}
            assert client.run(ChannelBox.presence(PRESENCE_PREFIX + "room")) == []
            ada.nothing_more()


def test_presence_policy() -> None:
    async def no(channel: Channel, group: str) -> bool:
        return False

    with TestClient(make_app(can_see_presence=no), timeout=TIMEOUT) as client:
        with protocol(client) as conn:
            assert conn.refused("subscribe", group="room", presence=True)["code"] == 403
            assert conn.refused("presence", group="room")["code"] == 403
            assert conn.call("subscribe", group="room")["complete"] is True


def test_the_app_removing_a_member_is_an_unsubscribed_push(client: TestClient) -> None:
    with protocol(client) as conn:
        conn.call("subscribe", group="room", presence=True)

        async def remove() -> None:
            channel = (await ChannelBox.show_groups())["room"][conn.client]
            await ChannelBox.remove_channel_from_group(channel, "room")

        client.run(remove())
        push = conn.push("unsubscribed")
        assert push == {
            "type": "unsubscribed",
            "group": "room",
            "code": 410,
            "reason": "removed by the server",
            "resubscribe": False,
        }
        # Its own presence diffs, seen while it watched: it joined, it was removed.
        assert conn.push("join")["member"]["id"] == conn.client
        assert conn.push("leave")["reason"] == "left"
        client.post("/send/room")  # not for this client any more
        conn.call("subscribe", group="room")  # it may subscribe again
        conn.nothing_more()


# ---------------------------------------------------------------------- tokens


def token_app(**options: Any) -> NexiosApp:
    async def authenticate(ws: WebSocket, token: str | None) -> Identity | None:
        if token == "banned":
            raise AuthError(403, "banned")
        if token is None or not token.startswith("valid"):
            return None
        if token == "valid-expired":
            raise ProtocolError(419, "the token expired")
        ttl = float(token.rsplit("-", 1)[1]) if token.count("-") else 600.0
        return Identity(token, {"token": token}, time.time() + ttl)

    return make_app(authenticate=authenticate, **options)


@pytest.mark.parametrize(
    ("token", "code", "close"),
    [(None, 401, 4500), ("forged", 401, 4500), ("valid-expired", 419, 4001), ("banned", 403, 4501)],
)
def test_refused_tokens(token: str | None, code: int, close: int) -> None:
    with (
        TestClient(token_app(), timeout=TIMEOUT) as client,
        client.websocket_connect("/connect", subprotocols=["nexios.v1"]) as ws,
    ):
        ws.send_json({"id": 1, "type": "connect", "token": token})
        assert ws.receive_json()["error"]["code"] == code
        disconnect = ws.receive_json()
        assert (disconnect["type"], disconnect["code"]) == ("disconnect", close)
        assert disconnect["reconnect"] is (close < 4500)
        assert ws.wait_closed() == close


def test_an_unrefreshed_token_ends_the_connection_with_4001() -> None:
    with TestClient(token_app(), timeout=TIMEOUT) as client:
        with protocol(client, token="valid-0.3") as conn:
            push = conn.push("disconnect")
            assert (push["code"], push["reason"], push["reconnect"]) == (
                4001,
                "token expired",
                True,
            )
            assert conn.ws.wait_closed() == 4001


def test_refresh_extends_the_token_and_a_bad_one_closes_4500() -> None:
    with TestClient(token_app(), timeout=TIMEOUT) as client:
        with protocol(client, token="valid-0.5") as conn:
            refreshed = conn.call("refresh", token="valid-600")
            assert 599 < refreshed["expires"] <= 600
            conn.call("subscribe", group="room")
            time.sleep(0.6)  # past the first token's end: the connection stays
            assert conn.call("ping") == {}
            assert conn.refused("refresh", token="forged")["code"] == 401
            assert conn.push("disconnect")["code"] == 4500
            assert conn.ws.wait_closed() == 4500


# ---------------------------------------------------------------------- frames


def test_framer_builds_resync_and_unsaved_pushes() -> None:
    framer = ProtocolFramer()
    notice = orjson.dumps(
        {
            "type": "nexios.resync",
            "group": "g",
            "reason": "epoch_changed",
            "epoch": "e2",
            "last_seq": 0,
        }
    )
    resync = framer(FrameSet("json", notice, group="g", notice="resync"))
    assert orjson.loads(resync.payload) == {
        "type": "resync",
        "group": "g",
        "epoch": "e2",
        "seq": 0,
        "reason": "epoch",
    }
    gap = orjson.dumps({"reason": "gap", "epoch": "e1", "last_seq": 9})
    assert (
        orjson.loads(framer(FrameSet("json", gap, group="g", notice="resync")).payload)["reason"]
        == "gap"
    )
    text = framer(FrameSet("text", "é".encode(), group="g"))
    assert orjson.loads(text.payload) == {"type": "message", "group": "g", "data": "é"}
    raw = framer(FrameSet("bytes", b"\x00\xff", group="g", seq=3, epoch="e"))
    assert orjson.loads(raw.payload)["data"] == "AP8="
    assert text.is_text and raw.is_text


def test_the_browser_client_is_served(client: TestClient) -> None:
    response = client.get(CLIENT_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.content == JS.read_bytes()
    etag = response.headers["etag"]
    again = client.get(CLIENT_PATH, headers={"if-none-match": etag})
    assert (again.status_code, again.content) == (304, b"")


# ---------------------------------------------------------------------- fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
frame_like = st.dictionaries(
    st.sampled_from(
        ("id", "type", "group", "since", "epoch", "presence", "data", "limit", "token", "x")
    ),
    st.one_of(json_values, st.sampled_from(COMMAND_TYPES), st.integers(0, 2**60)),
    max_size=6,
)
near_valid = st.one_of(
    st.fixed_dictionaries(
        {
            "id": st.integers(1, 10**6),
            "type": st.sampled_from(("subscribe", "presence", "history", "unsubscribe")),
            "group": st.text(max_size=300),
        }
    ),
    st.fixed_dictionaries(
        {
            "id": st.integers(1, 10**6),
            "type": st.just("history"),
            "group": st.just("g"),
            "limit": st.integers(-5, 5000),
        }
    ),
)
frames = st.one_of(
    frame_like.map(lambda f: orjson.dumps(f).decode()),
    near_valid.map(lambda f: orjson.dumps(f).decode()),
    st.text(max_size=30),
    st.binary(max_size=30),
)


def expected_error(frame: str | bytes) -> int | None:
    """The code the server must answer ``frame`` with (None: it is a valid command)."""
    if isinstance(frame, bytes):
        return 400
    try:
        command = parse_command(frame)
    except ProtocolError as error:
        return int(error.code)
    return 400 if isinstance(command, ConnectCommand) else None


def test_fuzz_every_malformed_frame_gets_its_code_and_the_connection_stays(
    client: TestClient,
) -> None:
    with protocol(client) as conn:
        answered: list[int] = []

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(frames)
        def one(frame: str | bytes) -> None:
            code = expected_error(frame)
            assume(code is not None)
            if isinstance(frame, bytes):
                conn.ws.send_bytes(frame)
            else:
                conn.ws.send_text(frame)
            answer = conn.ws.receive_json()
            got = answer["error"]["code"] if "error" in answer else answer.get("code")
            assert got == code, (frame, answer)
            if "id" in answer:
                assert answer["id"] == orjson.loads(frame)["id"]
            else:
                assert answer["type"] == "error"
            answered.append(code)
            assert conn.call("ping") == {}  # usable

        one()
        assert {400, 404, 413} <= set(answered)
        try:
            conn.nothing_more()
        except WebSocketDisconnect:
            pytest.fail("the fuzzed connection was closed")

"""nexios.security: the Origin allowlist and the auth hook, at the handshake.

A real server answers the full matrix of origins by credentials (what a browser or an
attacker sees: 101, 401 or 403 — never a 101 where it should not be); the in-process
client covers the rest: per-route overrides, the same-origin default, the auth hook's
statuses, ``ws.user``, group policies, and that tokens never reach the logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from nexios import NexiosApp, WSRouter
from nexios.exceptions import ConfigurationError
from nexios.security import AuthError, OriginPolicy, normalize_origin, subprotocol_token
from nexios.testing import TestClient, WebSocketDenied
from nexios.websockets import WebSocket
from tests.support import security_app
from tests.support.server import Server, serve

ORIGINS: dict[str, str | None] = {
    "allowed": "https://example.com",
    "evil": "https://evil.com",
    "look-alike": "https://evil-example.com",
    "suffix": "https://example.com.evil.com",
    "missing": None,
    "null": "null",
}
CREDENTIALS: dict[str, str | None] = {"none": None, "expired": "expired", "valid": "valid"}
SECRET = "s3cr3t-token-value"


def expected_status(origin: str, credential: str) -> int:
    if origin not in ("allowed", "missing"):
        return 403
    return 101 if credential == "valid" else 401


async def handshake_status(url: str, origin: str | None, token: str | None, **kwargs: Any) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=5,
            **kwargs,
        ) as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), 5) == "user=ada"
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("tests.support.security_app:app") as running:
        yield running


# --------------------------------------------------------------------------- real server


@pytest.mark.anyio
async def test_handshake_matrix_over_a_real_server(server: Server) -> None:
    url = server.ws_url("/ws")
    seen = {
        (origin, credential): await handshake_status(url, ORIGINS[origin], CREDENTIALS[credential])
        for origin in ORIGINS
        for credential in CREDENTIALS
    }
    expected = {key: expected_status(*key) for key in seen}
    assert seen == expected
    log = server.log()
    assert "origin 'https://evil-example.com' not allowed; handshake refused (403)" in log
    assert "authentication failed (401): token expired" in log


@pytest.mark.anyio
async def test_banned_user_gets_403_and_public_route_admits_anyone(server: Server) -> None:
    assert await handshake_status(server.ws_url("/ws"), None, "banned") == 403
    async with connect(server.ws_url("/public"), origin="https://evil.com") as ws:  # type: ignore[arg-type]
        await ws.send("open to all")
        assert await ws.recv() == "open to all"


@pytest.mark.anyio
async def test_token_in_query_cookie_or_subprotocol(server: Server) -> None:
    async def user_of(path: str, **kwargs: Any) -> str:
        async with connect(server.ws_url(path), **kwargs) as ws:
            await ws.send("who")
            return str(await ws.recv())

    assert await user_of("/ws?token=valid") == "user=ada"
    assert await user_of("/ws", additional_headers={"Cookie": "session=admin"}) == "user=root"
    assert await user_of("/ws", subprotocols=["bearer", "valid"]) == "user=ada"  # type: ignore[list-item]


@pytest.mark.anyio
async def test_tokens_never_reach_the_server_log(server: Server) -> None:
    # Refused by origin, refused by auth, admitted then crashing: the token rides in the
    # query string each time and must appear nowhere in the log (ours or uvicorn's).
    with pytest.raises(InvalidStatus):
        async with connect(server.ws_url(f"/ws?token={SECRET}"), origin="https://evil.com"):  # type: ignore[arg-type]
            pass
    with pytest.raises(InvalidStatus):
        async with connect(server.ws_url(f"/ws?token={SECRET}")):
            pass
    credentials = {"Authorization": f"Bearer {SECRET}", "Cookie": f"session={SECRET}"}
    with pytest.raises(InvalidStatus):
        async with connect(server.ws_url("/ws"), additional_headers=credentials):
            pass
    async with connect(server.ws_url(f"/crash?token=valid&x={SECRET}")) as ws:
        await ws.send("boom")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    log = server.wait_for_log("handler failed on purpose")
    assert SECRET not in log
    assert "/crash?token=<redacted>&x=<redacted>" in log
    assert "< authorization: <redacted>" in log.lower()  # websockets' debug header dump


@pytest.mark.anyio
async def test_group_policy_reads_the_authenticated_user(server: Server) -> None:
    async with connect(server.ws_url("/room/admin-ops?token=admin")) as root:
        assert await root.recv() == "joined"
    async with connect(server.ws_url("/room/admin-ops?token=valid")) as ada:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ada.recv(), 5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "not allowed in this group")
    async with connect(server.ws_url("/room/lobby?token=valid")) as ada:
        assert await ada.recv() == "joined"


@pytest.mark.anyio
async def test_same_origin_default_over_a_real_server() -> None:
    with serve("tests.support.security_app:same_origin_app") as running:
        url = running.ws_url("/ws")
        port = running.port

        async def status(origin: str | None) -> int:
            try:
                async with connect(url, origin=origin) as ws:  # type: ignore[arg-type]
                    await ws.send("x")
                    assert await ws.recv() == "x"
                    return 101
            except InvalidStatus as refused:
                return refused.response.status_code

        assert await status(None) == 101
        assert await status(f"http://127.0.0.1:{port}") == 101
        assert await status(f"HTTP://127.0.0.1:{port}") == 101
        assert await status(f"https://127.0.0.1:{port}") == 403  # scheme differs
        assert await status(f"http://127.0.0.1:{port + 1}") == 403
        assert await status(f"http://localhost:{port}") == 403
        assert await status("http://127.0.0.1") == 403  # port 80 implied
        assert await status("null") == 403


# --------------------------------------------------------------------------- in process


def test_in_process_statuses() -> None:
    with TestClient(security_app.app) as client:
        with client.websocket_connect(
            "/ws", headers={"origin": "https://example.com", "authorization": "Bearer valid"}
        ) as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "user=ada"
        cases = [
            ({"origin": "https://evil-example.com", "authorization": "Bearer valid"}, 403),
            ({"origin": "https://example.com"}, 401),
            ({"authorization": "Bearer expired"}, 401),
            ({"authorization": "Bearer banned"}, 403),
            ({"authorization": "Bearer nobody"}, 401),
        ]
        for headers, status in cases:
            with (
                pytest.raises(WebSocketDenied) as denied,
                client.websocket_connect("/ws", headers=headers),
            ):
                pass
            assert denied.value.status_code == status, headers


def test_refused_handshakes_never_reach_middleware_or_handler() -> None:
    ran: list[str] = []

    async def middleware(ws: WebSocket, call_next: Any) -> None:
        ran.append("middleware")
        await call_next()

    async def auth(ws: WebSocket) -> str | None:
        ran.append("auth")
        return ws.query_params.get("user")

    app = NexiosApp(ws_middleware=[middleware], ws_auth=auth)

    @app.ws_route("/ws")
    async def handler(ws: WebSocket) -> None:
        ran.append(f"handler user={ws.user} scope={ws.scope['user']}")
        await ws.accept()
        await ws.close()

    with TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as denied:
            with client.websocket_connect("/ws?user=ada", headers={"origin": "https://evil.com"}):
                pass
        assert (denied.value.status_code, ran) == (403, [])
        with pytest.raises(WebSocketDenied) as denied, client.websocket_connect("/ws"):
            pass
        assert (denied.value.status_code, ran) == (401, ["auth"])
        ran.clear()
        with client.websocket_connect(
            "/ws?user=ada", headers={"origin": "http://testserver"}
        ) as ws:
            assert ws.wait_closed() == 1000
        assert ran == ["auth", "middleware", "handler user=ada scope=ada"]


def test_route_settings_override_the_app_and_survive_mounting() -> None:
    async def deny_all(ws: WebSocket) -> None:
        return None

    async def let_in(ws: WebSocket) -> str:
        return "route-user"

    app = NexiosApp(allowed_origins=["https://app.example"], ws_auth=deny_all)

    async def echo_user(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(str(ws.user))
        await ws.close()

    app.ws_route("/app-rules", echo_user)
    app.ws_route("/open", echo_user, allowed_origins="*", auth=False)
    router = WSRouter(prefix="/api")
    router.add_ws_route("/mine", echo_user, allowed_origins=["https://other.example"], auth=let_in)
    app.mount_ws_router(router)

    def status(path: str, origin: str) -> int | str:
        try:
            with client.websocket_connect(path, headers={"origin": origin}) as ws:
                return ws.receive_text()
        except WebSocketDenied as denied:
            return denied.status_code

    with TestClient(app) as client:
        assert status("/app-rules", "https://app.example") == 401
        assert status("/app-rules", "https://other.example") == 403
        assert status("/open", "https://anywhere.example") == "None"
        assert status("/api/mine", "https://other.example") == "route-user"
        assert status("/api/mine", "https://app.example") == 403


def test_auth_hook_that_crashes_refuses_with_500(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(ws: WebSocket) -> str:
        raise LookupError("session store down")

    app = NexiosApp(ws_auth=broken)

    @app.ws_route("/ws")
    async def handler(ws: WebSocket) -> None:
        raise AssertionError("must not run")

    with caplog.at_level(logging.INFO, logger="nexios"), TestClient(app) as client:
        with pytest.raises(WebSocketDenied) as denied:
            with client.websocket_connect(f"/ws?token={SECRET}"):
                pass
    assert denied.value.status_code == 500
    assert "WebSocket /ws: auth hook" in caplog.text
    assert SECRET not in caplog.text


def test_tokens_in_query_never_reach_nexios_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="nexios"), TestClient(security_app.app) as client:
        for headers in ({"origin": "https://evil.com"}, {"authorization": "Bearer expired"}):
            with (
                pytest.raises(WebSocketDenied),
                client.websocket_connect(f"/ws?token={SECRET}", headers=headers),
            ):
                pass
        with client.websocket_connect(f"/crash?token=valid&secret={SECRET}") as ws:
            ws.send_text("boom")
            assert ws.wait_closed() == 1011
        with pytest.raises(WebSocketDenied), client.websocket_connect(f"/nowhere?token={SECRET}"):
            pass
    text = caplog.text
    assert "origin 'https://evil.com' not allowed" in text
    assert "raised; closing with 1011" in text
    assert "No WebSocket route for '/nowhere'" in text
    assert SECRET not in text
    assert all(SECRET not in str(record.args) for record in caplog.records)


def test_ws_user_is_none_without_a_hook() -> None:
    app = NexiosApp()

    @app.ws_route("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(f"{ws.user!r} {'user' in ws.scope}")
        await ws.close()

    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "None False"


# --------------------------------------------------------------------------- origin rules


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com", ("https", "example.com", 443)),
        ("HTTPS://Example.COM:443", ("https", "example.com", 443)),
        ("http://example.com", ("http", "example.com", 80)),
        ("wss://example.com", ("https", "example.com", 443)),
        ("ws://example.com:8080", ("http", "example.com", 8080)),
        ("http://[::1]:8000", ("http", "[::1]", 8000)),
        ("https://example.com/", None),
        ("https://user@example.com", None),
        ("https://example.com:99999", None),
        ("https://example.com:0", None),
        ("ftp://example.com", None),
        ("example.com", None),
        ("null", None),
        ("", None),
    ],
)
def test_normalize_origin(value: str, expected: tuple[str, str, int] | None) -> None:
    assert normalize_origin(value) == expected


def _scope(origin: str | None, host: str = "example.com", scheme: str = "wss") -> dict[str, Any]:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("https://EXAMPLE.com:443", True),
        ("https://example.com:8443", False),
        ("http://example.com", False),
        ("https://evil-example.com", False),
        ("https://example.com.evil.com", False),
        ("https://sub.example.com", False),
        ("https://xample.com", False),
        ("https://example.co", False),
        ("null", False),
        ("garbage", False),
        (None, True),
    ],
)
def test_allowlist_is_exact(origin: str | None, allowed: bool) -> None:
    policy = OriginPolicy(["https://example.com/"])
    assert (policy.refusal(_scope(origin)) is None) is allowed


def test_same_origin_policy() -> None:
    policy = OriginPolicy()
    assert policy.refusal(_scope("https://example.com")) is None
    assert policy.refusal(_scope("https://example.com", host="example.com:443")) is None
    assert (
        policy.refusal(_scope("http://example.com:8000", host="Example.com:8000", scheme="ws"))
        is None
    )
    assert policy.refusal(_scope("http://example.com", scheme="wss")) == "http://example.com"
    assert policy.refusal(_scope("https://example.com", host="evil.com")) is not None
    assert policy.refusal(_scope("https://example.com", host="bad host")) is not None
    no_host = {"type": "websocket", "scheme": "ws", "headers": [(b"origin", b"http://a.b")]}
    assert policy.refusal(no_host) == "http://a.b"


def test_wildcard_null_and_duplicate_origin_headers() -> None:
    assert OriginPolicy("*").refusal(_scope("https://anything.example")) is None
    assert OriginPolicy("*").refusal(_scope("null")) == "null"
    assert OriginPolicy(["*", "null"]).refusal(_scope("null")) is None
    assert OriginPolicy(["null"]).refusal(_scope("https://example.com")) is not None
    doubled = _scope("https://example.com")
    doubled["headers"].append((b"origin", b"https://example.com"))
    assert OriginPolicy(["https://example.com"]).refusal(doubled) == "(several Origin headers)"
    assert OriginPolicy(["https://bücher.example"]).origins == {
        ("https", "xn--bcher-kva.example", 443)
    }


@pytest.mark.parametrize(
    "bad", ["example.com", "https://example.com/path", "*.example.com", "https://", 42]
)
def test_bad_allowlist_entries_fail_at_registration(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        NexiosApp(allowed_origins=[bad])
    app = NexiosApp()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()

    with pytest.raises(ConfigurationError):
        app.ws_route("/ws", handler, allowed_origins=[bad])


def test_bad_auth_hooks_fail_at_registration() -> None:
    def sync_auth(ws: WebSocket) -> str:
        return "x"

    with pytest.raises(ConfigurationError, match="async def auth"):
        NexiosApp(ws_auth=sync_auth)  # type: ignore[arg-type]
    app = NexiosApp()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()

    with pytest.raises(ConfigurationError, match="async def auth"):
        app.ws_route("/ws", handler, auth="token")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="HTTP error status"):
        AuthError(200, "fine")


def test_subprotocol_token() -> None:
    scope = {"type": "websocket", "subprotocols": ["chat", "bearer", "tok"]}
    ws = WebSocket(scope, None, None)
    assert subprotocol_token(ws) == "tok"
    assert subprotocol_token(ws, marker="chat") == "bearer"
    assert (
        subprotocol_token(WebSocket({"type": "websocket", "subprotocols": ["bearer"]}, None, None))
        is None
    )

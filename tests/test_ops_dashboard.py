"""The dashboard's server side: nothing without the token, the cookie it sets, the page
and its numbers — every process's on one Redis; and its script's helpers under node."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nexios import NexiosApp
from nexios.exceptions import ConfigurationError
from nexios.metrics import MULTIPROC_ENV
from nexios.ops.dashboard import COOKIE, DASHBOARD_PATH
from nexios.testing import AsyncTestClient
from tests.support.ops_app import make_app
from tests.support.redis import RedisServer

pytestmark = pytest.mark.anyio

TOKEN = "a-dashboard-token-of-some-length"
PATHS = ("", "/", "/dashboard.js", "/dashboard.css", "/api/stats", "/nothing-here")
DENIED = "dashboard: a valid token is required\n"


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)


def room_app(**options: Any) -> NexiosApp:
    return make_app(dashboard=TOKEN, **options)


async def test_without_the_token_every_path_answers_401_and_nothing_else() -> None:
    async with AsyncTestClient(room_app()) as client:
        attempts = [{}, {"authorization": "Bearer wrong-token-wrong-token"}]
        attempts.append({"authorization": f"Basic {TOKEN}"})
        attempts.append({"cookie": f"{COOKIE}=forged"})
        for path in PATHS:
            for headers in attempts:
                response = await client.get(DASHBOARD_PATH + path, headers=headers)
                assert (response.status_code, response.text) == (401, DENIED), (path, headers)
                assert "set-cookie" not in response.headers
            wrong = await client.get(
                f"{DASHBOARD_PATH}{path}?token=wrong{TOKEN}", follow_redirects=False
            )
            assert (wrong.status_code, wrong.text) == (401, DENIED)
            assert "set-cookie" not in wrong.headers


async def test_the_token_sets_a_strict_cookie_and_the_page_loads_with_it() -> None:
    async with AsyncTestClient(room_app()) as client:
        login = await client.get(f"{DASHBOARD_PATH}?token={TOKEN}", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == DASHBOARD_PATH
        cookie = login.headers["set-cookie"]
        assert TOKEN not in cookie
        for attribute in ("HttpOnly", f"Path={DASHBOARD_PATH}", "SameSite=strict"):
            assert attribute in cookie
        assert "Secure" not in cookie  # plain http here
        assert login.headers["cache-control"] == "no-store"
        client.cookies.set(COOKIE, login.cookies[COOKIE], path=DASHBOARD_PATH)
        page = await client.get(DASHBOARD_PATH)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f'src="{DASHBOARD_PATH}/dashboard.js"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        script = await client.get(f"{DASHBOARD_PATH}/dashboard.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert "export function chartPoints" in script.text
        assert (await client.get(f"{DASHBOARD_PATH}/dashboard.css")).status_code == 200
        assert (await client.get(f"{DASHBOARD_PATH}/nothing-here")).status_code == 404
        stats = (await client.get(f"{DASHBOARD_PATH}/api/stats")).json()
        assert stats["totals"]["processes"] == 1
        client.cookies.clear()
        assert (await client.get(f"{DASHBOARD_PATH}/api/stats")).status_code == 401
        bearer = await client.get(
            f"{DASHBOARD_PATH}/api/stats", headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert bearer.status_code == 200


async def test_over_https_the_cookie_is_secure() -> None:
    async with AsyncTestClient(room_app(), base_url="https://example.org") as client:
        login = await client.get(f"{DASHBOARD_PATH}?token={TOKEN}", follow_redirects=False)
        assert login.status_code == 303
        assert "Secure" in login.headers["set-cookie"]


async def test_a_short_token_is_refused_with_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="token_urlsafe"):
        NexiosApp(dashboard="short")
    monkeypatch.setenv("NEXIOS_DASHBOARD_TOKEN", TOKEN)
    app = NexiosApp()
    assert app.ops.dashboard is not None and app.ops.metrics is not None
    assert not app.ops.serve_metrics  # the dashboard counts; /metrics stays off
    monkeypatch.delenv("NEXIOS_DASHBOARD_TOKEN")
    assert NexiosApp().ops.dashboard is None


async def stats(client: AsyncTestClient) -> dict[str, Any]:
    response = await client.get(
        f"{DASHBOARD_PATH}/api/stats", headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


async def until(client: AsyncTestClient, check: Any, timeout: float = 15) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            found = await stats(client)
            if check(found):
                return found
            await asyncio.sleep(0.05)


async def test_on_redis_the_dashboard_adds_up_every_process() -> None:
    with RedisServer() as redis:
        first, second = room_app(channels_url=redis.url()), room_app(channels_url=redis.url())
        async with AsyncTestClient(first) as one:
            async with AsyncTestClient(second) as two:
                sessions = [one.websocket_connect(f"/room/lobby?user=ann{i}") for i in range(2)]
                sessions += [two.websocket_connect(f"/room/lobby?user=bob{i}") for i in range(3)]
                sessions.append(two.websocket_connect("/room/side?user=cy"))
                members = [await s.__aenter__() for s in sessions]
                for member in members:
                    assert await member.receive_text() == "in"
                for i in range(4):
                    await members[0].send_text(f"hello {i}")
                # (Two apps in one test process share a process id on Redis, so each
                # skips the other's broadcasts: only the first app's members get these.)
                for member in members[:2]:
                    assert [await member.receive_text() for _ in range(4)] == [
                        f"hello {i}" for i in range(4)
                    ]
                found = await until(
                    one,
                    lambda s: (
                        s["totals"]["processes"] == 2
                        and s["totals"]["connections"] == 6
                        and sum(s["rates"]["out"]) == 6 + 4 * 2  # "in" to each, 4 to two
                    ),
                )
                assert found["totals"]["members"] == 6
                assert sum(found["rates"]["in"]) == 4
                assert [g["name"] for g in found["largest_groups"]] == ["lobby", "side"]
                lobby = found["largest_groups"][0]
                assert lobby["members"] == 5 and lobby["presence"] == 5
                names = sorted(member["metadata"]["name"] for member in lobby["present"])
                assert names == ["ann0", "ann1", "bob0", "bob1", "bob2"]
                layers = [p["layer"] for p in found["processes"]]
                assert all(layer["connected"] for layer in layers)
                assert all(layer["url"].startswith("redis://") for layer in layers)
                assert found["notes"] == []
                for session in sessions[2:]:
                    await session.__aexit__(None, None, None)
            # The second app shut down: it left the directory at once, not after a TTL.
            found = await stats(one)
            assert found["totals"]["processes"] == 1, found["processes"]
            assert found["totals"]["connections"] == 2
            for session in sessions[:2]:
                await session.__aexit__(None, None, None)


JS_TEST = Path(__file__).parent / "js" / "dashboard.test.mjs"


def test_the_dashboard_script_helpers_under_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: apt-get install nodejs")
    result = subprocess.run(
        [node, "--test", str(JS_TEST)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout

"""Handler parameters (path, query, the request) decided at registration; sync handlers;
url_for, app.state, request.app and the lifespan's state in request.state."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from nexios import NexiosApp
from nexios.exceptions import ConfigurationError, NoMatchFound
from nexios.http import Request, Route
from nexios.testing import TestClient
from nexios.websockets import WebSocket


@dataclass
class Item:
    name: str


def make_app() -> NexiosApp:
    app = NexiosApp()

    @app.get("/items/{n}")
    async def typed(n: int) -> dict[str, Any]:
        return {"n": n, "type": type(n).__name__}

    @app.get("/price/{x}")
    async def price(x: float) -> dict[str, Any]:
        return {"x": x}

    @app.get("/users/{uid}", name="user")
    async def user(uid: uuid.UUID, request: Request) -> dict[str, Any]:
        return {"uid": str(uid), "path": request.url.path}

    @app.get("/explicit/{n:int}")
    async def explicit(n: int) -> int:
        return n  # type: ignore[return-value]

    @app.get("/search")
    async def search(
        q: str = "default",
        page: int = 1,
        exact: bool = False,
        ratio: float | None = None,
        tags: list[str] = [],  # noqa: B006 - never mutated
        ids: Optional[list[int]] = None,  # noqa: UP045 - the old spelling works too
    ) -> dict[str, Any]:
        return {"q": q, "page": page, "exact": exact, "ratio": ratio, "tags": tags, "ids": ids}

    return app


def test_path_parameters_are_converted_by_their_annotation() -> None:
    uid = uuid.uuid4()
    with TestClient(make_app()) as client:
        assert client.get("/items/7").json() == {"n": 7, "type": "int"}
        assert client.get("/items/-3").json() == {"n": -3, "type": "int"}
        assert client.get("/price/2.5").json() == {"x": 2.5}
        assert client.get(f"/users/{uid}").json() == {"uid": str(uid), "path": f"/users/{uid}"}
        # A value the annotation cannot take does not match the route: 404, not 500.
        assert client.get("/items/seven").status_code == 404
        assert client.get("/users/not-a-uuid").status_code == 404


@pytest.mark.parametrize(
    "path", ["/items/99999999999999999999999", "/explicit/9223372036854775808"]
)
def test_integer_overflow_is_404(path: str) -> None:
    with TestClient(make_app()) as client:
        response = client.get(path)
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}


def test_query_parameters_fill_parameters_with_defaults() -> None:
    with TestClient(make_app()) as client:
        assert client.get("/search").json() == {
            "q": "default",
            "page": 1,
            "exact": False,
            "ratio": None,
            "tags": [],
            "ids": None,
        }
        assert client.get(
            "/search?q=hello&page=3&exact=yes&ratio=0.5&tags=a&tags=b&ids=1&ids=2"
        ).json() == {
            "q": "hello",
            "page": 3,
            "exact": True,
            "ratio": 0.5,
            "tags": ["a", "b"],
            "ids": [1, 2],
        }
        bad = client.get("/search?page=two")
        assert bad.status_code == 400
        assert bad.json() == {"detail": "Query parameter 'page' must be an integer, got 'two'."}
        assert client.get("/search?exact=maybe").status_code == 400
        assert client.get("/search?page=99999999999999999999").status_code == 400


def test_the_request_can_be_anywhere_when_annotated() -> None:
    app = NexiosApp()

    @app.get("/a/{x}")
    async def last(x: str, req: Request) -> str:
        return f"{x} {req.method}"

    # Annotated with a name imported only under TYPE_CHECKING (unresolvable at run time).
    namespace: dict[str, Any] = {}
    exec(
        "from __future__ import annotations\n"
        "async def late(request: Request) -> str:\n"
        "    return request.url.path\n",
        namespace,
    )
    app.get("/b")(namespace["late"])

    @app.get("/c")
    async def untyped(request):  # type: ignore[no-untyped-def]  # the first parameter
        return request.url.path

    @app.get("/d")
    async def nothing() -> str:
        return "no request needed"

    with TestClient(app) as client:
        assert client.get("/a/1").text == "1 GET"
        assert client.get("/b").text == "/b"
        assert client.get("/c").text == "/c"
        assert client.get("/d").text == "no request needed"


async def _item_handler(item: Item) -> None:
    return None


async def _double_request(a: Request, b: Request) -> None:
    return None


async def _bad_path_type(n: Item) -> None:
    return None


async def _conflict(n: str) -> None:
    return None


async def _bad_query(when: Item | None = None) -> None:
    return None


async def _positional_only(n: int, /) -> None:
    return None


@pytest.mark.parametrize(
    ("path", "handler", "message"),
    [
        ("/items", _item_handler, "parameter 'item' is neither the Request, a path parameter"),
        ("/x", _double_request, "parameter 'b' asks for the Request a second time"),
        ("/x/{n}", _bad_path_type, "annotated Item, which a path parameter cannot be converted"),
        ("/x/{n:int}", _conflict, "annotated str, but the path converts {n:int} to int"),
        ("/x", _bad_query, "annotation Item is not one a query parameter converts to"),
        ("/x/{n}", _positional_only, "positional-only; path parameters are passed by name"),
    ],
)
def test_parameters_the_framework_cannot_fill_fail_at_registration(
    path: str, handler: Any, message: str
) -> None:
    with pytest.raises(
        ConfigurationError, match=r"HTTP handler '.*' for '.*': parameter"
    ) as caught:
        Route(path, handler)
    assert message in str(caught.value)


def test_sync_handlers_run_in_the_thread_pool() -> None:
    app = NexiosApp()

    @app.get("/blocking/{n}")
    def blocking(request: Request, n: int, q: str = "") -> dict[str, Any]:
        return {"n": n, "q": q, "thread": threading.current_thread().name}

    class Counter:
        def __init__(self) -> None:
            self.count = 0

        def __call__(self, request: Request) -> dict[str, int]:
            self.count += 1
            return {"count": self.count}

    app.add_route(Route("/count", Counter()))
    with TestClient(app) as client:
        reply = client.get("/blocking/5?q=x").json()
        assert client.get("/count").json() == {"count": 1}
    assert reply["n"] == 5 and reply["q"] == "x"
    assert reply["thread"] != threading.current_thread().name
    assert reply["thread"] != "nexios-testclient"  # not the event loop's thread


# --------------------------------------------------------------------------- url_for


def test_url_for_routes_and_mounts() -> None:
    app = make_app()

    @app.get("/links")
    async def links(request: Request) -> dict[str, str]:
        return {
            "user": str(request.url_for("user", uid="8c5f0d6e-55a0-4f6e-9a59-2f1c2f6e1a11")),
            "typed": str(request.url_for("typed", n=3)),
        }

    async def files(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    app.mount("/static", files, name="static")
    assert app.url_path_for("typed", n=5) == "/items/5"
    assert app.url_for("static", path="css/site.css") == "/static/css/site.css"
    with pytest.raises(NoMatchFound, match="No route named 'typed' takes the parameters"):
        app.url_path_for("typed")
    with pytest.raises(NoMatchFound, match=r"named routes: .*search"):
        app.url_path_for("nope")
    with pytest.raises(NoMatchFound):
        app.url_path_for("typed", n="not a number")
    with TestClient(app, base_url="https://example.org") as client:
        assert client.get("/links").json() == {
            "user": "https://example.org/users/8c5f0d6e-55a0-4f6e-9a59-2f1c2f6e1a11",
            "typed": "https://example.org/items/3",
        }
    with TestClient(app, root_path="/api") as client:
        assert client.get("/api/links").json()["typed"] == "http://testserver/api/items/3"


# --------------------------------------------------------------------------- state


def test_app_state_request_app_and_lifespan_state() -> None:
    closed: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: NexiosApp) -> AsyncIterator[dict[str, Any]]:
        yield {"db": "pool-1"}
        closed.append("pool-1")

    app = NexiosApp(lifespan=lifespan)
    app.state.version = "1.2"

    @app.get("/")
    async def index(request: Request) -> dict[str, Any]:
        request.state.touched = True  # per request: the next request does not see it
        return {
            "db": request.state.db,
            "version": request.app.state.version,
            "same_app": request.app is app,
        }

    @app.get("/touched")
    async def touched(request: Request) -> dict[str, bool]:
        return {"touched": hasattr(request.state, "touched")}

    @app.ws_route("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.state.db)

    with TestClient(app) as client:
        assert client.get("/").json() == {"db": "pool-1", "version": "1.2", "same_app": True}
        assert client.get("/touched").json() == {"touched": False}
        with client.websocket_connect("/ws") as session:
            assert session.receive_text() == "pool-1"
    assert closed == ["pool-1"]


def test_lifespan_must_yield_a_mapping_or_none() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: NexiosApp) -> AsyncIterator[str]:
        yield "a pool"

    with pytest.raises(RuntimeError, match="Lifespan startup failed") as caught:
        with TestClient(NexiosApp(lifespan=lifespan)):
            pass
    assert "yield None or a dict" in str(caught.value)


def test_max_body_size_is_checked_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="max_body_size is a number of bytes"):
        NexiosApp(max_body_size=-1)
    with pytest.raises(ConfigurationError, match="max_body_size must be >= 0"):
        Route("/x", make_app, max_body_size=-5)
    assert NexiosApp(max_body_size=None).max_body_size is None

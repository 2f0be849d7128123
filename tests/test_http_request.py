"""nexios.http.request and nexios.http.datastructures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from nexios.exceptions import HTTPException
from nexios.http import URL, Headers, QueryParams, Request, UploadFile
from nexios.http.datastructures import (
    Address,
    FormData,
    Message,
    MutableHeaders,
    State,
    parse_cookies,
    route_path,
)
from nexios.http.routing import HTTPRouter
from nexios.testing import AsyncTestClient

pytestmark = pytest.mark.anyio


def client_for(app: Any) -> AsyncTestClient:
    return AsyncTestClient(app, follow_redirects=False)


def http_scope(**extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [],
    }
    scope.update(extra)
    return scope


def receive_from(*messages: Message) -> Any:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


# ---------------------------------------------------------------- datastructures


def test_headers_are_case_insensitive_and_multi_valued() -> None:
    headers = Headers(raw=[(b"Content-Type", b"text/plain"), (b"x-a", b"1"), (b"X-A", b"2")])
    assert headers["content-type"] == "text/plain"
    assert headers["CONTENT-TYPE"] == "text/plain"
    assert headers.get("missing") is None
    assert headers.getlist("x-a") == ["1", "2"]
    assert "X-a" in headers
    assert 3 not in headers  # type: ignore[comparison-overlap]
    assert list(headers) == ["content-type", "x-a"]
    assert len(headers) == 2
    assert headers.multi_items() == [("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2")]
    assert Headers({"A": "1"}) == Headers([("a", "1")])
    with pytest.raises(KeyError):
        headers["nope"]


def test_mutable_headers_edit_the_raw_list() -> None:
    raw: list[tuple[bytes, bytes]] = []
    headers = MutableHeaders.wrap(raw)
    headers["X-One"] = "1"
    headers.append("set-cookie", "a=1")
    headers.append("set-cookie", "b=2")
    assert headers.setdefault("x-one", "other") == "1"
    headers["x-one"] = "2"
    assert raw == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"x-one", b"2")]
    del headers["set-cookie"]
    assert raw == [(b"x-one", b"2")]
    with pytest.raises(KeyError):
        del headers["set-cookie"]


def test_query_params_multi_dict() -> None:
    params = QueryParams("a=1&b=two&a=3&empty=&sp=a+b%20c")
    assert params["a"] == "3"  # the last value, like Starlette and Django
    assert params.get("a") == "3"
    assert params.getlist("a") == ["1", "3"]
    assert params.getlist("missing") == []
    assert params.get("missing", "d") == "d"
    assert params["empty"] == ""
    assert params["sp"] == "a b c"
    assert list(params) == ["a", "b", "empty", "sp"]
    assert dict(params.items()) == {"a": "3", "b": "two", "empty": "", "sp": "a b c"}
    assert "b" in params
    assert QueryParams(b"x=1") == QueryParams({"x": "1"})
    assert str(QueryParams([("a", "1"), ("a", "2 3")])) == "a=1&a=2+3"


def test_parse_cookies_is_tolerant() -> None:
    assert parse_cookies('a=1; b="quoted \\"v\\""; c=x=y; junk; =nameless; d = spaced ') == {
        "a": "1",
        "b": 'quoted "v"',
        "c": "x=y",
        "junk": "",
        "d": "spaced",
    }
    assert parse_cookies('e="\\073"') == {"e": ";"}
    assert parse_cookies("") == {}


def test_url_from_scope() -> None:
    scope = http_scope(
        scheme="https",
        path="/a/b",
        query_string=b"x=1",
        headers=[(b"host", b"example.com:8443")],
    )
    url = URL.from_scope(scope)
    assert (url.scheme, url.netloc, url.path, url.query) == (
        "https",
        "example.com:8443",
        "/a/b",
        "x=1",
    )
    assert url.hostname == "example.com" and url.port == 8443
    assert str(url) == "https://example.com:8443/a/b?x=1"
    no_host = URL.from_scope(http_scope(server=("10.0.0.1", 80), path="/p"))
    assert str(no_host) == "http://10.0.0.1/p"
    assert URL.from_scope(http_scope(server=("h", 8000))).netloc == "h:8000"
    assert URL(netloc="[::1]:9").hostname == "::1"


def test_route_path_strips_root_path() -> None:
    assert route_path({"path": "/api/x", "root_path": "/api"}) == "/x"
    assert route_path({"path": "/api", "root_path": "/api"}) == ""
    assert route_path({"path": "/apix", "root_path": "/api"}) == "/apix"
    assert route_path({"path": "/x", "root_path": ""}) == "/x"


def test_state_attributes() -> None:
    state = State()
    state.user = "ada"
    assert state.user == "ada"
    del state.user
    with pytest.raises(AttributeError, match="set it first"):
        _ = state.user


async def test_upload_file_reads_and_seeks() -> None:
    upload = UploadFile(b"hello", filename="h.txt", content_type="text/plain")
    assert await upload.read(2) == b"he"
    assert await upload.read() == b"llo"
    await upload.seek(0)
    assert await upload.read() == b"hello"
    assert upload.size == 5
    form = FormData([("f", upload)])
    await form.close()
    assert upload.file.closed


# ---------------------------------------------------------------- Request


def test_request_properties_from_scope() -> None:
    scope = http_scope(
        method="POST",
        path="/items/3",
        query_string=b"q=x",
        headers=[(b"host", b"testserver"), (b"cookie", b"a=1"), (b"cookie", b"b=2")],
        client=("1.2.3.4", 5678),
        path_params={"item_id": 3},
    )
    request = Request(scope)
    assert request.method == "POST"
    assert request.url.path == "/items/3"
    assert request.path_params == {"item_id": 3}
    assert request.query_params["q"] == "x"
    assert request.cookies == {"a": "1", "b": "2"}
    assert request.client == Address("1.2.3.4", 5678)
    assert request.client.host == "1.2.3.4"
    request.state.user = "ada"
    assert scope["state"] == {"user": "ada"}
    assert Request(http_scope()).client is None


def test_request_refuses_other_scopes() -> None:
    with pytest.raises(TypeError, match="'http' scope"):
        Request({"type": "websocket"})


async def test_body_is_read_in_chunks_and_cached() -> None:
    receive = receive_from(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd"},
    )
    request = Request(http_scope(), receive)
    assert await request.body() == b"abcd"
    assert await request.body() == b"abcd"  # no second receive: the queue is empty


async def test_body_over_the_limit_is_413() -> None:
    receive = receive_from(
        {"type": "http.request", "body": b"x" * 6, "more_body": True},
        {"type": "http.request", "body": b"x" * 6},
    )
    with pytest.raises(HTTPException) as caught:
        await Request(http_scope(), receive, max_body_size=10).body()
    assert caught.value.status_code == 413


async def test_declared_content_length_over_the_limit_is_refused_before_reading() -> None:
    scope = http_scope(headers=[(b"content-length", b"11")])
    with pytest.raises(HTTPException) as caught:
        await Request(scope, receive_from(), max_body_size=10).body()
    assert caught.value.status_code == 413


async def test_disconnect_while_reading_the_body() -> None:
    receive = receive_from(
        {"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(HTTPException) as caught:
        await Request(http_scope(), receive).body()
    assert caught.value.status_code == 400


# ---------------------------------------------------------------- through the router

router = HTTPRouter(max_body_size=1024)


@router.get("/info/{item_id:int}")
async def info(request: Request, item_id: int) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "path_params": request.path_params,
        "q": request.query_params.get("q"),
        "tags": request.query_params.getlist("tag"),
        "agent": request.headers["x-agent"],
        "cookies": request.cookies,
        "url": str(request.url),
    }


@router.post("/json")
async def echo_json(request: Request) -> dict[str, Any]:
    return {"got": await request.json(), "again": await request.json()}


@router.post("/form")
async def echo_form(request: Request) -> dict[str, Any]:
    form = await request.form()
    out: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            out[key] = {
                "filename": value.filename,
                "content_type": value.content_type,
                "data": (await value.read()).decode(),
            }
        else:
            out.setdefault(key, []).append(value)
    return out


@router.post("/body")
async def body_size(request: Request) -> dict[str, int]:
    return {"size": len(await request.body())}


async def test_path_query_headers_and_cookies() -> None:
    async with client_for(router) as client:
        client.cookies.set("session", "abc")
        response = await client.get("/info/42?q=hello&tag=a&tag=b", headers={"X-Agent": "tests"})
    assert response.status_code == 200
    assert response.json() == {
        "item_id": 42,
        "path_params": {"item_id": 42},
        "q": "hello",
        "tags": ["a", "b"],
        "agent": "tests",
        "cookies": {"session": "abc"},
        "url": "http://testserver/info/42?q=hello&tag=a&tag=b",
    }


async def test_json_body() -> None:
    async with client_for(router) as client:
        response = await client.post("/json", json={"a": [1, 2]})
    assert response.json() == {"got": {"a": [1, 2]}, "again": {"a": [1, 2]}}


@pytest.mark.parametrize("content", [b"{not json", b""])
async def test_invalid_json_is_400(content: bytes) -> None:
    async with client_for(router) as client:
        response = await client.post("/json", content=content)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Invalid JSON body: ")


async def test_urlencoded_form() -> None:
    async with client_for(router) as client:
        response = await client.post("/form", data={"name": "Ada Lovelace", "tag": ["x", "é"]})
    assert response.json() == {"name": ["Ada Lovelace"], "tag": ["x", "é"]}


async def test_multipart_form_with_file_upload() -> None:
    async with client_for(router) as client:
        response = await client.post(
            "/form",
            data={"title": "notes"},
            files={"upload": ("notes.txt", b"line one", "text/plain")},
        )
    assert response.json() == {
        "title": ["notes"],
        "upload": {"filename": "notes.txt", "content_type": "text/plain", "data": "line one"},
    }


async def test_malformed_multipart_is_400() -> None:
    async with client_for(router) as client:
        no_boundary = await client.post(
            "/form", content=b"x", headers={"content-type": "multipart/form-data"}
        )
        no_name = await client.post(
            "/form",
            content=b'--B\r\nContent-Disposition: form-data; filename="a"\r\n\r\nx\r\n--B--\r\n',
            headers={"content-type": "multipart/form-data; boundary=B"},
        )
    assert no_boundary.status_code == 400
    assert no_name.status_code == 400
    assert no_name.json()["detail"].startswith("Invalid form body")


async def test_other_content_types_give_an_empty_form() -> None:
    async with client_for(router) as client:
        response = await client.post("/form", content=b"raw", headers={"content-type": "text/x"})
    assert response.json() == {}


async def test_body_limit_is_413_for_declared_and_streamed_bodies() -> None:
    async def stream() -> AsyncIterator[bytes]:
        for _ in range(11):
            yield b"x" * 100

    async with client_for(router) as client:
        small = await client.post("/body", content=b"x" * 1024)
        declared = await client.post("/body", content=b"x" * 1025)
        streamed = await client.post("/body", content=stream())
        as_json = await client.post("/json", json={"k": "x" * 1100})
    assert small.json() == {"size": 1024}
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert "1024 bytes" in streamed.json()["detail"]
    assert as_json.status_code == 413

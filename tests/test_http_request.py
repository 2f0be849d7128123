"""nexios.http.request and nexios.http.datastructures."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nexios import NexiosApp
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


# ---------------------------------------------------------------- streaming and limits


async def test_stream_yields_chunks_as_they_come_and_only_once() -> None:
    receive = receive_from(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"cd"},
    )
    request = Request(http_scope(), receive)
    assert [chunk async for chunk in request.stream()] == [b"ab", b"cd"]
    with pytest.raises(RuntimeError, match="already streamed; it can be read only once"):
        await request.body()


async def test_stream_after_body_gives_the_cached_body() -> None:
    request = Request(http_scope(), receive_from({"type": "http.request", "body": b"abc"}))
    assert await request.body() == b"abc"
    assert [chunk async for chunk in request.stream()] == [b"abc"]


async def test_the_limit_holds_for_stream_before_the_chunk_past_it_is_yielded() -> None:
    receive = receive_from(
        {"type": "http.request", "body": b"x" * 6, "more_body": True},
        {"type": "http.request", "body": b"x" * 6, "more_body": True},
        {"type": "http.request", "body": b"never read"},
    )
    request = Request(http_scope(), receive, max_body_size=10)
    seen: list[bytes] = []
    with pytest.raises(HTTPException) as caught:
        async for chunk in request.stream():
            seen.append(chunk)
    assert caught.value.status_code == 413
    assert seen == [b"x" * 6]
    assert "NexiosApp(max_body_size=...)" in caught.value.detail


async def test_the_limit_holds_for_the_receive_channel_too() -> None:
    declared = Request(http_scope(headers=[(b"content-length", b"11")]), receive_from())
    declared.max_body_size = 10
    with pytest.raises(HTTPException) as caught:
        await declared.receive()
    assert caught.value.status_code == 413
    receive = receive_from(
        {"type": "http.request", "body": b"x" * 8, "more_body": True},
        {"type": "http.request", "body": b"x" * 8},
    )
    request = Request(http_scope(), receive, max_body_size=10)
    assert (await request.receive())["body"] == b"x" * 8
    with pytest.raises(HTTPException):
        await request.receive()


async def test_no_limit_with_none() -> None:
    body = b"x" * (3 * 1024 * 1024)
    request = Request(
        http_scope(), receive_from({"type": "http.request", "body": body}), max_body_size=None
    )
    assert len(await request.body()) == len(body)


async def test_receive_replays_a_body_already_read() -> None:
    receive = receive_from({"type": "http.request", "body": b"abc"}, {"type": "http.disconnect"})
    request = Request(http_scope(), receive)
    await request.body()
    assert await request.receive() == {"type": "http.request", "body": b"abc", "more_body": False}
    assert await request.receive() == {"type": "http.disconnect"}


async def test_is_disconnected_does_not_wait() -> None:
    async def never() -> Message:
        await asyncio.Event().wait()
        raise AssertionError

    assert await Request(http_scope(), never).is_disconnected() is False
    gone = Request(http_scope(), receive_from({"type": "http.disconnect"}))
    assert await gone.is_disconnected() is True


def body_app(**route_options: Any) -> NexiosApp:
    app = NexiosApp(max_body_size=100)

    @app.post("/default")
    async def default(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.post("/big", max_body_size=1000)
    async def big(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @app.post("/unlimited", max_body_size=None)
    async def unlimited(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    return app


async def test_the_app_limit_and_route_overrides() -> None:
    async with AsyncTestClient(body_app()) as client:
        assert (await client.post("/default", content=b"x" * 100)).json() == {"size": 100}
        assert (await client.post("/default", content=b"x" * 101)).status_code == 413
        assert (await client.post("/big", content=b"x" * 1000)).json() == {"size": 1000}
        assert (await client.post("/big", content=b"x" * 1001)).status_code == 413
        huge = await client.post("/unlimited", content=b"x" * 5000)
        assert huge.json() == {"size": 5000}


# ---------------------------------------------------------------- multipart


def multipart(*parts: tuple[str, bytes], boundary: str = "B") -> bytes:
    """A multipart body from (headers, data) parts, with the closing boundary."""
    body = b"".join(
        f"--{boundary}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n" for headers, data in parts
    )
    return body + f"--{boundary}--\r\n".encode()


def field(name: str) -> str:
    return f'Content-Disposition: form-data; name="{name}"'


def file_part(name: str, filename: str) -> str:
    return (
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream"
    )


MULTIPART = {"content-type": "multipart/form-data; boundary=B"}


def upload_app(seen: list[UploadFile], **form_options: Any) -> NexiosApp:
    app = NexiosApp(max_body_size=8 * 1024 * 1024)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        form = await request.form(**form_options)
        out: dict[str, Any] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                seen.append(value)
                data = await value.read()
                out[name] = {"size": value.size, "in_memory": value.in_memory, "len": len(data)}
            else:
                out[name] = value
        return out

    return app


async def test_truncated_multipart_is_400() -> None:
    body = multipart((field("a"), b"hello"), (file_part("f", "x.txt"), b"data"))
    seen: list[UploadFile] = []
    async with AsyncTestClient(upload_app(seen)) as client:
        whole = await client.post("/upload", content=body, headers=MULTIPART)
        cut = await client.post("/upload", content=body[:-8], headers=MULTIPART)
        garbage = await client.post("/upload", content=b"not multipart", headers=MULTIPART)
    assert whole.json() == {"a": "hello", "f": {"size": 4, "in_memory": True, "len": 4}}
    assert cut.status_code == 400
    assert cut.json() == {
        "detail": "Invalid form body: the body ended before the closing boundary."
    }
    assert garbage.status_code == 400


async def test_uploads_past_the_spool_size_go_to_disk_and_are_closed_after_the_response() -> None:
    big = bytes(range(256)) * 8 * 1024  # 2 MiB
    body = multipart((file_part("small", "s.bin"), b"tiny"), (file_part("big", "b.bin"), big))
    seen: list[UploadFile] = []
    async with AsyncTestClient(upload_app(seen, spool_max_size=1024 * 1024)) as client:
        response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.json() == {
        "small": {"size": 4, "in_memory": True, "len": 4},
        "big": {"size": len(big), "in_memory": False, "len": len(big)},
    }
    assert all(upload.file.closed for upload in seen)


@pytest.mark.parametrize(
    ("options", "parts", "detail"),
    [
        ({"max_files": 1}, [file_part("a", "1"), file_part("b", "2")], "more than 1 files"),
        ({"max_fields": 1}, [field("a"), field("b")], "more than 1 fields"),
        ({"max_part_size": 3}, [field("a")], "field 'a' is larger than 3 bytes"),
    ],
)
async def test_form_limits_are_400(options: dict[str, int], parts: list[str], detail: str) -> None:
    body = multipart(*[(headers, b"data") for headers in parts])
    async with AsyncTestClient(upload_app([], **options)) as client:
        response = await client.post("/upload", content=body, headers=MULTIPART)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


async def test_too_many_urlencoded_fields_is_400() -> None:
    async with AsyncTestClient(upload_app([], max_fields=2)) as client:
        response = await client.post("/upload", data={"a": "1", "b": "2", "c": "3"})
    assert response.status_code == 400 and "more than 2 fields" in response.json()["detail"]


async def test_upload_file_on_disk_reads_in_a_thread() -> None:
    spool = tempfile.SpooledTemporaryFile(max_size=4)  # noqa: SIM115 - closed by the upload
    upload = UploadFile(spool, size=0, filename="f", max_memory=4)  # type: ignore[arg-type]
    await upload.write(b"abc")
    assert upload.in_memory
    await upload.write(b"defgh")
    assert not upload.in_memory and upload.size == 8
    await upload.seek(0)
    assert await upload.read() == b"abcdefgh"
    await upload.close()

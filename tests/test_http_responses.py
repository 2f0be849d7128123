"""nexios.http.responses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nexios.exceptions import HTTPException
from nexios.http import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from nexios.http.datastructures import Message
from nexios.http.responses import to_response
from nexios.http.routing import HTTPRouter
from nexios.testing import AsyncTestClient

pytestmark = pytest.mark.anyio


def client_for(app: Any) -> AsyncTestClient:
    return AsyncTestClient(app, follow_redirects=False)


async def run(response: Response, method: str = "GET") -> list[Message]:
    """Send ``response`` and return the ASGI messages it produced."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await response({"type": "http", "method": method, "path": "/"}, receive, send)
    return sent


def header_dict(message: Message) -> dict[bytes, bytes]:
    return dict(message["headers"])


# ---------------------------------------------------------------- plain responses


async def test_response_sends_start_and_body() -> None:
    start, body = await run(Response("héllo", 201, {"X-Thing": "1"}, media_type="text/plain"))
    assert start["status"] == 201
    assert header_dict(start) == {
        b"x-thing": b"1",
        b"content-length": b"6",
        b"content-type": b"text/plain; charset=utf-8",
    }
    assert body == {"type": "http.response.body", "body": "héllo".encode()}


async def test_head_keeps_headers_but_sends_no_body() -> None:
    start, body = await run(PlainTextResponse("abc"), method="HEAD")
    assert header_dict(start)[b"content-length"] == b"3"
    assert body["body"] == b""


async def test_no_content_length_for_204_and_304() -> None:
    for status in (204, 304):
        start, _ = await run(Response(b"", status))
        assert b"content-length" not in header_dict(start)


def test_media_types() -> None:
    assert HTMLResponse("<p>").headers["content-type"] == "text/html; charset=utf-8"
    assert JSONResponse([]).headers["content-type"] == "application/json"
    assert PlainTextResponse("x").headers["content-type"] == "text/plain; charset=utf-8"
    custom = Response(b"", headers={"Content-Type": "image/png"}, media_type="text/plain")
    assert custom.headers.getlist("content-type") == ["image/png"]


def test_response_content_must_be_bytes_or_str() -> None:
    with pytest.raises(TypeError, match="use JSONResponse"):
        Response({"a": 1})


def test_json_response_uses_nexios_encoding() -> None:
    @dataclass
    class Point:
        x: int

    class Entry:
        def to_dict(self) -> dict[str, int]:
            return {"seq": 1}

    response = JSONResponse({"p": Point(1), "e": Entry(), "s": {2}})
    assert response.body == b'{"p":{"x":1},"e":{"seq":1},"s":[2]}'


def test_headers_can_be_changed_after_construction() -> None:
    response = PlainTextResponse("x")
    response.headers["X-Later"] = "yes"
    assert (b"x-later", b"yes") in response.raw_headers


def test_redirect() -> None:
    response = RedirectResponse("/somewhere else?x=1")
    assert response.status_code == 307
    assert response.headers["location"] == "/somewhere%20else?x=1"
    assert RedirectResponse("https://e.com/", 301).status_code == 301


def test_set_and_delete_cookie() -> None:
    response = Response()
    response.set_cookie(
        "session",
        "abc",
        max_age=60,
        expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        domain="example.com",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie("old")
    cookies = response.headers.getlist("set-cookie")
    assert len(cookies) == 2
    first = cookies[0]
    for part in (
        "session=abc",
        "Max-Age=60",
        "expires=Wed, 02 Jan 2030 03:04:05 GMT",
        "Domain=example.com",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=strict",
    ):
        assert part in first
    assert cookies[1].startswith('old=""') and "Max-Age=0" in cookies[1]
    with pytest.raises(ValueError, match="samesite"):
        response.set_cookie("x", samesite="sideways")  # type: ignore[arg-type]


# ---------------------------------------------------------------- to_response


def test_to_response_conversions() -> None:
    original = HTMLResponse("<p>")
    assert to_response(original) is original
    as_json = to_response({"a": 1})
    assert isinstance(as_json, JSONResponse) and as_json.body == b'{"a":1}'
    assert to_response([1, 2]).body == b"[1,2]"
    text = to_response("hi")
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    raw = to_response(b"\x00\x01")
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.body == b"\x00\x01"
    empty = to_response(None)
    assert (empty.status_code, empty.body) == (204, b"")


def test_to_response_refuses_other_values_with_a_clear_message() -> None:
    with pytest.raises(TypeError) as caught:
        to_response(42, source="HTTP handler 'f' for '/x'")
    message = str(caught.value)
    assert "HTTP handler 'f' for '/x' returned int" in message
    assert "Return a dict or list (JSON)" in message


# ---------------------------------------------------------------- files


async def test_file_response_streams_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789" * 10)
    response = FileResponse(path)
    response.chunk_size = 40
    start, *bodies = await run(response)
    headers = header_dict(start)
    assert headers[b"content-length"] == b"100"
    assert headers[b"content-type"] == b"application/octet-stream"
    assert b"etag" in headers and b"last-modified" in headers
    assert [len(m["body"]) for m in bodies] == [40, 40, 20, 0]
    assert [m.get("more_body", False) for m in bodies] == [True, True, True, False]
    assert b"".join(m["body"] for m in bodies) == path.read_bytes()


async def test_file_response_head_and_media_type(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<h1>hi</h1>")
    start, body = await run(FileResponse(path), method="HEAD")
    assert header_dict(start)[b"content-type"] == b"text/html; charset=utf-8"
    assert header_dict(start)[b"content-length"] == b"11"
    assert body == {"type": "http.response.body", "body": b""}


async def test_file_response_download_name(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"x")
    plain = FileResponse(path, filename="report.csv")
    assert plain.headers["content-disposition"] == 'attachment; filename="report.csv"'
    assert plain.headers["content-type"].startswith("text/csv")
    accented = FileResponse(path, filename="résumé.pdf")
    assert accented.headers["content-disposition"] == (
        "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf"
    )


async def test_missing_file_is_404_before_anything_is_sent(tmp_path: Path) -> None:
    with pytest.raises(HTTPException) as caught:
        await run(FileResponse(tmp_path / "nope.txt"))
    assert caught.value.status_code == 404


# ---------------------------------------------------------------- through the router


def make_router(tmp_path: Path) -> HTTPRouter:
    router = HTTPRouter()
    (tmp_path / "hello.txt").write_text("hello file")

    @router.get("/dict")
    async def as_dict() -> dict[str, int]:
        return {"a": 1}

    @router.get("/list")
    async def as_list() -> list[int]:
        return [1, 2]

    @router.get("/str")
    async def as_str() -> str:
        return "plain"

    @router.get("/none")
    async def as_none() -> None:
        return None

    @router.get("/html")
    async def as_html() -> Response:
        return HTMLResponse("<b>hi</b>", headers={"x-extra": "1"})

    @router.get("/cookie")
    async def with_cookie() -> Response:
        response = JSONResponse({"ok": True})
        response.set_cookie("session", "s1", httponly=True)
        return response

    @router.get("/go")
    async def go() -> Response:
        return RedirectResponse("/dict")

    @router.get("/file")
    async def file() -> Response:
        return FileResponse(tmp_path / "hello.txt")

    @router.get("/missing-file")
    async def missing_file() -> Response:
        return FileResponse(tmp_path / "missing.txt")

    @router.get("/bad")
    async def bad() -> object:
        return object()

    return router


async def test_handler_return_values(tmp_path: Path) -> None:
    async with client_for(make_router(tmp_path)) as client:
        as_dict = await client.get("/dict")
        as_list = await client.get("/list")
        as_str = await client.get("/str")
        as_none = await client.get("/none")
        as_html = await client.get("/html")
    assert as_dict.json() == {"a": 1}
    assert as_dict.headers["content-type"] == "application/json"
    assert as_list.json() == [1, 2]
    assert as_str.text == "plain"
    assert as_str.headers["content-type"] == "text/plain; charset=utf-8"
    assert as_none.status_code == 204 and as_none.content == b""
    assert as_html.text == "<b>hi</b>" and as_html.headers["x-extra"] == "1"


async def test_cookie_redirect_and_file_through_the_router(tmp_path: Path) -> None:
    async with client_for(make_router(tmp_path)) as client:
        cookie = await client.get("/cookie")
        redirect = await client.get("/go")
        followed = await client.get("/go", follow_redirects=True)
        file = await client.get("/file")
        head = await client.head("/file")
        missing = await client.get("/missing-file")
    assert cookie.cookies["session"] == "s1"
    assert "HttpOnly" in cookie.headers["set-cookie"]
    assert redirect.status_code == 307 and redirect.headers["location"] == "/dict"
    assert followed.json() == {"a": 1}
    assert file.text == "hello file"
    assert file.headers["content-type"] == "text/plain; charset=utf-8"
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "10"
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}


async def test_unsupported_return_value_is_a_server_error(tmp_path: Path) -> None:
    async with client_for(make_router(tmp_path)) as client:
        with pytest.raises(TypeError, match="HTTP handler 'bad' for '/bad' returned object"):
            await client.get("/bad")

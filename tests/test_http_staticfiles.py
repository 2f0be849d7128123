"""nexios.http.staticfiles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexios.exceptions import ConfigurationError
from nexios.http import HTTPRouter, StaticFiles
from nexios.http.datastructures import Message
from nexios.http.responses import parse_range
from nexios.testing import AsyncTestClient

pytestmark = pytest.mark.anyio


def client_for(app: Any) -> AsyncTestClient:
    return AsyncTestClient(app, follow_redirects=False)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """``tmp_path/secret.txt`` outside ``tmp_path/public``, which is served."""
    (tmp_path / "secret.txt").write_text("top secret")
    public = tmp_path / "public"
    (public / "css").mkdir(parents=True)
    (public / "docs").mkdir()
    (public / "app.js").write_text("console.log(1)")
    (public / "css" / "site.css").write_text("body{}")
    (public / "docs" / "index.html").write_text("<h1>docs</h1>")
    (public / "index.html").write_text("<h1>home</h1>")
    return tmp_path


def router_for(directory: Path, html: bool = False) -> HTTPRouter:
    router = HTTPRouter()
    router.mount("/static", StaticFiles(directory, html=html))
    return router


async def raw_get(app: Any, path: str, method: str = "GET") -> tuple[int, bytes]:
    """Drive the app with a hand-made scope: httpx would normalise '..' away."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_serves_files_with_media_types_and_validators(site: Path) -> None:
    async with client_for(router_for(site / "public")) as client:
        js = await client.get("/static/app.js")
        css = await client.get("/static/css/site.css")
        head = await client.head("/static/app.js")
    assert js.status_code == 200 and js.text == "console.log(1)"
    assert js.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert css.text == "body{}" and css.headers["content-type"].startswith("text/css")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len("console.log(1)"))
    assert js.headers["etag"] and js.headers["last-modified"]


async def test_if_none_match_gives_304(site: Path) -> None:
    async with client_for(router_for(site / "public")) as client:
        first = await client.get("/static/app.js")
        again = await client.get(
            "/static/app.js", headers={"if-none-match": f'"other", {first.headers["etag"]}'}
        )
        stale = await client.get("/static/app.js", headers={"if-none-match": '"other"'})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert stale.status_code == 200


async def test_missing_files_and_directories_are_404(site: Path) -> None:
    async with client_for(router_for(site / "public")) as client:
        missing = await client.get("/static/nope.js")
        directory = await client.get("/static/css/")
        under_file = await client.get("/static/app.js/x")
    for response in (missing, directory, under_file):
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}


async def test_only_get_and_head(site: Path) -> None:
    async with client_for(router_for(site / "public")) as client:
        response = await client.post("/static/app.js")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/css/../../secret.txt",
        "/static/..",
        "/static/..\\secret.txt",
        "/static//" + os.fspath(Path(__file__).resolve()).lstrip("/"),
    ],
)
async def test_traversal_is_refused(site: Path, path: str) -> None:
    status, body = await raw_get(router_for(site / "public"), path)
    assert status == 404
    assert b"secret" not in body


async def test_traversal_to_a_real_file_is_refused() -> None:
    tests_dir = Path(__file__).resolve().parent
    assert (tests_dir.parent / "pyproject.toml").exists()  # so a leak would be served
    router = router_for(tests_dir)
    assert (await raw_get(router, "/static/conftest.py"))[0] == 200
    for path in ("/static/../pyproject.toml", "/static/../../../../etc/passwd"):
        status, body = await raw_get(router, path)
        assert status == 404, path
        assert b"[project]" not in body
    async with client_for(router) as client:
        encoded = await client.get("/static/%2e%2e/pyproject.toml")
    assert encoded.status_code == 404


async def test_encoded_traversal_is_refused(site: Path) -> None:
    async with client_for(router_for(site / "public")) as client:
        for path in (
            "/static/%2e%2e/secret.txt",
            "/static/%2E%2E/%2e%2e/pyproject.toml",
            "/static/..%2fsecret.txt",
            "/static/%2e%2e%2fsecret.txt",
        ):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert "secret" not in response.text


async def test_symlinks_escaping_the_root_are_refused(site: Path) -> None:
    public = site / "public"
    (public / "leak.txt").symlink_to(site / "secret.txt")
    (public / "leakdir").symlink_to(site, target_is_directory=True)
    (public / "alias.js").symlink_to(public / "app.js")
    async with client_for(router_for(public)) as client:
        leak = await client.get("/static/leak.txt")
        via_dir = await client.get("/static/leakdir/secret.txt")
        alias = await client.get("/static/alias.js")
    assert leak.status_code == 404
    assert via_dir.status_code == 404
    assert alias.status_code == 200 and alias.text == "console.log(1)"


async def test_html_mode_serves_index_and_redirects_to_the_slash(site: Path) -> None:
    async with client_for(router_for(site / "public", html=True)) as client:
        root = await client.get("/static/")
        docs = await client.get("/static/docs/")
        redirect = await client.get("/static/docs?x=1")
        bare = await client.get("/static")
        empty_dir = await client.get("/static/css/")
    assert root.text == "<h1>home</h1>"
    assert root.headers["content-type"].startswith("text/html")
    assert docs.text == "<h1>docs</h1>"
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/static/docs/?x=1"
    assert bare.status_code == 307 and bare.headers["location"] == "/static/"
    assert empty_dir.status_code == 404


async def test_without_html_directories_are_404(site: Path) -> None:
    async with client_for(router_for(site / "public")) as client:
        assert (await client.get("/static/docs/")).status_code == 404
        assert (await client.get("/static/")).status_code == 404


async def test_standalone_app_and_root_path(site: Path) -> None:
    static = StaticFiles(site / "public")
    async with client_for(static) as client:
        assert (await client.get("/app.js")).text == "console.log(1)"
    transport = httpx.ASGITransport(app=static, root_path="/assets")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/assets/app.js")).text == "console.log(1)"


def test_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        StaticFiles(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError):
        StaticFiles(tmp_path / "file")


# ---------------------------------------------------------------- Range requests

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def big(tmp_path: Path) -> Path:
    (tmp_path / "data.bin").write_bytes(DATA)
    return tmp_path


async def test_single_ranges_are_206(big: Path) -> None:
    async with client_for(router_for(big)) as client:
        whole = await client.get("/static/data.bin")
        first = await client.get("/static/data.bin", headers={"range": "bytes=0-99"})
        middle = await client.get("/static/data.bin", headers={"range": "bytes=5000-5009"})
        tail = await client.get("/static/data.bin", headers={"range": "bytes=10000-"})
        suffix = await client.get("/static/data.bin", headers={"range": "bytes=-16"})
        past_end = await client.get("/static/data.bin", headers={"range": "bytes=10200-99999"})
        head = await client.head("/static/data.bin", headers={"range": "bytes=0-9"})
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    assert first.status_code == 206 and first.content == DATA[:100]
    assert first.headers["content-range"] == "bytes 0-99/10240"
    assert first.headers["content-length"] == "100"
    assert middle.content == DATA[5000:5010]
    assert (
        tail.content == DATA[10000:] and tail.headers["content-range"] == "bytes 10000-10239/10240"
    )
    assert suffix.content == DATA[-16:]
    assert past_end.content == DATA[10200:]
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-length"] == "10"


async def test_several_ranges_are_multipart_byteranges(big: Path) -> None:
    async with client_for(router_for(big)) as client:
        response = await client.get(
            "/static/data.bin", headers={"range": "bytes=0-9, 100-109, 105-119, -5"}
        )
    assert response.status_code == 206
    media_type, _, boundary = response.headers["content-type"].partition("; boundary=")
    assert media_type == "multipart/byteranges"
    assert int(response.headers["content-length"]) == len(response.content)
    parts = response.content.split(f"--{boundary}".encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    found = []
    for part in parts[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        assert b"content-type: application/octet-stream" in head
        range_line = next(line for line in head.split(b"\r\n") if b"content-range" in line)
        found.append((range_line.decode().split(" ", 2)[2], data.removesuffix(b"\r\n")))
    # Overlapping ranges are merged, and ranges come in file order.
    assert found == [
        ("0-9/10240", DATA[:10]),
        ("100-119/10240", DATA[100:120]),
        ("10235-10239/10240", DATA[-5:]),
    ]


async def test_unsatisfiable_and_invalid_ranges(big: Path) -> None:
    async with client_for(router_for(big)) as client:
        beyond = await client.get("/static/data.bin", headers={"range": "bytes=20000-"})
        invalid = await client.get("/static/data.bin", headers={"range": "bytes=9-1"})
        other_unit = await client.get("/static/data.bin", headers={"range": "pages=1-2"})
        garbage = await client.get("/static/data.bin", headers={"range": "bytes=a-b"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */10240"
    for response in (invalid, other_unit, garbage):  # not a valid range: the whole file
        assert response.status_code == 200 and response.content == DATA


async def test_if_range_sends_the_whole_file_when_it_changed(big: Path) -> None:
    async with client_for(router_for(big)) as client:
        etag = (await client.head("/static/data.bin")).headers["etag"]
        fresh = await client.get(
            "/static/data.bin", headers={"range": "bytes=0-0", "if-range": etag}
        )
        stale = await client.get(
            "/static/data.bin", headers={"range": "bytes=0-0", "if-range": '"old"'}
        )
    assert fresh.status_code == 206 and fresh.content == DATA[:1]
    assert stale.status_code == 200 and stale.content == DATA


def test_parse_range() -> None:
    assert parse_range("bytes=0-0", 10) == [(0, 1)]
    assert parse_range("bytes=0-4,5-9", 10) == [(0, 10)]  # adjacent: merged
    assert parse_range("bytes=-0", 10) == []
    assert parse_range("bytes=3-", 0) == []
    assert parse_range("bytes=0-", 10) == [(0, 10)]
    assert parse_range("bytes=", 10) is None
    assert parse_range("bytes=1", 10) is None
    assert parse_range("BYTES = 1-2", 10) == [(1, 3)]

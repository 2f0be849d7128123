"""``nexios run`` deployment options, each on a real server: TLS (wss, mutual TLS), proxy
headers from trusted and untrusted peers feeding the per-address limit, a UNIX socket, an
inherited socket, --env-file, --factory, --app-dir, --root-path, access log off, JSON logs.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme
import uvicorn
import uvicorn.config
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from nexios import NexiosApp
from nexios.cli import build_parser, check_arguments, main, server_options
from nexios.websockets.base import WebSocket
from tests.support.server import Server, serve

app = NexiosApp()


@app.get("/whoami")
async def http_whoami(request: Any) -> dict[str, Any]:
    return describe(request.scope)


@app.get("/env/{name}")
async def env(request: Any, name: str) -> dict[str, str | None]:
    return {"value": os.environ.get(name)}


@app.ws_route("/ws/whoami")
async def ws_whoami(ws: WebSocket) -> None:
    """Say who the server thinks the client is, then hold the connection until it leaves."""
    await ws.accept()
    await ws.send_json(describe(ws.scope))
    async for _ in ws.iter_text():
        pass


def describe(scope: dict[str, Any]) -> dict[str, Any]:
    client = scope.get("client")
    return {
        "client": client[0] if client else None,
        "scheme": scope["scheme"],
        "root_path": scope.get("root_path", ""),
        "pid": os.getpid(),
    }


def make_app() -> NexiosApp:
    """An app factory for ``--factory``: its app answers /factory, the module's does not."""
    made = NexiosApp()

    @made.get("/factory")
    async def factory(request: Any) -> dict[str, bool]:
        return {"made_by_factory": True}

    return made


def check(*argv: str) -> str | None:
    return check_arguments(build_parser().parse_args(["run", "pkg:app", *argv]))


def options(*argv: str) -> dict[str, Any]:
    return server_options(build_parser().parse_args(["run", "pkg:app", *argv]))


# --------------------------------------------------------------------------- parser


def test_deployment_flags_reach_uvicorn_under_its_names(tmp_path: Path) -> None:
    found = options(
        *("--uds", "/run/nexios.sock", "--backlog", "100", "--root-path", "/chat"),
        *("--factory", "--app-dir", "src", "--timeout-keep-alive", "7"),
        *("--limit-concurrency", "5000", "--limit-max-requests", "9", "--no-access-log"),
        *("--no-proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8,10.1.2.3"),
        *("--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem", "--ssl-keyfile-password", "pw"),
        *("--ssl-ca-certs", "ca.pem", "--ssl-cert-reqs", "2", "--ssl-ciphers", "ECDHE"),
        *("--header", "X-Frame-Options: DENY", "--no-server-header", "--no-date-header"),
    )
    expected = {
        "uds": "/run/nexios.sock",
        "backlog": 100,
        "root_path": "/chat",
        "factory": True,
        "app_dir": "src",
        "timeout_keep_alive": 7,
        "limit_concurrency": 5000,
        "limit_max_requests": 9,
        "access_log": False,
        "proxy_headers": False,
        "forwarded_allow_ips": "10.0.0.0/8,10.1.2.3",
        "ssl_certfile": "c.pem",
        "ssl_keyfile": "k.pem",
        "ssl_keyfile_password": "pw",
        "ssl_ca_certs": "ca.pem",
        "ssl_cert_reqs": 2,
        "ssl_ciphers": "ECDHE",
        "headers": [("X-Frame-Options", "DENY")],
        "server_header": False,
        "date_header": False,
    }
    assert {key: found[key] for key in expected} == expected


def test_deployment_defaults_are_uvicorns() -> None:
    found = options()
    defaults = uvicorn.config.Config("pkg:app")
    for name in (
        "uds",
        "fd",
        "backlog",
        "root_path",
        "factory",
        "timeout_keep_alive",
        "limit_concurrency",
        "limit_max_requests",
        "access_log",
        "proxy_headers",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_version",
        "ssl_ciphers",
        "server_header",
        "date_header",
    ):
        assert found[name] == getattr(defaults, name), name
    assert found["forwarded_allow_ips"] is None  # uvicorn: $FORWARDED_ALLOW_IPS or loopback
    assert found["headers"] == []


def test_every_option_is_a_uvicorn_run_argument() -> None:
    accepted = set(inspect.signature(uvicorn.run).parameters)
    assert set(options()) <= accepted


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ssl-keyfile", __file__], "--ssl-keyfile needs --ssl-certfile"),
        (["--ssl-certfile", "/no/such.pem"], "--ssl-certfile /no/such.pem: no such file"),
        (["--env-file", "/no/such.env"], "--env-file /no/such.env: no such file"),
        (["--log-config", __file__, "--log-format", "json"], "nexios.logs.JSONFormatter"),
        (["--uds", "/tmp/x.sock", "--fd", "3"], "give one"),
        (["--header", "no-colon"], "NAME:VALUE"),
    ],
)
def test_impossible_combinations_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in (check(*argv) or "")
    with pytest.raises(SystemExit) as info:
        main(["run", "pkg:app", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_sound_command_line_passes_the_checks() -> None:
    assert (
        check("--ssl-certfile", __file__, "--ssl-keyfile", __file__, "--env-file", __file__) is None
    )


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A server certificate for 127.0.0.1 from a CA made here; its key encrypted."""
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    files = {"cert": folder / "cert.pem", "key": folder / "key.pem", "ca": folder / "ca.pem"}
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"open sesame"),
        )
    )
    ca.cert_pem.write_to_path(str(files["ca"]))
    return files


def tls_args(files: dict[str, Path]) -> list[str]:
    return [
        *("--ssl-certfile", str(files["cert"]), "--ssl-keyfile", str(files["key"])),
        *("--ssl-keyfile-password", "open sesame"),
    ]


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.anyio
async def test_wss_handshake_with_a_certificate_made_here(
    ca: trustme.CA, tls_files: dict[str, Path]
) -> None:
    with serve("tests.test_cli_deploy:app", args=tls_args(tls_files)) as server:
        url = f"wss://127.0.0.1:{server.port}/ws/whoami"
        with anyio.fail_after(10):
            async with connect(url, ssl=trusting(ca)) as ws:
                assert json.loads(await ws.recv())["scheme"] == "wss"
                assert ws.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
            async with httpx.AsyncClient(verify=trusting(ca)) as client:
                response = await client.get(f"https://127.0.0.1:{server.port}/whoami")
            assert response.json()["scheme"] == "https"
            # The same server, not trusted: the certificate really is the one we made.
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(url, ssl=ssl.create_default_context())


@pytest.mark.anyio
async def test_mutual_tls_refuses_a_client_without_a_certificate(
    ca: trustme.CA, tls_files: dict[str, Path]
) -> None:
    args = [*tls_args(tls_files), "--ssl-ca-certs", str(tls_files["ca"]), "--ssl-cert-reqs", "2"]
    with serve("tests.test_cli_deploy:app", args=args) as server:
        url = f"wss://127.0.0.1:{server.port}/ws/whoami"
        with anyio.fail_after(10):
            with_cert = trusting(ca)
            ca.issue_cert("client.example").configure_cert(with_cert)
            async with connect(url, ssl=with_cert) as ws:
                assert json.loads(await ws.recv())["scheme"] == "wss"
            # TLS 1.3 asks for the certificate after the handshake: the refusal arrives
            # as a connection closed instead of an HTTP response; TLS 1.2 fails earlier.
            with pytest.raises((InvalidMessage, ssl.SSLError)):
                await connect(url, ssl=trusting(ca))


# --------------------------------------------------------------------------- proxy headers


LIMIT_ENV = {"NEXIOS_MAX_CONNECTIONS_PER_CLIENT": "2"}


async def open_as(
    server: Server, source: str, forwarded_for: str | None = None, proto: str | None = None
) -> tuple[ClientConnection, dict[str, Any]]:
    """A WebSocket from local address ``source`` carrying the given proxy headers."""
    headers = {}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    if proto is not None:
        headers["X-Forwarded-Proto"] = proto
    ws = await connect(
        server.ws_url("/ws/whoami"), additional_headers=headers, local_addr=(source, 0)
    )
    return ws, json.loads(await ws.recv())


async def refused_status(server: Server, source: str, forwarded_for: str | None) -> int:
    with pytest.raises(InvalidStatus) as info:
        await open_as(server, source, forwarded_for)
    status: int = info.value.response.status_code
    return status


@pytest.mark.anyio
async def test_trusted_proxy_forwards_the_client_and_the_limit_counts_it() -> None:
    args = ["--forwarded-allow-ips", "127.0.0.1"]
    with serve("tests.test_cli_deploy:app", args=args, env=LIMIT_ENV) as server:
        with anyio.fail_after(15):
            first, seen = await open_as(server, "127.0.0.1", "203.0.113.7", "https")
            assert seen["client"] == "203.0.113.7"
            assert seen["scheme"] == "wss"
            second, _ = await open_as(server, "127.0.0.1", "198.51.100.1, 203.0.113.7")
            # Two from 203.0.113.7 are open: its third is refused, another client is not.
            assert await refused_status(server, "127.0.0.1", "203.0.113.7") == 429
            other, seen = await open_as(server, "127.0.0.1", "203.0.113.8")
            assert seen["client"] == "203.0.113.8"
            # A slot frees when a connection closes.
            await first.close()
            await wait_for_admission(server, "127.0.0.1", "203.0.113.7")
            for ws in (second, other):
                await ws.close()
        assert "203.0.113.7" in server.log()  # the refusal is logged with the real client


async def wait_for_admission(server: Server, source: str, forwarded_for: str) -> None:
    """The server frees a slot once it has seen the close: retry until it has."""
    while True:
        try:
            ws, _ = await open_as(server, source, forwarded_for)
        except InvalidStatus:
            await anyio.sleep(0.02)
            continue
        await ws.close()
        return


@pytest.mark.anyio
async def test_untrusted_peer_cannot_spoof_its_address_past_the_limit() -> None:
    args = ["--forwarded-allow-ips", "127.0.0.1"]
    with serve("tests.test_cli_deploy:app", args=args, env=LIMIT_ENV) as server:
        with anyio.fail_after(15):
            # 127.0.0.2 is a loopback address that is not in --forwarded-allow-ips.
            first, seen = await open_as(server, "127.0.0.2", "203.0.113.1", "https")
            assert seen["client"] == "127.0.0.2"
            assert seen["scheme"] == "ws"
            second, seen = await open_as(server, "127.0.0.2", "203.0.113.2")
            assert seen["client"] == "127.0.0.2"
            assert await refused_status(server, "127.0.0.2", "203.0.113.3") == 429
            for ws in (first, second):
                await ws.close()


@pytest.mark.anyio
async def test_no_proxy_headers_ignores_forwarded_for_even_from_loopback() -> None:
    with serve("tests.test_cli_deploy:app", args=["--no-proxy-headers"]) as server:
        with anyio.fail_after(10):
            ws, seen = await open_as(server, "127.0.0.1", "203.0.113.7", "https")
            await ws.close()
    assert (seen["client"], seen["scheme"]) == ("127.0.0.1", "ws")


# --------------------------------------------------------------------------- binding


def connects_unix(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
        return True
    except OSError:
        return False


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="nx-") as folder:
        yield Path(folder)


@pytest.mark.anyio
async def test_unix_socket_serves_http_and_websockets(short_tmp: Path) -> None:
    path = short_tmp / "nexios.sock"
    # Over a UNIX socket the peer has no address: '*' trusts the local proxy's headers.
    args = ["--uds", str(path), "--forwarded-allow-ips", "*"]
    with serve(
        "tests.test_cli_deploy:app", args=args, ready=lambda _: connects_unix(path)
    ) as server:
        with anyio.fail_after(10):
            transport = httpx.AsyncHTTPTransport(uds=str(path))
            async with httpx.AsyncClient(transport=transport) as client:
                response = await client.get("http://nexios/whoami")
            assert response.json()["pid"] == server.pid
            headers = {"X-Forwarded-For": "192.0.2.10"}
            async with unix_connect(
                str(path), "ws://nexios/ws/whoami", additional_headers=headers
            ) as ws:
                assert json.loads(await ws.recv())["client"] == "192.0.2.10"


@pytest.mark.anyio
async def test_inherited_listening_socket() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        fd = listener.fileno()
        with serve(
            "tests.test_cli_deploy:app",
            args=["--fd", str(fd)],
            pass_fds=[fd],
            # The kernel accepts on our listener from the start: wait for the app instead.
            ready=lambda server: "Application startup complete" in server.log(),
        ) as server:
            with anyio.fail_after(10):
                async with connect(f"ws://127.0.0.1:{port}/ws/whoami") as ws:
                    assert json.loads(await ws.recv())["pid"] == server.pid


# --------------------------------------------------------------------------- the app


@pytest.mark.anyio
async def test_env_file_sets_variables_the_environment_does_not(tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text(
        "NEXIOS_TEST_GREETING=from-file\nNEXIOS_TEST_KEPT=from-file\n"
        "NEXIOS_MAX_CONNECTIONS_PER_CLIENT=1\n",
        encoding="utf-8",
    )
    with serve(
        "tests.test_cli_deploy:app",
        args=["--env-file", str(env_file)],
        env={"NEXIOS_TEST_KEPT": "from-env"},
    ) as server:
        with anyio.fail_after(10):
            async with httpx.AsyncClient(base_url=server.http_url) as client:
                greeting = (await client.get("/env/NEXIOS_TEST_GREETING")).json()["value"]
                kept = (await client.get("/env/NEXIOS_TEST_KEPT")).json()["value"]
            # The app read its limits from the file at import: one connection per address.
            ws, _ = await open_as(server, "127.0.0.1")
            assert await refused_status(server, "127.0.0.1", None) == 429
            await ws.close()
    assert (greeting, kept) == ("from-file", "from-env")


@pytest.mark.anyio
async def test_factory() -> None:
    with serve("tests.test_cli_deploy:make_app", args=["--factory"]) as server:
        with anyio.fail_after(10):
            async with httpx.AsyncClient(base_url=server.http_url) as client:
                made = await client.get("/factory")
                module_route = await client.get("/whoami")
    assert made.json() == {"made_by_factory": True}
    assert module_route.status_code == 404  # the factory's app, not the module's


@pytest.mark.anyio
async def test_app_dir(tmp_path: Path) -> None:
    (tmp_path / "deploy_app_xyz.py").write_text(
        "from tests.test_cli_deploy import app\n", encoding="utf-8"
    )
    with serve("deploy_app_xyz:app", args=["--app-dir", str(tmp_path)]) as server:
        with anyio.fail_after(10):
            async with httpx.AsyncClient(base_url=server.http_url) as client:
                response = await client.get("/whoami")
    assert response.json()["pid"] == server.pid


@pytest.mark.anyio
async def test_root_path_for_http() -> None:
    # The proxy strips /chat; uvicorn puts it back into scope["path"] and "root_path".
    with serve("tests.test_cli_deploy:app", args=["--root-path", "/chat"]) as server:
        with anyio.fail_after(10):
            async with httpx.AsyncClient(base_url=server.http_url) as client:
                response = await client.get("/whoami")
    assert response.json()["root_path"] == "/chat"


@pytest.mark.anyio
async def test_root_path_for_websockets() -> None:
    with serve("tests.test_cli_deploy:app", args=["--root-path", "/chat"]) as server:
        with anyio.fail_after(10):
            async with connect(server.ws_url("/ws/whoami")) as ws:
                assert json.loads(await ws.recv())["root_path"] == "/chat"


# --------------------------------------------------------------------------- logs


@pytest.mark.anyio
async def test_access_log_off() -> None:
    with serve("tests.test_cli_deploy:app", args=["--no-access-log"]) as server:
        async with httpx.AsyncClient(base_url=server.http_url) as client:
            assert (await client.get("/whoami?marker=off")).status_code == 200
        # uvicorn logs the access line before it writes the response we have read.
        log = server.log()
    assert "GET /whoami" not in log
    with serve("tests.test_cli_deploy:app") as server:
        async with httpx.AsyncClient(base_url=server.http_url) as client:
            assert (await client.get("/whoami?marker=on")).status_code == 200
        assert '"GET /whoami?marker=<redacted> HTTP/1.1" 200' in server.log()


@pytest.mark.anyio
async def test_json_logs_one_object_per_line_and_no_credentials() -> None:
    secret = "s3cret-t0ken"
    with serve("tests.test_cli_deploy:app", args=["--log-format", "json"]) as server:
        with anyio.fail_after(10):
            async with httpx.AsyncClient(base_url=server.http_url) as client:
                await client.get(f"/whoami?token={secret}")
            headers = {"Authorization": f"Bearer {secret}"}
            async with connect(
                server.ws_url(f"/ws/whoami?token={secret}"), additional_headers=headers
            ) as ws:
                await ws.recv()
            with pytest.raises(InvalidStatus):
                await connect(server.ws_url("/no/such/route"))
        server.wait_for_log("No WebSocket route")
    lines = [line for line in server.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
    assert secret not in server.log()
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert access[0]["path"] == "/whoami?token=<redacted>"
    assert access[0]["status"] == 200 and access[0]["method"] == "GET"
    handshakes = [e for e in entries if e.get("path") == "/ws/whoami?token=<redacted>"]
    assert handshakes and handshakes[0]["status"] == 101
    assert any(e["logger"] == "nexios.websockets" for e in entries)
    assert any(e["message"].startswith("Uvicorn running on") for e in entries)

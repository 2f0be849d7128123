"""The configurations in docs/deployment.md, checked as far as this machine allows.

- nginx: the page's file passes ``nginx -t`` and carries real traffic to ``nexios run``:
  wss through nginx, the forwarded client address and scheme, the per-address limit
  counting real clients, a spoofed ``X-Forwarded-For`` ignored, the same-origin check
  passing for a browser's Origin, HTTP and the http→https redirect.
- Redis: the page's settings keep history (entries and sequence numbers) across a restart
  of a real ``redis-server``; without them, the same restart loses it.
- systemd: the unit passes ``systemd-analyze verify``; its ``ExecStart`` and the image's
  ``CMD`` are command lines ``nexios run`` accepts.

Each block is taken from the page itself, so the page cannot drift from what is tested.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme
from redis import Redis
from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from nexios.cli import build_parser, check_arguments
from nexios.history.redis import RedisHistoryStore
from tests.support.redis import REDIS_SERVER
from tests.support.server import REPO_ROOT, Server, free_port, serve, wait_for

PAGE = REPO_ROOT / "docs" / "deployment.md"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
APP = "tests.test_cli_deploy:app"


def block(language: str, index: int = 0) -> str:
    """The ``index``-th fenced block of ``language`` in docs/deployment.md."""
    found = re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(found) > index, f"docs/deployment.md has no {language} block #{index}"
    text: str = found[index]
    return text


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Replace each exact string, failing loudly if the page no longer contains it."""
    for old, new in replacements.items():
        assert old in text, f"docs/deployment.md changed: {old!r} is gone; update this test"
        text = text.replace(old, new)
    return text


# --------------------------------------------------------------------------- nginx


needs_nginx = pytest.mark.skipif(
    not Path(NGINX).exists(), reason="nginx is not installed (apt-get install nginx)"
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextlib.contextmanager
def nginx_in_front(backend_port: int, ca: trustme.CA, folder: Path) -> Iterator[dict[str, int]]:
    """The page's nginx file on free loopback ports, in front of ``backend_port``."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(folder / "fullchain.pem"))
    cert.private_key_pem.write_to_path(str(folder / "privkey.pem"))
    ports = {"https": free_port(), "http": free_port()}
    site = substitute(
        block("nginx"),
        {
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{backend_port};",
            "listen 443 ssl;": f"listen 127.0.0.1:{ports['https']} ssl;",
            "listen 80;": f"listen 127.0.0.1:{ports['http']};",
            "/etc/letsencrypt/live/chat.example.com/": f"{folder}/",
        },
    )
    (folder / "site.conf").write_text(site, encoding="utf-8")
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    (folder / "nginx.conf").write_text(
        f"""
        worker_processes 1;
        pid {folder}/nginx.pid;
        error_log stderr warn;
        events {{ worker_connections 256; }}
        http {{
            access_log off;
            client_body_temp_path {temp["body"]};
            proxy_temp_path {temp["proxy"]};
            fastcgi_temp_path {temp["fastcgi"]};
            uwsgi_temp_path {temp["uwsgi"]};
            scgi_temp_path {temp["scgi"]};
            include {folder}/site.conf;
        }}
        """,
        encoding="utf-8",
    )
    command = [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(lambda: process.poll() is not None or accepts(ports["https"]), timeout=15)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield ports
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish, then exit
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def through_nginx(
    port: int, ca: trustme.CA, source: str, headers: dict[str, str] | None = None
) -> tuple[ClientConnection, dict[str, Any]]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    ws = await connect(
        f"wss://127.0.0.1:{port}/ws/whoami",
        ssl=context,
        additional_headers=headers or {},
        local_addr=(source, 0),
    )
    return ws, json.loads(await ws.recv())


@needs_nginx
@pytest.mark.anyio
async def test_nginx_in_front(ca: trustme.CA, tmp_path: Path) -> None:
    # The page's nexios command line: loopback, default --forwarded-allow-ips.
    env = {"NEXIOS_MAX_CONNECTIONS_PER_CLIENT": "2"}
    with serve(APP, env=env) as server, nginx_in_front(server.port, ca, tmp_path) as ports:
        https = ports["https"]
        with anyio.fail_after(20):
            # 127.0.0.2 and 127.0.0.3 are clients nexios does not trust; nginx (127.0.0.1)
            # is trusted, and forwards each client's own address.
            origin = {"Origin": f"https://127.0.0.1:{https}"}  # what a browser sends
            first, seen = await through_nginx(https, ca, "127.0.0.2", origin)
            assert (seen["client"], seen["scheme"]) == ("127.0.0.2", "wss")
            spoofed = {"X-Forwarded-For": "203.0.113.9"}
            second, seen = await through_nginx(https, ca, "127.0.0.2", spoofed)
            assert seen["client"] == "127.0.0.2"  # the forged address is not taken
            with pytest.raises(InvalidStatus) as refused:
                await through_nginx(https, ca, "127.0.0.2", {"X-Forwarded-For": "203.0.113.10"})
            assert refused.value.response.status_code == 429
            third, seen = await through_nginx(https, ca, "127.0.0.3")
            assert seen["client"] == "127.0.0.3"  # another client has its own count
            with pytest.raises(InvalidStatus) as foreign:
                await through_nginx(https, ca, "127.0.0.3", {"Origin": "https://evil.example"})
            assert foreign.value.response.status_code == 403
            for ws in (first, second, third):
                await ws.close()
            await check_http_through_nginx(ports, ca, server)


async def check_http_through_nginx(ports: dict[str, int], ca: trustme.CA, server: Server) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with httpx.AsyncClient(verify=context) as client:
        response = await client.get(f"https://127.0.0.1:{ports['https']}/whoami")
        redirect = await client.get(f"http://127.0.0.1:{ports['http']}/whoami?x=1")
    assert response.json()["scheme"] == "https"
    assert response.json()["pid"] == server.pid
    assert redirect.status_code == 301
    assert redirect.headers["location"] == "https://127.0.0.1/whoami?x=1"


# --------------------------------------------------------------------------- Redis


@contextlib.contextmanager
def redis_with(settings: str, folder: Path, port: int) -> Iterator[None]:
    """redis-server with ``settings`` (a redis.conf text) on ``port``, data in ``folder``."""
    config = folder / "redis.conf"
    config.write_text(
        f"{settings}\nport {port}\nbind 127.0.0.1\ndir {folder}\nloglevel warning\n",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [REDIS_SERVER, str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    client = Redis(port=port, socket_timeout=1)
    try:
        wait_for(lambda: process.poll() is not None or pings(client), timeout=10)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        yield
    finally:
        client.close()
        process.terminate()  # a clean shutdown: Redis flushes what its settings say
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except (OSError, RedisError):  # not up yet, or still loading its data
        return False


async def history_across_a_restart(settings: str, folder: Path) -> tuple[list[int], int]:
    """Append 3 entries, restart Redis, append one more: the seqs read back, the new seq."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with redis_with(settings, folder, port):
        store = RedisHistoryStore(url)
        for n in range(3):
            await store.append("room", "text", f"message {n}".encode())
        await store.close()
    with redis_with(settings, folder, port):
        store = RedisHistoryStore(url)
        kept = [entry.seq for entry in await store.read("room")]
        after = await store.append("room", "text", b"after the restart")
        await store.close()
    return kept, after.seq


@pytest.mark.anyio
async def test_redis_settings_keep_history_across_a_restart(tmp_path: Path) -> None:
    kept, next_seq = await history_across_a_restart(block("conf"), tmp_path)
    assert kept == [1, 2, 3]
    assert next_seq == 4  # numbering goes on: no seq is ever given twice


@pytest.mark.anyio
async def test_without_them_the_same_restart_loses_history(tmp_path: Path) -> None:
    # The control: the test above would fail if Redis kept data without the settings.
    kept, next_seq = await history_across_a_restart('appendonly no\nsave ""', tmp_path)
    assert (kept, next_seq) == ([], 1)


# --------------------------------------------------------------------------- systemd, image


def nexios_arguments(command: list[str]) -> list[str]:
    """The arguments after ``nexios`` in a command line that runs it."""
    index = next(i for i, word in enumerate(command) if Path(word).name == "nexios")
    return command[index + 1 :]


def assert_nexios_accepts(arguments: list[str]) -> None:
    args = build_parser().parse_args(arguments)  # exits 2 on an unknown option
    assert args.command == "run"
    assert check_arguments(args) is None


def test_systemd_unit_verifies_and_runs_a_valid_command(tmp_path: Path) -> None:
    unit = block("ini")
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M)
    assert exec_start is not None
    command = shlex.split(exec_start.group(1))
    assert_nexios_accepts(nexios_arguments(command))
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not checked")
    # verify wants ExecStart's program to exist: point it at this checkout's nexios.
    installed = Path(sys.executable).with_name("nexios")
    path = tmp_path / "nexios.service"
    path.write_text(unit.replace(command[0], str(installed)), encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True)
    # verify exits 0 even for unknown keys and bad values: it only prints them.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


def test_container_command_is_a_valid_nexios_command() -> None:
    dockerfile = block("dockerfile")
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd is not None, "the Dockerfile's CMD must be in exec (JSON) form"
    command = json.loads(cmd.group(1))
    assert command[0] == "nexios"
    assert_nexios_accepts(command[1:])
    assert "--host" in command and command[command.index("--host") + 1] == "0.0.0.0"


def test_page_commands_are_valid_nexios_commands() -> None:
    commands = re.findall(r"```bash\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(commands) >= 2
    for text in commands:
        arguments = nexios_arguments(shlex.split(text.replace("\\\n", " ")))
        assert_nexios_accepts(without_options(arguments, ("--ssl-certfile", "--ssl-keyfile")))


def without_options(arguments: list[str], names: tuple[str, ...]) -> list[str]:
    """``arguments`` less the named options and their values (files absent here)."""
    kept: list[str] = []
    words = iter(arguments)
    for word in words:
        if word in names:
            next(words, None)
        else:
            kept.append(word)
    return kept

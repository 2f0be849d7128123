"""A real ``redis-server`` for tests: started on a free port, killed, restarted, frozen.

Tests never mock Redis and never touch a system Redis: the session gets its own server
(fixture ``redis_server``), each test a flushed database (``redis_url``), and fault tests
start a dedicated :class:`RedisServer` so that killing or freezing it affects no one else.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

__all__ = ["RedisServer", "free_port", "redis_server", "redis_url"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
_START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(port: int, command: bytes, timeout: float = 0.5) -> bytes:
    """Send one inline command and return the first reply line (raises OSError)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(command + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            reply += chunk
        return reply


class RedisServer:
    """One ``redis-server`` subprocess without persistence, bound to 127.0.0.1."""

    def __init__(self, port: int | None = None, *, durable: bool = False) -> None:
        self.port = port or free_port()
        # durable: an append-only file fsynced on every write, so data survives a kill.
        self._data_dir = tempfile.mkdtemp(prefix="nexios-redis-") if durable else None
        self._process: subprocess.Popen[bytes] | None = None
        self._frozen = False

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self._data_dir else "no",
                "--appendfsync",
                "always",
                "--dir",
                self._data_dir or tempfile.gettempdir(),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._frozen = False
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"redis-server on port {self.port} exited: {stderr.strip()}")
            try:
                if _command(self.port, b"PING").startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.005)

    def flush(self) -> None:
        reply = _command(self.port, b"FLUSHALL")
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def stop(self) -> None:
        """Terminate the server (thawing it first) and wait for it to exit."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if self._frozen:
                self.thaw()
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_pipes(process)
        self._process = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything gracefully."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self._close_pipes(process)
        self._process = None
        self._frozen = False

    def restart(self) -> None:
        """Kill the server and start a new one on the same port."""
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open (the kernel still accepts) but nothing answers."""
        assert self._process is not None and self.running
        self._process.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)
        self._frozen = False

    @staticmethod
    def _close_pipes(process: subprocess.Popen[bytes]) -> None:
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server shared by the whole session; tests must not kill or freeze it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty database on the session's server."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    return redis_server.url()

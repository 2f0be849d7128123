"""A real server for tests: ``python -m nexios run <app>`` on a free port.

>>> with serve("01_echo:app", env=seed_env()) as server:
...     async with websockets.asyncio.client.connect(server.ws_url("/ws")) as ws: ...

The server runs as a subprocess (so its event loop, signals and logging are the real
ones) with stdout and stderr in a log file; ``serve`` returns once the port accepts TCP
connections and stops the process on exit: SIGTERM, then after 5 s SIGKILL to its
process group (the server and the worker or reloader processes it started).

**Wires.** Every test module that imports :func:`serve` is collected once per WebSocket
wire of ``nexios run`` (``tests/test_x.py::picows::test_y``, ``...::sansio::...``; the
``picows`` wire is the default, ``sansio`` the fallback): the conftest imports
:func:`pytest_pycollect_makemodule` and :func:`server_wire` from here, and ``serve``
passes ``--ws`` for the copy's wire unless the test gives its own ``--ws`` (such a test
then runs on the first wire only). ``NEXIOS_TEST_WIRES=sansio`` (a comma list)
restricts the wires.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.wire import WIRE_CLASSES, WIRE_NAMES

__all__ = [
    "REPO_ROOT",
    "SEED_DIR",
    "Server",
    "free_port",
    "pytest_pycollect_makemodule",
    "seed_env",
    "serve",
    "server_wire",
    "test_wires",
    "wait_for",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 5.0
_BIND_ATTEMPTS = 3


def _seed_dir() -> Path:
    # NEXIOS_SPEC_DIR names the spec folder (the one holding API.md and seed_examples/);
    # a path straight to seed_examples/ is accepted too.
    configured = os.environ.get("NEXIOS_SPEC_DIR")
    spec = Path(configured) if configured else REPO_ROOT.parent / "shared" / "spec"
    if not (spec / "seed_examples").is_dir() and any(spec.glob("0*.py")):
        return spec
    return spec / "seed_examples"


SEED_DIR = _seed_dir()
"""The tutorial's programs (``01_echo.py``...), importable as ``01_echo:app``."""


def free_port() -> int:
    """A TCP port nobody listens on right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def seed_env() -> dict[str, str]:
    """``env`` for :func:`serve` that puts the seed examples on ``PYTHONPATH``."""
    return {"PYTHONPATH": str(SEED_DIR)}


def wait_for(condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> None:
    """Poll ``condition()`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition!r}")
        time.sleep(interval)


@dataclass
class Server:
    """A running ``nexios run`` subprocess."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _final_log: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, path: str = "/") -> str:
        return f"ws://{self.host}:{self.port}{path if path.startswith('/') else '/' + path}"

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far (all of it, once stopped)."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """Wait until ``text`` appears in the log; return the whole log."""
        wait_for(lambda: text in self.log(), timeout)
        return self.log()


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (it stops its own workers), SIGKILL its process group if needed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_STOP_TIMEOUT)
    # The group is the server and the workers or reloader child it started; nothing else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_wires() -> list[str]:
    """The wires server-level tests run on: all of them, or ``NEXIOS_TEST_WIRES``."""
    chosen = os.environ.get("NEXIOS_TEST_WIRES")
    if not chosen:
        return list(WIRE_NAMES)
    names = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = set(names) - set(WIRE_CLASSES)
    if unknown:
        raise ValueError(f"NEXIOS_TEST_WIRES: unknown wire(s) {sorted(unknown)}")
    return names


_running_wire: list[str | None] = [None]


class WireModule(pytest.Module):
    """A server-level test module collected once per wire (``tests/test_x.py::picows``).

    The first wire's copy holds every test; the others only those that start a server
    (directly, or through the module's fixtures and helpers).
    """

    wire: str
    every_test: bool

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        collected = super().collect()
        if self.every_test:
            return collected
        return [node for node in collected if _starts_server(self.obj, node)]


def _starts_server(module: Any, node: Any) -> bool:
    function = getattr(node, "function", None) or getattr(node, "obj", None)
    code = getattr(function, "__code__", None)
    names = set(getattr(node, "fixturenames", ()))
    if code is not None:
        names |= _names_in(code)
    elif isinstance(node, pytest.Class):
        return True  # a class: keep it whole
    return _reaches_serve(module, names, set())


def _names_in(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_in(const)
    return names


def _reaches_serve(module: Any, names: set[str], seen: set[str]) -> bool:
    """True if ``serve`` is among ``names`` or in module functions/fixtures they name."""
    if "serve" in names:
        return True
    for name in names - seen:
        seen.add(name)
        target = getattr(module, name, None)
        unwrap = getattr(target, "_get_wrapped_function", None)
        function = unwrap() if unwrap is not None else target
        code = getattr(function, "__code__", None)
        local = getattr(function, "__module__", None) == module.__name__
        if code is not None and local and _reaches_serve(module, _names_in(code), seen):
            return True
    return False


class WireModules(pytest.File):
    """Collects a server-level test module once per wire.

    Each copy is its own ``Module`` node, so the module's fixtures — its servers included
    — are set up again for each wire rather than shared between them.
    """

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        for index, wire in enumerate(test_wires()):
            module = WireModule.from_parent(
                self, path=self.path, name=wire, nodeid=f"{self.nodeid}::{wire}"
            )
            module.wire = wire
            module.every_test = index == 0
            yield module


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    """Server-level modules (those importing ``serve`` from here) run once per wire."""
    if module_path.name.startswith("test_") and _imports_serve(module_path):
        return WireModules.from_parent(parent, path=module_path)
    return None


def _imports_serve(path: Path) -> bool:
    text = path.read_text(errors="replace")
    for line in text.splitlines():
        if (
            line.startswith("from tests.support.server import")
            and "serve" in line.split("import", 1)[1].replace(",", " ").split()
        ):
            return True
    return False


@pytest.fixture(scope="module", autouse=True)
def server_wire(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The wire ``serve`` uses in this module copy's tests (None in other modules).

    Module-scoped and autouse, so it is set before the module's own server fixtures.
    """
    wire = getattr(request.node, "wire", None)
    _running_wire[0] = wire
    yield wire
    _running_wire[0] = None


def _wire_args(args: Sequence[str]) -> list[str]:
    wire = _running_wire[0]
    if wire is None:
        return list(args)
    if "--ws" in args:
        if wire != test_wires()[0]:
            pytest.skip("this test chooses its own --ws: it runs on the first wire only")
        return list(args)
    return [*args, "--ws", WIRE_CLASSES[wire]]


@contextlib.contextmanager
def serve(
    app: str,
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    ready: Callable[[Server], bool] | None = None,
    pass_fds: Sequence[int] = (),
    port: int | None = None,
) -> Iterator[Server]:
    """Run ``python -m nexios run app`` on a free port until the block ends.

    ``env`` is added to the current environment; a ``PYTHONPATH`` in it is prepended to
    the repository root (so ``nexios`` and ``tests`` stay importable). ``args`` are more
    ``nexios run`` options (``--workers 2``...); ``--ws`` for the test's wire is added
    (see the module docstring). Fails with the server's log if it exits or does not
    listen within 15 s. A server told to listen elsewhere (``--uds``, ``--fd``, with
    ``pass_fds``) is up when ``ready(server)`` is true instead. ``port`` picks the port
    (to restart a server where its clients reconnect).
    """
    args = _wire_args(args)
    environment = dict(os.environ)
    environment["PYTHONUNBUFFERED"] = "1"
    extra = dict(env or {})
    paths = [extra.pop("PYTHONPATH", ""), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    environment.update(extra)
    handle, name = tempfile.mkstemp(prefix="nexios-server-", suffix=".log")
    os.close(handle)
    log_path = Path(name)
    try:
        server = _start(app, host, args, environment, cwd, log_path, ready, pass_fds, port)
        try:
            yield server
        finally:
            _stop(server.process)
            server._final_log = server.log()
    finally:
        with contextlib.suppress(OSError):
            log_path.unlink()


def _start(
    app: str,
    host: str,
    args: Sequence[str],
    environment: dict[str, str],
    cwd: str | os.PathLike[str] | None,
    log_path: Path,
    ready: Callable[[Server], bool] | None = None,
    pass_fds: Sequence[int] = (),
    fixed_port: int | None = None,
) -> Server:
    # The free port is released before the server binds it; another process may take it
    # in between, so a bind failure is retried on a new port.
    for attempt in range(_BIND_ATTEMPTS):
        port = fixed_port or free_port()
        command = [
            sys.executable,
            *("-m", "nexios", "run", app),
            *("--host", host, "--port", str(port), "--log-level", "debug"),
            *args,
        ]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,
                cwd=cwd if cwd is not None else str(REPO_ROOT),
                pass_fds=pass_fds,
            )
        server = Server(host=host, port=port, process=process, log_path=log_path)
        try:
            _wait_until_listening(server, ready)
        except _PortTaken:
            _stop(process)
            if attempt + 1 == _BIND_ATTEMPTS:
                raise RuntimeError(f"no free port after {_BIND_ATTEMPTS} attempts") from None
            continue
        except BaseException:
            _stop(process)
            raise
        return server
    raise AssertionError("unreachable")


class _PortTaken(Exception):
    pass


def _wait_until_listening(server: Server, ready: Callable[[Server], bool] | None = None) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    is_up = ready or (lambda server: _accepts_connections(server.host, server.port))
    while not is_up(server):
        code = server.process.poll()
        if code is not None:
            log = server.log()
            if "address already in use" in log.lower():
                raise _PortTaken
            raise RuntimeError(
                f"`nexios run` exited with code {code} before listening on port "
                f"{server.port}. Log:\n{log}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"`nexios run` did not listen on port {server.port} within "
                f"{_START_TIMEOUT}s. Log:\n{server.log()}"
            )
        time.sleep(0.02)

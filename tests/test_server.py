"""nexios.server: hand-built frames parse as websockets frames; which wire ``nexios run`` picks.

The wires themselves are tested under real uvicorn in ``tests/test_wire*.py``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError
from typing import Any

import pytest
import websockets
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

import nexios.server
import nexios.wire
from nexios.server import build_frame, default_http_protocol, default_ws_protocol


def _client_parse(data: bytes) -> list[Frame]:
    """Feed bytes to websockets' client-side parser (which rejects masked frames)."""
    client = websockets.ClientProtocol(parse_uri("ws://test/"), state=State.OPEN, max_size=None)
    client.receive_data(data)
    assert client.parser_exc is None, client.parser_exc
    return [event for event in client.events_received() if isinstance(event, Frame)]


# ---------------------------------------------------------------------- build_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("text", [True, False])
def test_build_frame_round_trips_through_the_client_parser(size: int, text: bool) -> None:
    payload = (b"x" * size) if text else bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
    frame = build_frame(payload, text=text)

    (parsed,) = _client_parse(frame)

    assert parsed.opcode is (Opcode.TEXT if text else Opcode.BINARY)
    assert parsed.fin
    assert bytes(parsed.data) == payload
    # Byte for byte what websockets itself would send as a server.
    assert frame == parsed.serialize(mask=False)


@pytest.mark.parametrize(("size", "header"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_build_frame_picks_the_shortest_length_encoding(size: int, header: int) -> None:
    assert len(build_frame(b"a" * size, text=True)) == header + size


def test_frames_concatenate_into_a_stream() -> None:
    stream = build_frame(b"one", text=True) + build_frame(b"\x00" * 300, text=False)
    frames = _client_parse(stream)
    assert [(f.opcode, bytes(f.data)) for f in frames] == [
        (Opcode.TEXT, b"one"),
        (Opcode.BINARY, b"\x00" * 300),
    ]


# ---------------------------------------------------------------------- wire choice


def _installed(monkeypatch: pytest.MonkeyPatch, **versions: str | None) -> None:
    real = nexios.wire.version

    def fake(package: str) -> str:
        if package in versions:
            found = versions[package]
            if found is None:
                raise PackageNotFoundError(package)
            return found
        return real(package)

    monkeypatch.setattr(nexios.wire, "version", fake)


def test_installed_versions_get_the_compiled_wire_and_the_guarded_http() -> None:
    assert default_ws_protocol() == "nexios.server:PicowsWebSocketProtocol"
    assert default_http_protocol() == "nexios.server:GuardedHttpToolsProtocol"
    assert nexios.server.frame_once_protocol_path() == "nexios.server:NexiosWebSocketProtocol"


@pytest.mark.parametrize("picows", ["2.2.9", "2.4.0", "3.0", None])
def test_untested_or_missing_picows_falls_back_to_the_hardened_protocol(
    picows: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _installed(monkeypatch, picows=picows)
    assert default_ws_protocol() == "nexios.server:NexiosWebSocketProtocol"
    assert default_http_protocol() == "nexios.server:GuardedHttpToolsProtocol"


def test_picows_that_does_not_load_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def broken(name: str, package: str | None = None) -> Any:
        if name.startswith("picows"):
            raise ImportError("libpicows: cannot open shared object file")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", broken)
    assert default_ws_protocol() == "nexios.server:NexiosWebSocketProtocol"


@pytest.mark.parametrize("uvicorn", ["0.53.9", "0.55.0", "1.0.0"])
def test_untested_uvicorn_gets_uvicorns_own_protocols(
    uvicorn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _installed(monkeypatch, uvicorn=uvicorn)
    assert default_ws_protocol() == "websockets-sansio"
    assert default_http_protocol() == "httptools"
    assert nexios.server.frame_once_protocol_path() is None


def test_protocol_paths_import() -> None:
    from uvicorn.importer import import_from_string

    for path in (
        default_ws_protocol(),
        default_http_protocol(),
        "nexios.server:NexiosWebSocketProtocol",
    ):
        assert isinstance(import_from_string(path), type), path


def test_exports() -> None:
    for name in nexios.server.__all__:
        assert hasattr(nexios.server, name), name

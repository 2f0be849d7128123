"""The public API as ``shared/spec/API.md`` fixes it: module paths, names, signatures."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import nexios

# Module path -> names API.md says it offers.
API: dict[str, tuple[str, ...]] = {
    "nexios": (
        "NexiosApp",
        "WebsocketRoutes",
        "WSRouter",
        "Request",
        "JSONResponse",
        "HTMLResponse",
        "PlainTextResponse",
        "RedirectResponse",
        "FileResponse",
        "StaticFiles",
    ),
    "nexios.routing": ("WebsocketRoutes", "WSRouter"),
    "nexios.websockets": (
        "WebSocket",
        "WebSocketDisconnect",
        "Channel",
        "ChannelBox",
        "PayloadTypeEnum",
        "WebSocketConsumer",
    ),
    "nexios.websockets.base": ("WebSocket", "WebSocketDisconnect"),
    "nexios.websockets.channels": (
        "Channel",
        "ChannelBox",
        "PayloadTypeEnum",
        "ChannelAddStatusEnum",
        "ChannelRemoveStatusEnum",
        "GroupSendStatusEnum",
    ),
    "nexios.websockets.consumers": ("WebSocketConsumer",),
    "nexios.testing": ("TestClient", "AsyncTestClient"),
    "nexios.events": ("EventEmitter",),
    "nexios.cli": ("main",),
    "nexios.exceptions": ("NexiosError", "WebSocketDisconnect", "InvalidJSONError"),
}

MEMBERS: dict[str, tuple[str, ...]] = {
    "nexios:NexiosApp": (
        "ws_route",
        "add_ws_route",
        "mount_ws_router",
        "add_ws_middleware",
        "get",
        "post",
        "put",
        "patch",
        "delete",
        "on_startup",
        "on_shutdown",
    ),
    "nexios.routing:WSRouter": ("add_ws_route", "ws_route"),
    "nexios.websockets.base:WebSocket": (
        "accept",
        "receive",
        "receive_text",
        "receive_bytes",
        "receive_json",
        "send",
        "send_text",
        "send_bytes",
        "send_json",
        "close",
        "iter_text",
        "iter_bytes",
        "iter_json",
        "path_params",
        "query_params",
        "headers",
        "cookies",
        "url",
        "client",
        "state",
    ),
    "nexios.websockets.channels:Channel": (
        "id",
        "is_active",
        "is_expired",
        "touch",
        "send",
        "_send",
        "receive",
        "close",
    ),
    "nexios.websockets.channels:ChannelBox": (
        "add_channel_to_group",
        "remove_channel_from_group",
        "group_send",
        "show_groups",
        "show_history",
        "flush_groups",
        "flush_history",
        "send_to",
        "close_all_connections",
        "presence",
        "configure",
    ),
    "nexios.websockets.consumers:WebSocketConsumer": (
        "encoding",
        "on_connect",
        "on_receive",
        "on_disconnect",
        "join_group",
        "leave_group",
        "broadcast",
        "send_to",
        "group",
        "as_route",
    ),
    "nexios.events:EventEmitter": ("on", "once", "off", "emit", "namespace"),
    "nexios.testing:TestClient": ("websocket_connect", "get", "post"),
}

# Signatures API.md spells out: parameter names and defaults, after ``self``.
SIGNATURES: dict[str, str] = {
    "nexios.routing:WebsocketRoutes": "(path, handler, middleware=None)",
    "nexios.routing:WSRouter": "(prefix=None, routes=None, middleware=None)",
    "nexios.websockets.base:WebSocket.accept": "(subprotocol=None, headers=None)",
    "nexios.websockets.base:WebSocket.receive_json": "(mode='text')",
    "nexios.websockets.base:WebSocket.send_json": "(data, mode='text')",
    "nexios.websockets.base:WebSocket.close": "(code=1000, reason=None)",
    "nexios.exceptions:WebSocketDisconnect": "(code=1000, reason='')",
    "nexios.websockets.channels:Channel.close": "(code=1000, reason=None)",
    "nexios.websockets.channels:ChannelBox.add_channel_to_group": "(channel, group_name='default')",
    "nexios.websockets.channels:ChannelBox.remove_channel_from_group": "(channel, group_name)",
    "nexios.websockets.channels:ChannelBox.group_send": (
        "(group_name='default', payload=None, save_history=False)"
    ),
    "nexios.websockets.consumers:WebSocketConsumer.broadcast": (
        "(payload, group_name='default', save_history=False)"
    ),
}


def resolve(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def public_modules() -> list[str]:
    names = ["nexios"]
    for info in pkgutil.walk_packages(nexios.__path__, "nexios."):
        leaf = info.name.rsplit(".", 1)[-1]
        if not leaf.startswith("_"):
            names.append(info.name)
    return names


@pytest.mark.parametrize(("module_name", "names"), sorted(API.items()))
def test_api_md_names(module_name: str, names: tuple[str, ...]) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == [], f"{module_name} lacks {missing}"
    if module_name in ("nexios", "nexios.websockets", "nexios.routing"):
        assert set(names) <= set(module.__all__)


def test_from_nexios_websockets_import() -> None:
    from nexios.websockets import (
        Channel,
        ChannelBox,
        PayloadTypeEnum,
        WebSocket,
        WebSocketConsumer,
        WebSocketDisconnect,
        base,
        channels,
        consumers,
    )

    assert WebSocket is base.WebSocket
    assert WebSocketDisconnect is base.WebSocketDisconnect
    assert (Channel, ChannelBox, PayloadTypeEnum) == (
        channels.Channel,
        channels.ChannelBox,
        channels.PayloadTypeEnum,
    )
    assert WebSocketConsumer is consumers.WebSocketConsumer


def test_one_class_per_name_everywhere() -> None:
    from nexios import exceptions, websockets
    from nexios.websockets import base

    assert websockets.WebSocketDisconnect is base.WebSocketDisconnect
    assert base.WebSocketDisconnect is exceptions.WebSocketDisconnect
    assert nexios.WebSocketDisconnect is exceptions.WebSocketDisconnect


def test_payload_type_values() -> None:
    from nexios.websockets.channels import PayloadTypeEnum

    assert {member.name: member.value for member in PayloadTypeEnum} == {
        "JSON": "json",
        "TEXT": "text",
        "BYTES": "bytes",
    }


@pytest.mark.parametrize(("target", "members"), sorted(MEMBERS.items()))
def test_members(target: str, members: tuple[str, ...]) -> None:
    cls = resolve(target)
    missing = [name for name in members if not hasattr(cls, name)]
    assert missing == [], f"{target} lacks {missing}"


def test_instance_attributes() -> None:
    from nexios.websockets.consumers import WebSocketConsumer

    assert WebSocketConsumer().channel is None
    app = nexios.NexiosApp()
    assert hasattr(app, "events")


@pytest.mark.parametrize(("target", "expected"), sorted(SIGNATURES.items()))
def test_signatures(target: str, expected: str) -> None:
    """API.md's parameters come first, as written; extensions may follow, with defaults."""
    obj = resolve(target)
    signature = inspect.signature(obj)  # type: ignore[arg-type]
    parameters = [
        p
        for p in signature.parameters.values()
        if p.name not in ("self", "cls")
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    shown = [
        p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
        for p in parameters
    ]
    documented = expected.strip("()").split(", ")
    assert shown[: len(documented)] == documented
    extra = parameters[len(documented) :]
    assert all(p.default is not inspect.Parameter.empty for p in extra), extra


def test_channel_signature() -> None:
    from nexios.websockets.channels import Channel, PayloadTypeEnum

    parameters = inspect.signature(Channel).parameters
    assert list(parameters) == ["websocket", "payload_type", "expires", "metadata", "framer"]
    assert parameters["framer"].kind is inspect.Parameter.KEYWORD_ONLY
    assert PayloadTypeEnum(parameters["payload_type"].default) is PayloadTypeEnum.JSON
    assert parameters["expires"].default is None
    assert parameters["metadata"].default is None


@pytest.mark.parametrize("module_name", public_modules())
def test_every_public_module_declares_all(module_name: str) -> None:
    module: ModuleType = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} has no __all__"
    assert len(exported) == len(set(exported)), f"{module_name}.__all__ has duplicates"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == [], f"{module_name}.__all__ names missing attributes: {missing}"


def test_version() -> None:
    assert isinstance(nexios.__version__, str)
    assert nexios.__version__.count(".") >= 1

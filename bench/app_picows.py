"""The native floor: the same routes served by picows alone, no ASGI, no framework.

``python -m bench.app_picows --port N`` (uvloop). What the compiled frame parser costs
when nothing else runs per message: the ``picows-native`` row. ``/echo`` and ``/json``
echo (``/json`` decodes and re-encodes with stdlib ``json``, like the raw ASGI app),
``/member`` joins the fan-out set and ``/pub`` sends each text message to every member.
"""

from __future__ import annotations

import argparse
import json

import uvloop
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

_TEXT = WSMsgType.TEXT
members: set[WSTransport] = set()


class Echo(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _TEXT:
            transport.send(_TEXT, frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class JsonEcho(Echo):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _TEXT:
            data = json.loads(frame.get_payload_as_utf8_text())
            transport.send(_TEXT, json.dumps(data))
        else:
            super().on_ws_frame(transport, frame)


class Member(Echo):
    def on_ws_connected(self, transport: WSTransport) -> None:
        members.add(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not _TEXT:
            super().on_ws_frame(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        members.discard(transport)


class Publisher(Echo):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _TEXT:
            payload = frame.get_payload_as_bytes()
            for member in members:
                member.send(_TEXT, payload)
        else:
            super().on_ws_frame(transport, frame)


ROUTES = {b"/echo": Echo, b"/json": JsonEcho, b"/member": Member, b"/pub": Publisher}


def listener_for(request: WSUpgradeRequest) -> WSListener | None:
    route = ROUTES.get(request.path)
    return route() if route is not None else None


async def main(port: int) -> None:
    server = await ws_create_server(listener_for, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))

"""Practice exercise 1: an echo server — text and JSON, error handling, connection logging.

Run it::

    nexios run examples.echo:app

Routes:

- ``/echo``: text in, text out — ``"hi"`` is answered ``"echo: hi"``. A binary frame
  is answered ``"error: expected a text frame, got N bytes of binary data"``.
- ``/echo/json``: JSON in, JSON out — ``{"a": 1}`` is answered ``{"echo": {"a": 1}}``.
  Invalid JSON is answered ``{"error": "invalid JSON", "detail": ...}`` and a binary
  frame ``{"error": "expected a text frame", ...}``.

Errors never close the connection: the client can correct itself and go on. Each
connection and disconnection is logged at INFO (logger ``examples.echo``) with the
client's address.
"""

from __future__ import annotations

import logging

from nexios import InvalidJSONError, NexiosApp, WebSocketMessageTypeError
from nexios.websockets import WebSocket, WebSocketDisconnect

__all__ = ["app"]

logger = logging.getLogger("examples.echo")
logger.setLevel(logging.INFO)

app = NexiosApp(title="Echo")


@app.on_startup
def show_logs() -> None:
    # Under `nexios run` nothing handles our logger; print its lines to stderr then.
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)


def peer(ws: WebSocket) -> str:
    """``host:port`` of the client, or ``unknown`` when the server does not say."""
    client = ws.client
    return f"{client[0]}:{client[1]}" if client else "unknown"


@app.ws_route("/echo")
async def echo_text(ws: WebSocket) -> None:
    await ws.accept()
    logger.info("client %s connected to /echo", peer(ws))
    try:
        while True:
            message = await ws.receive()
            text = message.get("text")
            if text is None:
                size = len(message.get("bytes") or b"")
                unit = "byte" if size == 1 else "bytes"
                await ws.send_text(
                    f"error: expected a text frame, got {size} {unit} of binary data"
                )
                continue
            await ws.send_text(f"echo: {text}")
    except WebSocketDisconnect as disconnect:
        logger.info("client %s disconnected from /echo (code %s)", peer(ws), disconnect.code)


@app.ws_route("/echo/json")
async def echo_json(ws: WebSocket) -> None:
    await ws.accept()
    logger.info("client %s connected to /echo/json", peer(ws))
    try:
        while True:
            try:
                data = await ws.receive_json()
            except InvalidJSONError as error:
                await ws.send_json({"error": "invalid JSON", "detail": str(error)})
                continue
            except WebSocketMessageTypeError:
                await ws.send_json(
                    {
                        "error": "expected a text frame",
                        "detail": "send JSON as text frames, not binary",
                    }
                )
                continue
            await ws.send_json({"echo": data})
    except WebSocketDisconnect as disconnect:
        logger.info("client %s disconnected from /echo/json (code %s)", peer(ws), disconnect.code)

"""Load generator of the protocol benchmark: picows on uvloop, one process.

Speaks to ``bench.protocol.run`` as ``bench.client`` does (``start``/``stop``/``result``
JSON lines on stdout). Two kinds of measurement:

- ``fanout``: N members of one group — plain members (``/member``) or protocol clients
  (``/connect``, subscribed in their ``connect`` frame) — and a publisher whose every
  text frame the server sends with ``ChannelBox.group_send``. Latency: one broadcast at
  a time until the last member has it; throughput: ``window`` broadcasts in flight.
- ``publish``: one connection publishing to a group it is in, ``window`` messages in
  flight: protocol ``publish`` commands (each answered by a reply and the message push)
  against a plain handler that sends every text frame to its own group (``/loop``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.client import FanOut, Idle, close_all, drive_fanout, emit, start_window

_TEXT = WSMsgType.TEXT
_CONNECT_BATCH = 100
_PROTOCOL = {"Sec-WebSocket-Protocol": "nexios.v1"}
_DATA = b'"data":"'


class Member(WSListener):  # type: ignore[misc]
    """A fan-out member; frames arrive in broadcast order, so only the first is parsed.

    A protocol member finds the broadcast inside the ``message`` push's ``data``; its
    first frame is the ``connect`` reply. The measurement is ``bench.client``'s.
    """

    fanout: FanOut
    protocol = False
    ready: asyncio.Queue[None]
    seq = 0
    received = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.fanout.listeners.append(self)
        if self.protocol:
            transport.send(_TEXT, b'{"id":1,"type":"connect","groups":{"fan":{}}}')
        else:
            self.ready.put_nowait(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != _TEXT:
            return
        if self.protocol and self.seq == 0:
            data = frame.get_payload_as_bytes()
            if data.startswith(b'{"id":1,'):
                self.ready.put_nowait(None)
                return
            if not data.startswith(b'{"type":"message"'):
                return  # a ping
        seq = self.seq
        if seq:
            seq += 1
        else:
            data = _broadcast(frame.get_payload_as_bytes())
            seq = int(data[: data.index(b" ")])
        self.seq = seq
        self.received += 1
        fanout = self.fanout
        reached = fanout.reached
        count = reached[seq] = reached[seq] + 1
        if count == fanout.members:
            sent = int(_broadcast(frame.get_payload_as_bytes()).split(b" ", 2)[1])
            fanout.done.put_nowait((seq, time.monotonic_ns() - sent))


def _broadcast(data: bytes) -> bytes:
    """The broadcast text: the frame itself, or the ``data`` of a protocol push."""
    start = data.find(_DATA)
    return data if start < 0 else data[start + len(_DATA) :]


async def connect_members(url: str, count: int, protocol: bool) -> list[WSTransport]:
    transports: list[WSTransport] = []
    headers = _PROTOCOL if protocol else None
    for start in range(0, count, _CONNECT_BATCH):
        batch = min(_CONNECT_BATCH, count - start)
        pairs = await asyncio.gather(
            *(ws_connect(Member, url, extra_headers=headers) for _ in range(batch))
        )
        transports.extend(transport for transport, _ in pairs)
    for _ in range(count):
        await asyncio.wait_for(Member.ready.get(), 30)
    return transports


async def run_fanout(spec: dict[str, Any]) -> dict[str, Any]:
    url, members = spec["url"], spec["members"]
    protocol = spec["path"] == "protocol"
    Member.fanout = fanout = FanOut(members)
    Member.protocol = protocol
    Member.ready = asyncio.Queue()
    path = "/connect" if protocol else "/member?group=fan"
    transports = await connect_members(url + path, members, protocol)
    publisher, _ = await ws_connect(Idle, url + "/pub?group=fan")
    result = await drive_fanout(publisher, fanout, spec)
    publisher.disconnect()
    await close_all(transports)
    return result


class Publisher(WSListener):  # type: ignore[misc]
    """One connection publishing to its own group with ``window`` messages in flight.

    Protocol: each ``publish`` gets a reply (counted, and the next command is sent) and
    the message push (counted). Plain: each message coming back sends the next.
    """

    protocol = False
    group = b"pipe"
    next_id = 1
    replies = 0
    pushes = 0
    connected: asyncio.Future[None]

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.protocol:
            groups = b'{"' + self.group + b'":{}}'
            transport.send(_TEXT, b'{"id":1,"type":"connect","groups":' + groups + b"}")
        else:
            self.connected.set_result(None)

    def send_one(self) -> None:
        if self.protocol:
            self.next_id += 1
            self.transport.send(
                _TEXT,
                b'{"id":%d,"type":"publish","group":"%s","data":{"n":%d}}'
                % (self.next_id, self.group, self.next_id),
            )
        else:
            self.transport.send(_TEXT, b'{"n":1}')

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != _TEXT:
            return
        data = frame.get_payload_as_bytes()
        if not self.protocol:
            self.pushes += 1
            self.replies += 1
            self.send_one()
        elif data.startswith(b'{"id":1,'):
            self.connected.set_result(None)
        elif data.startswith(b'{"id":'):
            if b'"error"' in data:
                raise RuntimeError(f"publish refused: {data!r}")
            self.replies += 1
            self.send_one()
        elif data.startswith(b'{"type":"message"'):
            self.pushes += 1


async def run_publish(spec: dict[str, Any]) -> dict[str, Any]:
    protocol = spec["path"] == "protocol"
    Publisher.protocol = protocol
    Publisher.group = spec["group"].encode()
    Publisher.connected = asyncio.get_running_loop().create_future()
    if protocol:
        url, headers = spec["url"] + "/connect", _PROTOCOL
    else:
        url, headers = spec["url"] + f"/loop?group={spec['group']}", None
    transport, listener = await ws_connect(Publisher, url, extra_headers=headers)
    await asyncio.wait_for(Publisher.connected, 10)
    for _ in range(spec["window"]):
        listener.send_one()
    await asyncio.sleep(spec["warmup"])
    await start_window()
    begin, replies, pushes = time.perf_counter(), listener.replies, listener.pushes
    await asyncio.sleep(spec["duration"])
    elapsed = time.perf_counter() - begin
    done, received = listener.replies - replies, listener.pushes - pushes
    emit("stop")
    transport.disconnect()
    return {"rate": done / elapsed, "pushes_per_s": received / elapsed}


async def main(spec: dict[str, Any]) -> None:
    runners = {"fanout": run_fanout, "publish": run_publish}
    emit("result", **await runners[spec["kind"]](spec))


if __name__ == "__main__":
    uvloop.run(main(json.loads(sys.argv[1])))

// Delivery: merge after (re)subscribe, dedupe, order, gap repair from history, epochs.
import assert from "node:assert/strict";
import { test } from "node:test";
import { NexiosClient } from "../nexios.js";
import { message, settle, useFakes } from "./fake.mjs";

const env = useFakes();

function setup(subscribeOptions = {}, clientOptions = {}) {
  const client = new NexiosClient("ws://test/connect", { transport: env.server.transport, ...clientOptions });
  const got = [];
  const recovered = [];
  const sub = client.subscribe("room", {
    onMessage: (m) => got.push(m.seq ?? m.data),
    onRecovered: (r) => recovered.push(r),
    ...subscribeOptions,
  });
  return { client, sub, got, recovered };
}

test("one connect frame, the subprotocol, and a fresh subscription starts at the group's last seq", async () => {
  const { sub, got } = setup();
  await settle();
  assert.equal(env.server.last.protocol, "nexios.v1");
  const connect = await env.server.accept({ groups: { room: { epoch: "e1", seq: 10, complete: true, recovered: 0 } } });
  assert.deepEqual(connect.groups, { room: {} });
  assert.equal(sub.state, "subscribed");
  assert.equal(sub.seq, 10);
  env.server.last.push(message("room", 10)); // already had it: dropped
  env.server.last.push(message("room", 11));
  env.server.last.push(message("room", 12));
  assert.deepEqual(got, [11, 12]);
});

test("duplicates are dropped and a message that jumps ahead waits for the gap to be filled", async () => {
  const { sub, got } = setup();
  await settle();
  await env.server.accept();
  const ws = env.server.last;
  for (const seq of [1, 2, 2, 1, 5, 4, 5]) ws.push(message("room", seq));
  assert.deepEqual(got, [1, 2]); // 4 and 5 are held: 3 is missing
  await settle();
  const history = ws.take("history");
  assert.deepEqual(
    { since: history.since, limit: history.limit, epoch: history.epoch, group: history.group },
    { since: 2, limit: 2, epoch: "e1", group: "room" }, // asked when 5 came: 3 and 4 missing
  );
  ws.push(message("room", 3)); // a copy arrives while history is asked: no harm
  const page = [3, 4].map((seq) => ({ seq, data: seq }));
  ws.reply(history, { messages: page, epoch: "e1", seq: 5, complete: true });
  await settle();
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
  assert.equal(sub.seq, 5);
  ws.push(message("room", 6));
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
});

test("a gap history cannot fill: the app is told, delivery jumps to what was held", async () => {
  const { got, recovered } = setup();
  await settle();
  await env.server.accept();
  const ws = env.server.last;
  ws.push(message("room", 1));
  ws.push(message("room", 7));
  ws.push(message("room", 8));
  await settle();
  const history = ws.take("history");
  assert.equal(history.limit, 5);
  ws.reply(history, { messages: [], epoch: "e1", seq: 8, complete: false });
  await settle();
  assert.deepEqual(got, [1, 7, 8]);
  assert.deepEqual(recovered, [{ complete: false, recovered: 0, reason: "gap" }]);
});

test("a history page that fills part of a gap is delivered before the jump", async () => {
  const { got, recovered } = setup();
  await settle();
  await env.server.accept();
  const ws = env.server.last;
  ws.push(message("room", 1));
  ws.push(message("room", 6));
  await settle();
  ws.reply(ws.take("history"), { messages: [{ seq: 2, data: 2 }, { seq: 3, data: 3 }], epoch: "e1", seq: 6, complete: true });
  await settle();
  assert.deepEqual(got, [1, 2, 3, 6]);
  assert.equal(recovered.length, 1);
  assert.equal(ws.has("history"), false);
});

test("a long gap is read page by page", async () => {
  const { got } = setup();
  await settle();
  await env.server.accept();
  const ws = env.server.last;
  ws.push(message("room", 1));
  ws.push(message("room", 1503));
  await settle();
  const first = ws.take("history");
  assert.deepEqual([first.since, first.limit], [1, 1000]);
  const page = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => ({ seq: from + i, data: from + i }));
  ws.reply(first, { messages: page(2, 1001), epoch: "e1", seq: 1503, complete: true });
  await settle();
  const second = ws.take("history");
  assert.deepEqual([second.since, second.limit], [1001, 501]);
  ws.reply(second, { messages: page(1002, 1502), epoch: "e1", seq: 1503, complete: true });
  await settle();
  assert.deepEqual(got, page(1, 1503).map((m) => m.seq));
});

test("pushes before the subscribe reply are kept and merged: each once, in order", async () => {
  const { sub, got, recovered } = setup({ since: 5, epoch: "e1" });
  await settle();
  const ws = env.server.last;
  ws.open();
  const connect = ws.take("connect");
  assert.deepEqual(connect.groups, { room: { since: 5, epoch: "e1" } });
  // The env.server replays 6..8, then live 9, before its reply; 5 is one the client had.
  for (const seq of [5, 6, 7, 8, 9]) ws.push(message("room", seq));
  assert.deepEqual(got, []);
  ws.reply(connect, { client: "c1", ping: 0, groups: { room: { epoch: "e1", seq: 8, complete: true, recovered: 3 } } });
  await settle();
  assert.deepEqual(got, [6, 7, 8, 9]);
  assert.equal(sub.seq, 9);
  assert.deepEqual(recovered, [{ complete: true, recovered: 3, reason: "subscribe" }]);
});

test("incomplete recovery on subscribe: the app is told, the position is the reply's seq", async () => {
  const { sub, got, recovered } = setup({ since: 5, epoch: "old" });
  await settle();
  const ws = env.server.last;
  ws.open();
  const connect = ws.take("connect");
  ws.push(message("room", 3, 3, "new")); // live, arrives before the reply
  ws.push(message("room", 4, 4, "new"));
  ws.reply(connect, { client: "c1", groups: { room: { epoch: "new", seq: 3, complete: false, recovered: 0 } } });
  await settle();
  assert.deepEqual(recovered, [{ complete: false, recovered: 0, reason: "subscribe" }]);
  assert.deepEqual(got, [4]);
  assert.deepEqual([sub.seq, sub.epoch], [4, "new"]);
});

test("reconnect resubscribes every group in one connect frame with its position", async () => {
  const client = new NexiosClient("ws://test/connect", { transport: env.server.transport });
  const a = client.subscribe("a", { presence: true });
  const b = client.subscribe("b");
  client.subscribe("c");
  await settle();
  await env.server.accept({
    groups: {
      a: { epoch: "ea", seq: 3, complete: true },
      b: { epoch: "eb", seq: 0, complete: true },
      c: { epoch: "ec", seq: 9, complete: true },
    },
  });
  env.server.last.push(message("a", 4, "x", "ea"));
  env.server.last.drop(1006);
  assert.equal(client.state, "connecting");
  assert.equal(a.state, "subscribing");
  await env.clock.tick(client.options.maxDelay);
  assert.equal(env.server.sockets.length, 2);
  env.server.last.open();
  const connect = env.server.last.take("connect");
  assert.deepEqual(connect.groups, {
    a: { since: 4, epoch: "ea", presence: true },
    b: { since: 0, epoch: "eb" },
    c: { since: 9, epoch: "ec" },
  });
  assert.equal(b.seq, 0);
});

test("an epoch change: a resync push, or a message from another epoch, resets the position", async () => {
  const { sub, got, recovered } = setup();
  await settle();
  await env.server.accept();
  const ws = env.server.last;
  ws.push(message("room", 1));
  ws.push({ type: "resync", group: "room", epoch: "e2", seq: 0, reason: "epoch" });
  ws.push(message("room", 1, "again", "e2"));
  assert.deepEqual(got, [1, 1]);
  assert.equal(sub.epoch, "e2");
  ws.push(message("room", 1, "x", "e3")); // a resync this client missed
  assert.deepEqual(got, [1, 1, 1]);
  assert.deepEqual(
    recovered.map((r) => [r.complete, r.reason]),
    [
      [false, "epoch"],
      [false, "epoch"],
    ],
  );
  assert.equal(sub.epoch, "e3");
});

test("messages that are not saved (no seq) are delivered as they come, also while subscribing", async () => {
  const got = [];
  const client = new NexiosClient("ws://t", { transport: env.server.transport });
  client.subscribe("news", { onMessage: (m) => got.push(m.data) });
  await settle();
  const ws = env.server.last;
  ws.open();
  ws.push({ type: "message", group: "news", data: "flash" });
  ws.push({ type: "message", group: "other", data: "not mine" });
  assert.deepEqual(got, ["flash"]);
});

test("an exception in onMessage is reported but does not stop delivery", async () => {
  const got = [];
  const errors = [];
  const { sub } = setup({
    onMessage: (m) => {
      got.push(m.seq);
      if (m.seq === 2) throw new Error("app bug");
    },
  });
  const queue = globalThis.queueMicrotask;
  globalThis.queueMicrotask = (fn) => {
    try {
      fn();
    } catch (error) {
      errors.push(error.message);
    }
  };
  await settle();
  await env.server.accept();
  for (const seq of [1, 2, 3]) env.server.last.push(message("room", seq));
  await settle();
  assert.deepEqual(got, [1, 2, 3]);
  assert.equal(sub.seq, 3);
  globalThis.queueMicrotask = queue;
  assert.deepEqual(errors, ["app bug"]);
});

test("a group without history yet (epoch \"\") takes the first epoch it sees without a resync", async () => {
  const { sub, got, recovered } = setup();
  await settle();
  await env.server.accept({ groups: { room: { epoch: "", seq: 0, complete: true, recovered: 0 } } });
  assert.equal(sub.epoch, null);
  env.server.last.push(message("room", 1, 1, "first"));
  env.server.last.push(message("room", 2, 2, "first"));
  assert.deepEqual(got, [1, 2]);
  assert.equal(sub.epoch, "first");
  assert.deepEqual(recovered, []);
  env.server.last.drop();
  await env.clock.tick(env.clock.nextIn);
  const connect = await env.server.accept();
  assert.deepEqual(connect.groups, { room: { since: 2, epoch: "first" } });
});

test("a position without an epoch is sent without one (the server refuses an empty epoch)", async () => {
  const { sub } = setup({ since: 0 });
  await settle();
  const connect = await env.server.accept({ groups: { room: { epoch: "", seq: 0, complete: true, recovered: 0 } } });
  assert.deepEqual(connect.groups, { room: { since: 0 } });
  assert.equal(sub.seq, 0);
});

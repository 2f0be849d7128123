// The connection: backoff, waking up, env.server pings, command timeouts, retries, tokens, stops.
import assert from "node:assert/strict";
import { test } from "node:test";
import { NexiosClient, NexiosError } from "../nexios.js";
import { FakeServer, settle, useFakes } from "./fake.mjs";

const env = useFakes();

const client = (options = {}) => new NexiosClient("ws://test/connect", { transport: env.server.transport, ...options });

// A subscription the server accepted.
async function subscribed(c, group = "room") {
  const sub = c.subscribe(group);
  await settle();
  env.server.last.reply(env.server.last.take("subscribe"), { epoch: "e", seq: 0, complete: true });
  await settle();
  return sub;
}

// Every reconnect delay, while each attempt fails at once.
async function delays(c, count) {
  const seen = [];
  for (let i = 0; i < count; i++) {
    env.server.last.drop(1006);
    const wait = env.clock.nextIn;
    seen.push(wait);
    const before = env.server.sockets.length;
    await env.clock.tick(wait);
    assert.equal(env.server.sockets.length, before + 1, "a new socket after the delay");
  }
  return seen;
}

test("backoff: jittered, exponential, capped; it resets after a successful connect", async () => {
  const random = Math.random;
  try {
    for (const [value, pick] of [
      [0, (ceiling) => ceiling / 2],
      [0.999999, (ceiling) => ceiling],
    ]) {
      Math.random = () => value;
      env.server = new FakeServer();
      const c = client({ minDelay: 100, maxDelay: 3000 }).connect();
      await settle();
      const seen = await delays(c, 8);
      const ceilings = [100, 200, 400, 800, 1600, 3000, 3000, 3000];
      seen.forEach((ms, i) => assert.ok(Math.abs(ms - pick(ceilings[i])) < 0.01, `attempt ${i}: ${ms}`));
      await env.server.accept();
      assert.equal(c.state, "connected");
      const [after] = await delays(c, 1);
      assert.ok(Math.abs(after - pick(100)) < 0.01, "back to the first delay");
      c.close();
    }
  } finally {
    Math.random = random;
  }
});

test("backoff delays are spread (jitter)", async () => {
  const c = client({ minDelay: 1000, maxDelay: 1000 }).connect();
  await settle();
  const seen = await delays(c, 20);
  assert.ok(seen.every((ms) => ms >= 500 && ms <= 1000));
  assert.ok(new Set(seen).size > 10, "delays differ");
});

test("the network coming back or the page becoming visible reconnects at once", async () => {
  const win = new EventTarget();
  win.document = new EventTarget();
  win.document.visibilityState = "hidden";
  const c = client({ window: win, minDelay: 60000, maxDelay: 60000 }).connect();
  await settle();
  await env.server.accept();
  env.server.last.drop(1006);
  assert.equal(env.server.sockets.length, 1);
  win.document.dispatchEvent(new Event("visibilitychange")); // still hidden: wait
  assert.equal(env.server.sockets.length, 1);
  win.document.visibilityState = "visible";
  win.document.dispatchEvent(new Event("visibilitychange"));
  await settle();
  assert.equal(env.server.sockets.length, 2);
  env.server.last.drop(1006);
  win.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(env.server.sockets.length, 3);
  win.dispatchEvent(new Event("online")); // connecting already: no second socket
  await settle();
  assert.equal(env.server.sockets.length, 3);
  c.close();
  win.dispatchEvent(new Event("online")); // closed by the app: stays closed
  await settle();
  assert.equal(env.server.sockets.length, 3);
});

test("env.server pings are answered, and their absence replaces the socket", async () => {
  const states = [];
  const c = client({ pingGrace: 5000, onState: (s) => states.push(s) }).connect();
  await settle();
  await env.server.accept({ ping: 25 });
  const first = env.server.last;
  await env.clock.tick(20000);
  first.push({ type: "ping" });
  assert.deepEqual(first.take("pong"), { type: "pong" });
  await env.clock.tick(29000); // 25 + 5 s since the last frame have not passed
  assert.equal(env.server.sockets.length, 1);
  await env.clock.tick(1000);
  assert.notEqual(first.closed, null, "the silent socket was closed");
  assert.deepEqual(states, ["connecting", "connected", "connecting"]);
  await env.clock.tick(c.options.maxDelay);
  assert.equal(env.server.sockets.length, 2);
});

test("commands time out (408) when the env.server does not answer", async () => {
  const c = client({ timeout: 1000, retries: 0 }).connect();
  await settle();
  await env.server.accept();
  const sub = await subscribed(c);
  const history = sub.history({ limit: 5 });
  const outcome = history.catch((error) => error);
  await env.clock.tick(999);
  assert.equal(env.server.last.take("history").limit, 5);
  await env.clock.tick(1);
  const error = await outcome;
  assert.ok(error instanceof NexiosError);
  assert.equal(error.code, 408);
  // A late reply is ignored.
  env.server.last.push({ id: 99, result: {} });
});

test("a publish is retried with the same idempotency key after a timeout, a drop and a 503", async () => {
  const c = client({ timeout: 1000, retries: 3, minDelay: 100, maxDelay: 100 }).connect();
  await settle();
  await env.server.accept();
  const sub = await subscribed(c);
  const done = sub.publish({ text: "hi" });
  await settle();
  const first = env.server.last.take("publish");
  assert.deepEqual(first.data, { text: "hi" });
  assert.ok(first.idempotency_key.length >= 8);
  await env.clock.tick(1000); // no reply: timeout, retry
  await env.clock.tick(100);
  const second = env.server.last.take("publish");
  env.server.last.drop(1006); // lost before the reply
  await env.clock.tick(100);
  await env.server.accept();
  await env.clock.tick(100);
  const third = env.server.last.take("publish");
  env.server.last.refuse(third, 503, "redis is down");
  await env.clock.tick(100);
  const fourth = env.server.last.take("publish");
  const keys = new Set([first, second, third, fourth].map((f) => f.idempotency_key));
  assert.equal(keys.size, 1, "one key for every attempt");
  assert.equal(new Set([first, second, third, fourth].map((f) => f.id)).size, 4);
  env.server.last.reply(fourth, { seq: 1, epoch: "e" });
  assert.deepEqual(await done, { seq: 1, epoch: "e" });
  // Two publish calls: two keys.
  sub.publish(1);
  sub.publish(2, { key: "mine" });
  await settle();
  const [a, b] = [env.server.last.take("publish"), env.server.last.take("publish")];
  assert.notEqual(a.idempotency_key, first.idempotency_key);
  assert.equal(b.idempotency_key, "mine");
});

test("permanent errors are not retried", async () => {
  const c = client({ retries: 3 }).connect();
  await settle();
  await env.server.accept();
  const sub = await subscribed(c);
  const outcome = sub.publish("x").catch((e) => e);
  await settle();
  env.server.last.refuse(env.server.last.take("publish"), 403, "read-only group");
  const error = await outcome;
  assert.deepEqual([error.code, error.message, error.temporary], [403, "read-only group", false]);
  assert.equal(env.server.last.has("publish"), false);
});

test("commands issued while disconnected wait for the connection", async () => {
  const c = client();
  const pong = c.ping();
  await settle();
  await env.server.accept();
  env.server.last.reply(env.server.last.take("ping"));
  assert.deepEqual(await pong, {});
});

test("the token: fetched before connecting, refreshed before it expires, renewed after 4001", async () => {
  let n = 0;
  const getToken = async () => `t${++n}`;
  const c = client({ getToken }).connect();
  await settle();
  env.server.last.open();
  const connect = env.server.last.take("connect");
  assert.equal(connect.token, "t1");
  env.server.last.reply(connect, { client: "c1", ping: 0, expires: 10, groups: {} });
  await settle();
  await env.clock.tick(4999);
  assert.equal(env.server.last.has("refresh"), false);
  await env.clock.tick(1); // half the life left
  const refresh = env.server.last.take("refresh");
  assert.equal(refresh.token, "t2");
  env.server.last.reply(refresh, { expires: 600 });
  await env.clock.tick(569999);
  assert.equal(env.server.last.has("refresh"), false);
  await env.clock.tick(1); // 30 s before expiry
  assert.equal(env.server.last.take("refresh").token, "t3");
  // The env.server gave up waiting: disconnect 4001. The reconnect uses a fresh token.
  env.server.last.push({ type: "disconnect", code: 4001, reason: "token expired", reconnect: true });
  env.server.last.drop(4001, "token expired");
  assert.equal(c.state, "connecting");
  await env.clock.tick(c.options.maxDelay);
  env.server.last.open();
  assert.equal(env.server.last.take("connect").token, "t4");
});

test("a connect refused with 419 gets a new token and reconnects; 401 stops for good", async () => {
  let n = 0;
  const errors = [];
  const c = client({ getToken: async () => `t${++n}`, onError: (e) => errors.push(e.code) }).connect();
  await settle();
  env.server.last.open();
  env.server.last.refuse(env.server.last.take("connect"), 419, "token expired");
  await settle();
  assert.equal(c.state, "connecting");
  await env.clock.tick(c.options.maxDelay);
  env.server.last.open();
  const second = env.server.last.take("connect");
  assert.equal(second.token, "t2");
  const waiting = c.ping().catch((e) => e);
  env.server.last.refuse(second, 401, "who are you?");
  await settle();
  assert.equal(c.state, "disconnected");
  assert.deepEqual(errors, [419, 401]);
  await env.clock.tick(60000);
  assert.equal(env.server.sockets.length, 2, "no reconnect after 401");
  assert.equal((await waiting).code, 401);
});

test("close codes 4500-4999 and a disconnect push with reconnect: false stop; others reconnect", async () => {
  for (const [close, push, again] of [
    [4500, null, false],
    [4999, null, false],
    [4000, null, true],
    [1013, null, true],
    [1008, null, true],
    [1001, { type: "disconnect", code: 4501, reason: "banned", reconnect: false }, false],
  ]) {
    env.server = new FakeServer();
    const states = [];
    const c = client({ onState: (s, detail) => states.push([s, detail?.code]) }).connect();
    await settle();
    await env.server.accept();
    if (push) env.server.last.push(push);
    env.server.last.drop(close, "bye");
    await env.clock.tick(60000);
    assert.equal(env.server.sockets.length, again ? 2 : 1, `close ${close}`);
    if (!again) assert.deepEqual(states.at(-1), ["disconnected", push?.code ?? close]);
    c.close();
  }
});

test("a env.server push of unsubscribed ends the subscription; with resubscribe it subscribes again", async () => {
  const c = client().connect();
  const ended = [];
  const a = c.subscribe("a", { onUnsubscribed: (d) => ended.push(d.code) });
  const b = c.subscribe("b");
  await settle();
  await env.server.accept();
  env.server.last.push({ type: "unsubscribed", group: "a", code: 403, reason: "kicked", resubscribe: false });
  assert.equal(a.state, "unsubscribed");
  assert.deepEqual(ended, [403]);
  assert.equal(c.subscriptions.has("a"), false);
  env.server.last.push({ type: "unsubscribed", group: "b", code: 503, reason: "moving", resubscribe: true });
  await env.clock.tick(2000);
  const again = env.server.last.take("subscribe");
  assert.equal(again.group, "b");
  env.server.last.reply(again, { epoch: "e1", seq: 0, complete: true });
  await settle();
  assert.equal(b.state, "subscribed");
  await b.ready();
});

test("a refused subscribe ends the subscription and rejects ready(); subscribing twice throws", async () => {
  const c = client().connect();
  const sub = c.subscribe("secret");
  const ready = sub.ready().catch((e) => e);
  assert.throws(() => c.subscribe("secret"), /already subscribed/);
  await settle();
  env.server.last.open();
  const connect = env.server.last.take("connect");
  env.server.last.reply(connect, { client: "c1", groups: { secret: { error: { code: 403, message: "no" } } } });
  await settle();
  assert.equal(sub.state, "unsubscribed");
  assert.equal((await ready).code, 403);
  c.subscribe("secret"); // allowed again
});

test("a subscribe that times out replaces the connection", async () => {
  const c = client({ timeout: 1000 }).connect();
  await settle();
  await env.server.accept();
  c.subscribe("slow");
  await settle();
  env.server.last.take("subscribe");
  await env.clock.tick(1000);
  assert.notEqual(env.server.sockets[0].closed, null);
  await env.clock.tick(c.options.maxDelay);
  env.server.last.open();
  assert.deepEqual(env.server.last.take("connect").groups, { slow: {} });
});

test("unsubscribe while the connect is in flight: the server's subscription is undone", async () => {
  const c = client().connect();
  const sub = c.subscribe("room");
  await settle();
  env.server.last.open();
  const connect = env.server.last.take("connect");
  sub.unsubscribe();
  env.server.last.reply(connect, { client: "c1", groups: { room: { epoch: "e", seq: 0, complete: true } } });
  await settle();
  assert.equal(env.server.last.take("unsubscribe").group, "room");
});

test("close() rejects what waits and stops reconnecting; connect() resumes from the positions", async () => {
  const c = client().connect();
  const sub = c.subscribe("room");
  await settle();
  await env.server.accept({ groups: { room: { epoch: "e", seq: 7, complete: true } } });
  const pending = sub.history().catch((e) => e);
  await settle();
  c.close();
  assert.equal(c.state, "closed");
  assert.equal((await pending).code, 499);
  await env.clock.tick(60000);
  assert.equal(env.server.sockets.length, 1);
  c.connect();
  await settle();
  env.server.last.open();
  assert.deepEqual(env.server.last.take("connect").groups, { room: { since: 7, epoch: "e" } });
});

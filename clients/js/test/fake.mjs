// Test doubles: a clock that replaces setTimeout, and a WebSocket the test plays the server of.
import { afterEach, beforeEach } from "node:test";

// Let pending promise callbacks and microtasks run (setImmediate is left real).
export const settle = async (rounds = 3) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
};

export class FakeClock {
  now = 0;
  #timers = new Map();
  #id = 0;
  #saved;

  install() {
    this.#saved = [globalThis.setTimeout, globalThis.clearTimeout];
    globalThis.setTimeout = (fn, ms = 0) => {
      const id = ++this.#id;
      this.#timers.set(id, { at: this.now + Math.max(0, ms), fn });
      return id;
    };
    globalThis.clearTimeout = (id) => this.#timers.delete(id);
    return this;
  }

  uninstall() {
    [globalThis.setTimeout, globalThis.clearTimeout] = this.#saved;
  }

  /** Timers due within `ms`, in time order; promises settle between them. */
  async tick(ms) {
    const end = this.now + ms;
    for (;;) {
      await settle();
      let next = null;
      for (const [id, timer] of this.#timers) {
        if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
      }
      if (!next) break;
      this.#timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
    await settle();
  }

  /** Milliseconds until the next timer fires (Infinity when none). */
  get nextIn() {
    let at = Infinity;
    for (const timer of this.#timers.values()) at = Math.min(at, timer.at);
    return at - this.now;
  }
}

export class FakeSocket {
  sent = [];
  closed = null;

  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
  }

  // ---- the client's side
  send(text) {
    if (this.closed !== null) throw new Error("send() on a closed socket");
    this.sent.push(JSON.parse(text));
  }

  close(code) {
    this.closed = code ?? 1005;
  }

  // ---- the server's side
  open() {
    this.onopen?.();
  }

  push(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  reply(command, result = {}) {
    this.push({ id: command.id, result });
  }

  refuse(command, code, message = "refused") {
    this.push({ id: command.id, error: { code, message } });
  }

  drop(code = 1006, reason = "") {
    this.closed = code;
    this.onclose?.({ code, reason });
  }

  /** Remove and return the first frame the client sent of `type` (throws if none). */
  take(type) {
    const index = this.sent.findIndex((frame) => frame.type === type);
    if (index < 0) throw new Error(`the client sent no ${type}: ${JSON.stringify(this.sent)}`);
    return this.sent.splice(index, 1)[0];
  }

  has(type) {
    return this.sent.some((frame) => frame.type === type);
  }
}

export class FakeServer {
  sockets = [];
  transport = (url, protocol) => {
    const socket = new FakeSocket(url, protocol);
    this.sockets.push(socket);
    return socket;
  };

  get last() {
    return this.sockets.at(-1);
  }

  /** Open the newest socket and accept its connect; `groups` maps group -> result. */
  async accept(result = {}) {
    const socket = this.last;
    socket.open();
    const connect = socket.take("connect");
    const groups = {};
    for (const group of Object.keys(connect.groups ?? {})) {
      groups[group] = result.groups?.[group] ?? { epoch: "e1", seq: 0, complete: true, recovered: 0 };
    }
    socket.reply(connect, { client: "c1", ping: 0, ...result, groups });
    await settle();
    return connect;
  }
}

/** A message push as the server sends it. */
export const message = (group, seq, data = seq, epoch = "e1") => ({ type: "message", group, seq, epoch, data });

/** A fresh fake clock (installed) and server for each test of the calling file. */
export function useFakes() {
  const env = {};
  beforeEach(() => {
    env.clock = new FakeClock().install();
    env.server = new FakeServer();
  });
  afterEach(() => env.clock.uninstall());
  return env;
}

// The nexios browser client: one WebSocket, many groups, protocol nexios.v1
// (docs/protocol.md). No dependencies, no build step: import it as an ES module.
//
//   const c = new NexiosClient("wss://example.com/connect", { getToken });
//   const room = c.subscribe("room", { presence: true, onMessage, onPresence, onRecovered });
//   await room.publish({ text: "hi" });
//
// It reconnects by itself (jittered exponential backoff, at once when the network or the
// page comes back), resubscribes every group in one frame with its position, delivers
// each saved message once and in seq order, fills gaps from history, tells the app when
// recovery was incomplete, refreshes expiring tokens and retries publishes.

export const PROTOCOL = "nexios.v1";

// Retried by commands on their own: timeout, token expired, too many requests,
// internal, unavailable (also a lost connection).
const TEMPORARY = new Set([408, 419, 429, 500, 503]);
const MAX_HISTORY = 1000;

/** An error from the server (its code, docs/protocol.md) or from the client (408, 499, 503). */
export class NexiosError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "NexiosError";
    this.code = code;
  }

  get temporary() {
    return TEMPORARY.has(this.code);
  }
}

// Run an app callback; an exception in it is reported but never breaks delivery.
function call(fn, ...args) {
  try {
    fn?.(...args);
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}

function randomKey() {
  return globalThis.crypto?.randomUUID?.() ?? Math.random().toString(36).slice(2) + Date.now().toString(36);
}

/** The connection: reconnects, resubscribes and runs commands. */
export class NexiosClient {
  #ws = null;
  #n = 0; // last command id
  #pending = new Map(); // id -> {resolve, reject, timer}
  #waiters = new Set(); // commands waiting for the connection
  #attempt = 0; // reconnect attempts since the last successful connect
  #retryTimer;
  #pingTimer;
  #refreshTimer;
  #ping = 0; // seconds between server pings
  #token;
  #stop = null; // the server's disconnect push, until the socket closes
  #gen = 0; // bumped by close(): stale async steps stop
  #wake;
  #env;

  constructor(url, options = {}) {
    this.url = url;
    this.options = {
      timeout: 10000,
      minDelay: 250,
      maxDelay: 10000,
      pingGrace: 10000,
      retries: 3,
      ...options,
    };
    this.state = "disconnected";
    this.client = null;
    this.subscriptions = new Map();
    this.#token = options.token;
    this.#env = options.window ?? globalThis;
    this.#wake = () => {
      if (this.#retryTimer && this.#env.document?.visibilityState !== "hidden") {
        clearTimeout(this.#retryTimer);
        this.#open();
      }
    };
    this.#env.addEventListener?.("online", this.#wake);
    this.#env.document?.addEventListener?.("visibilitychange", this.#wake);
  }

  /** Open the connection (subscribe() and commands do it for you). */
  connect() {
    if (this.state === "disconnected" || this.state === "closed") this.#open();
    return this;
  }

  /** Close for good (connect() opens again, resubscribing every group from its position). */
  close() {
    this.#gen++;
    this.#drop(1000, "closed by the client", true);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#setState("closed");
    this.#rejectWaiters(new NexiosError(499, "the client was closed"));
  }

  /** Subscribe to a group; the returned Subscription resubscribes by itself after reconnects. */
  subscribe(group, options = {}) {
    if (this.subscriptions.has(group)) {
      throw new Error(`already subscribed to ${JSON.stringify(group)}: use client.subscriptions.get(group)`);
    }
    const sub = new Subscription(this, group, options);
    this.subscriptions.set(group, sub);
    if (this.state === "connected") sub._send();
    else this.connect();
    return sub;
  }

  /** A round trip to the server; resolves with {} */
  ping() {
    return this._call({ type: "ping" }, 0);
  }

  // A command for the app: waits for the connection, times out, retries temporary failures
  // (the same frame, so a publish keeps its idempotency key).
  _call(frame, retries = this.options.retries) {
    this.connect();
    return new Promise((resolve, reject) => {
      const attempt = async (left) => {
        try {
          await this.#connected();
          resolve(await this._request(frame));
        } catch (error) {
          if (left > 0 && error.temporary && this.state !== "closed") {
            setTimeout(() => attempt(left - 1), this.#delay(retries - left));
          } else reject(error);
        }
      };
      attempt(retries);
    });
  }

  // Send a command on the open socket now; resolves with its result.
  _request(frame) {
    return new Promise((resolve, reject) => {
      if (!this.#ws) return reject(new NexiosError(503, "not connected"));
      const id = ++this.#n;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new NexiosError(408, `no reply to ${frame.type} within ${this.options.timeout} ms`));
      }, this.options.timeout);
      this.#pending.set(id, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ id, ...frame }));
    });
  }

  /** Replace the socket now (then reconnect with backoff, resubscribing from positions). */
  reconnect(reason = "reconnect requested") {
    this.#drop(4000, reason);
  }

  #connected() {
    if (this.state === "connected") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(new NexiosError(408, `not connected within ${this.options.timeout} ms`));
        }, this.options.timeout),
      };
      this.#waiters.add(waiter);
    });
  }

  #rejectWaiters(error) {
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.#waiters.clear();
  }

  #setState(state, detail) {
    if (this.state === state) return;
    this.state = state;
    call(this.options.onState, state, detail);
  }

  #error(error) {
    call(this.options.onError, error);
  }

  // Jittered exponential backoff: between half and all of min(max, min * 2^n).
  #delay(n) {
    const ceiling = Math.min(this.options.maxDelay, this.options.minDelay * 2 ** n);
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }

  #retry() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#open(), this.#delay(this.#attempt++));
  }

  async #open() {
    const gen = this.#gen;
    this.#retryTimer = null;
    this.#setState("connecting");
    if (this.#token == null && this.options.getToken) {
      try {
        this.#token = await this.options.getToken();
      } catch (error) {
        if (gen !== this.#gen) return;
        this.#error(error);
        return this.#retry();
      }
      if (gen !== this.#gen) return;
    }
    let ws;
    try {
      ws = (this.options.transport ?? ((url, protocol) => new WebSocket(url, protocol)))(this.url, PROTOCOL);
    } catch (error) {
      this.#error(error);
      return this.#retry();
    }
    this.#ws = ws;
    ws.onopen = () => this.#onOpen(ws);
    ws.onmessage = (event) => this.#onFrame(event.data);
    ws.onclose = (event) => this.#closed(event.code, event.reason);
    ws.onerror = () => {}; // a close event follows
  }

  async #onOpen(ws) {
    const groups = {};
    for (const sub of this.subscriptions.values()) groups[sub.group] = sub._begin();
    let result;
    try {
      result = await this._request({ type: "connect", token: this.#token ?? undefined, groups });
    } catch (error) {
      if (ws !== this.#ws) return;
      this.#error(error);
      if (error.code === 419) this.#token = null;
      else if (error.code !== 408 && !error.temporary) this.#stop = { code: error.code, reason: error.message, reconnect: false };
      return this.#drop(4000, error.message);
    }
    if (ws !== this.#ws) return;
    this.client = result.client;
    this.#attempt = 0;
    this.#ping = result.ping ?? 0;
    this.#watch();
    this.#scheduleRefresh(result.expires);
    this.#setState("connected");
    const results = result.groups ?? {};
    for (const [group, res] of Object.entries(results)) {
      const sub = this.subscriptions.get(group);
      if (sub) sub._result(res);
      else if (!res.error) this._request({ type: "unsubscribe", group }).catch(() => {});
    }
    for (const sub of this.subscriptions.values()) if (!(sub.group in results)) sub._send();
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
    this.#waiters.clear();
  }

  #onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return this.#error(new NexiosError(400, "the server sent a frame that is not JSON"));
    }
    this.#watch();
    if (frame.id != null) {
      const pending = this.#pending.get(frame.id);
      if (!pending) return;
      this.#pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.error) pending.reject(new NexiosError(frame.error.code, frame.error.message));
      else pending.resolve(frame.result ?? {});
      return;
    }
    switch (frame.type) {
      case "ping":
        return this.#ws?.send('{"type":"pong"}');
      case "disconnect":
        this.#stop = frame;
        if (frame.code === 4001) this.#token = null;
        return;
      case "error":
        return this.#error(new NexiosError(frame.code, frame.message));
      default:
        this.subscriptions.get(frame.group)?._push(frame);
    }
  }

  // No frame for ping + grace: the connection is dead even if the socket does not know yet.
  #watch() {
    clearTimeout(this.#pingTimer);
    if (this.#ping > 0) {
      this.#pingTimer = setTimeout(() => this.#drop(4000, "no ping from the server"), this.#ping * 1000 + this.options.pingGrace);
    }
  }

  // Refresh when half the token's life is left, at most 30 s before it expires.
  #scheduleRefresh(expires) {
    clearTimeout(this.#refreshTimer);
    if (expires == null || !this.options.getToken) return;
    const ms = expires * 1000;
    this.#refreshTimer = setTimeout(() => this.#refresh(), ms - Math.min(ms / 2, 30000));
  }

  async #refresh() {
    const ws = this.#ws;
    try {
      this.#token = await this.options.getToken();
      if (ws !== this.#ws) return; // reconnected meanwhile, with this token
      const result = await this._request({ type: "refresh", token: this.#token });
      this.#scheduleRefresh(result.expires);
    } catch (error) {
      if (ws !== this.#ws) return;
      this.#error(error);
      // 401: the server closes with 4500. Otherwise try again; if the token expires first
      // the server disconnects with 4001 and the reconnect fetches a new one.
      if (error.code !== 401) this.#refreshTimer = setTimeout(() => this.#refresh(), this.#delay(2));
    }
  }

  // Stop using the socket now and handle it as closed (a dead socket may take minutes to
  // report its close).
  #drop(code, reason, quiet) {
    const ws = this.#ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close();
    } catch {}
    if (quiet) this.#cleanup(new NexiosError(499, "the client was closed"));
    else this.#closed(code, reason);
  }

  #cleanup(error = new NexiosError(503, "connection lost")) {
    this.#ws = null;
    clearTimeout(this.#pingTimer);
    clearTimeout(this.#refreshTimer);
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
    for (const sub of this.subscriptions.values()) sub._lost();
  }

  #closed(code, reason) {
    this.#cleanup();
    const stop = this.#stop;
    this.#stop = null;
    const again = stop ? stop.reconnect !== false : !(code >= 4500 && code < 5000);
    const detail = { code: stop?.code ?? code, reason: stop?.reason ?? reason };
    if (again) {
      this.#setState("connecting", detail);
      return this.#retry();
    }
    this.#setState("disconnected", detail);
    this.#rejectWaiters(new NexiosError(detail.code, `disconnected: ${detail.reason}`));
  }
}

/** One group on the connection: messages in order, presence, publish and history. */
export class Subscription {
  #early = []; // pushes that arrived before the subscribe result
  #held = new Map(); // seq -> message, waiting for a gap to be filled
  #recovering = false;
  #gen = 0; // bumped when the position is reset: a stale recovery is ignored
  #tries = 0; // bumped by each subscribe attempt: a stale result is ignored
  #waiters = [];

  constructor(client, group, options) {
    this.client = client;
    this.group = group;
    this.options = options;
    this.state = "subscribing";
    this.seq = options.since ?? null;
    this.epoch = options.epoch ?? null;
    this.members = new Map();
  }

  /** Resolves once subscribed (at once if it is). */
  ready() {
    if (this.state === "subscribed") return Promise.resolve(this);
    return new Promise((resolve, reject) => this.#waiters.push([resolve, reject]));
  }

  /** Publish to the group; retried with the same idempotency key, so it counts once. */
  publish(data, { key = randomKey() } = {}) {
    return this.client._call({ type: "publish", group: this.group, data, idempotency_key: key });
  }

  /** Saved messages: after `since`, or the newest `limit`. */
  history({ since, limit, epoch } = {}) {
    return this.client._call({ type: "history", group: this.group, since, limit, epoch });
  }

  /** The group's members now, from the server. */
  async presence() {
    return (await this.client._call({ type: "presence", group: this.group })).members;
  }

  unsubscribe() {
    if (this.client.subscriptions.get(this.group) === this) {
      this.client.subscriptions.delete(this.group);
      if (this.client.state === "connected") this.client._request({ type: "unsubscribe", group: this.group }).catch(() => {});
    }
    this.#end();
  }

  // ---- driven by the client ----

  _begin() {
    this.#tries++;
    this.state = "subscribing";
    this.#early = [];
    const options = {};
    if (this.seq != null) options.since = this.seq;
    if (this.epoch) options.epoch = this.epoch;
    if (this.options.presence) options.presence = true;
    return options;
  }

  _send() {
    const frame = { type: "subscribe", group: this.group, ...this._begin() };
    const tries = this.#tries;
    this.client._request(frame).then(
      (result) => tries === this.#tries && this._result(result),
      (error) => tries === this.#tries && this._result({ error }),
    );
  }

  // Subscribe again after a temporary refusal (a lost connection resubscribes by itself).
  #resend() {
    const tries = this.#tries;
    setTimeout(() => tries === this.#tries && this.client.state === "connected" && this._send(), 500 + Math.random() * 1000);
  }

  _result(result) {
    if (this.state !== "subscribing" || this.client.subscriptions.get(this.group) !== this) return;
    const { error } = result;
    if (error) {
      if (this.client.state !== "connected") return; // the reconnect resubscribes
      if (error.code === 408) return this.client.reconnect("subscribe timed out");
      if (TEMPORARY.has(error.code)) return this.#resend();
      return this._unsubscribed({ code: error.code, reason: error.message });
    }
    const since = this.seq;
    this.epoch = result.epoch || null;
    this.seq = since != null && result.complete ? since : result.seq;
    this.#reset();
    this.state = "subscribed";
    if (result.presence) {
      this.members = new Map(result.presence.map((m) => [m.id, m.info]));
      call(this.options.onPresence, this.members, { type: "sync" });
    }
    call(this.options.onSubscribed, result);
    if (since != null) {
      call(this.options.onRecovered, { complete: result.complete, recovered: result.recovered ?? 0, reason: "subscribe" });
    }
    for (const [resolve] of this.#waiters) resolve(this);
    this.#waiters = [];
    const early = this.#early;
    this.#early = [];
    for (const push of early) this._push(push);
  }

  _push(push) {
    if (push.type === "message" && push.seq == null) return this.#deliver(push); // not saved: as it comes
    if (this.state !== "subscribed") return this.state === "subscribing" && this.#early.push(push);
    switch (push.type) {
      case "message":
        return this.#take(push);
      case "join":
        this.members.set(push.member.id, push.member.info);
        return call(this.options.onPresence, this.members, push);
      case "leave":
        this.members.delete(push.member.id);
        return call(this.options.onPresence, this.members, push);
      case "resync":
        return this.#resync(push.epoch, push.seq, push.reason);
      case "unsubscribed":
        if (!push.resubscribe) return this._unsubscribed(push);
        this.state = "subscribing";
        return this.#resend();
    }
  }

  _lost() {
    if (this.state === "subscribed") this.state = "subscribing";
    this.#reset();
  }

  _unsubscribed(detail) {
    if (this.client.subscriptions.get(this.group) === this) this.client.subscriptions.delete(this.group);
    this.#end(new NexiosError(detail.code, detail.reason));
    call(this.options.onUnsubscribed, detail);
  }

  // ---- ordering ----

  #take(message) {
    // A new epoch: the numbering was lost (unless we had none yet: the group's first).
    if (message.epoch && message.epoch !== this.epoch) {
      if (this.epoch) this.#resync(message.epoch, message.seq - 1, "epoch");
      else this.epoch = message.epoch;
    }
    if (message.seq <= this.seq || this.#held.has(message.seq)) return; // a duplicate
    this.#held.set(message.seq, message);
    if (this.#held.size > (this.options.maxHeld ?? MAX_HISTORY)) {
      return this.#resync(this.epoch, Math.min(...this.#held.keys()) - 1, "gap");
    }
    this.#drain();
  }

  // Deliver held messages while they follow on; ask history for a gap.
  #drain(recover = true) {
    for (let next; (next = this.#held.get(this.seq + 1)); ) {
      this.#held.delete(next.seq);
      this.seq = next.seq;
      this.#deliver(next);
    }
    if (recover && this.#held.size && !this.#recovering) this.#recover();
  }

  async #recover() {
    this.#recovering = true;
    const gen = this.#gen;
    const first = Math.min(...this.#held.keys());
    const limit = Math.min(first - this.seq - 1, MAX_HISTORY);
    let page = null;
    try {
      page = await this.history({ since: this.seq, limit, epoch: this.epoch });
    } catch {}
    if (gen !== this.#gen) return;
    this.#recovering = false;
    const filled = page?.complete && page.epoch === this.epoch;
    if (filled) {
      for (const m of page.messages) {
        if (m.seq > this.seq) this.#held.set(m.seq, { type: "message", group: this.group, epoch: page.epoch, ...m });
      }
    }
    const before = this.seq;
    this.#drain(false);
    // A full page that moved us on: ask for the rest. Otherwise history could not fill
    // the gap (pruned, another epoch, an error): jump over it.
    if (filled && page.messages.length >= limit && this.seq > before) this.#drain();
    else if (this.#held.size) this.#resync(this.epoch, Math.min(...this.#held.keys()) - 1, "gap");
  }

  #resync(epoch, seq, reason) {
    this.#gen++;
    this.#recovering = false;
    if (epoch !== this.epoch) this.#held.clear();
    this.epoch = epoch;
    this.seq = seq;
    for (const key of this.#held.keys()) if (key <= seq) this.#held.delete(key);
    call(this.options.onRecovered, { complete: false, recovered: 0, reason });
    this.#drain();
  }

  #reset() {
    this.#gen++;
    this.#recovering = false;
    this.#held.clear();
  }

  #deliver(message) {
    call(this.options.onMessage, message);
  }

  #end(error) {
    this.state = "unsubscribed";
    this.#reset();
    for (const [, reject] of this.#waiters) reject(error ?? new NexiosError(499, "unsubscribed"));
    this.#waiters = [];
  }
}

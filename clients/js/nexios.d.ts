// Type declarations for nexios.js (protocol nexios.v1, docs/protocol.md).

/** The WebSocket subprotocol the client offers. */
export const PROTOCOL: "nexios.v1";

/**
 * An error with a numeric code: from the server (400 bad request, 401 unauthorized,
 * 403 forbidden, 404 unknown group, 409 already subscribed, 410 removed, 413 limit
 * exceeded, 416 unrecoverable, 419 token expired, 429 too many requests, 500 internal,
 * 503 unavailable) or from the client (408 no reply in time, 499 the client was closed,
 * 503 connection lost).
 */
export class NexiosError extends Error {
  constructor(code: number, message: string);
  readonly code: number;
  /** True when retrying may succeed (408, 419, 429, 500, 503). */
  readonly temporary: boolean;
}

/** The smallest part of the browser's WebSocket the client uses (for `transport`). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event?: unknown) => void) | null;
  onmessage: ((event: { data: string }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event?: unknown) => void) | null;
}

export type ConnectionState = "disconnected" | "connecting" | "connected" | "closed";

export interface ClientOptions {
  /** A fixed token for `connect` (see also getToken). */
  token?: string;
  /** Called for a token before connecting when there is none, and to refresh one before it expires. */
  getToken?: () => string | null | Promise<string | null>;
  /** Milliseconds to wait for a reply (and for the connection) before a command fails with 408. Default 10000. */
  timeout?: number;
  /** Reconnect backoff: the first delay's ceiling, in ms. Default 250. */
  minDelay?: number;
  /** Reconnect backoff: the largest delay, in ms. Default 10000. */
  maxDelay?: number;
  /** Extra ms to wait past the server's ping interval before the socket counts as dead. Default 10000. */
  pingGrace?: number;
  /** How often publish, history, presence retry after a temporary failure. Default 3. */
  retries?: number;
  /** Opens the socket; default `new WebSocket(url, protocol)`. For tests and other runtimes. */
  transport?: (url: string, protocol: string) => WebSocketLike;
  /** Where `online` and `visibilitychange` (on `.document`) are heard; default globalThis. */
  window?: EventTarget & { document?: EventTarget & { visibilityState?: string } };
  onState?: (state: ConnectionState, detail?: { code: number; reason: string }) => void;
  onError?: (error: Error) => void;
}

/** A message of a group. Saved messages have `seq` and `epoch`; others have neither. */
export interface Message<T = unknown> {
  type: "message";
  group: string;
  seq?: number;
  epoch?: string;
  data: T;
}

export interface Member<I = Record<string, unknown>> {
  id: string;
  info: I;
}

export type PresenceChange =
  | { type: "sync" }
  | { type: "join"; group: string; member: Member }
  | { type: "leave"; group: string; member: Member; reason: string };

/** What a (re)subscription from a position, or a lost position, came to. */
export interface Recovery {
  /** False: messages were missed for good; reload the group's state. */
  complete: boolean;
  /** How many missed messages the server replays. */
  recovered: number;
  /** "subscribe": the result of (re)subscribing from a position; "epoch": the history was lost; "gap": a gap could not be filled. */
  reason: "subscribe" | "epoch" | "gap";
}

export interface SubscribeResult {
  epoch: string;
  seq: number;
  complete: boolean;
  recovered: number;
  presence?: Member[];
}

export interface SubscribeOptions<T = unknown> {
  /** Start after this seq (e.g. the last one the page was rendered with). */
  since?: number;
  /** The epoch `since` belongs to. */
  epoch?: string;
  /** Keep `members` (snapshot + join/leave diffs). */
  presence?: boolean;
  /** Held messages at most while a gap is filled (default 1000); past it the gap is given up. */
  maxHeld?: number;
  /** Each message once, saved ones in seq order. */
  onMessage?: (message: Message<T>) => void;
  onPresence?: (members: Map<string, unknown>, change: PresenceChange) => void;
  onRecovered?: (recovery: Recovery) => void;
  onSubscribed?: (result: SubscribeResult) => void;
  onUnsubscribed?: (detail: { code: number; reason: string }) => void;
}

export interface HistoryPage<T = unknown> {
  messages: { seq: number; data: T }[];
  epoch: string;
  /** The group's last saved seq. */
  seq: number;
  /** False when messages after `since` were already pruned. */
  complete: boolean;
}

export class Subscription<T = unknown> {
  readonly client: NexiosClient;
  readonly group: string;
  readonly state: "subscribing" | "subscribed" | "unsubscribed";
  /** The last seq delivered (null before the first subscribe result). */
  readonly seq: number | null;
  readonly epoch: string | null;
  /** Member id -> info, when subscribed with `presence: true`. */
  readonly members: Map<string, unknown>;
  /** Resolves once subscribed; rejects if the subscription ends first. */
  ready(): Promise<this>;
  /** Publish; retried with one idempotency key (`key`, or a random one) so it counts once. */
  publish(data: unknown, options?: { key?: string }): Promise<{ seq?: number; epoch?: string }>;
  history(options?: { since?: number; limit?: number; epoch?: string }): Promise<HistoryPage<T>>;
  presence(): Promise<Member[]>;
  unsubscribe(): void;
}

export class NexiosClient {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ConnectionState;
  /** This connection's id (its presence id), once connected. */
  readonly client: string | null;
  readonly subscriptions: Map<string, Subscription>;
  connect(): this;
  /** Close for good; connect() opens again, resubscribing every group from its position. */
  close(): void;
  /** Replace the socket now; reconnects with backoff, resubscribing from positions. */
  reconnect(reason?: string): void;
  /** Throws if already subscribed to `group` (use `subscriptions.get(group)`). */
  subscribe<T = unknown>(group: string, options?: SubscribeOptions<T>): Subscription<T>;
  ping(): Promise<Record<string, never>>;
}

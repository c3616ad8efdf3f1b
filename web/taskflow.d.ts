// taskflow.d.ts: TypeScript declarations for taskflow.js, the browser client of a Taskflow server.
// The server serves both: /taskflow.js and /taskflow.d.ts. Save them side by side and
// `import { connect } from "./taskflow.js"` is typed; the protocol part below is the same contract
// as the AsyncAPI document at /asyncapi.json (both are generated from the server's wire types).

// --- protocol: generated from the protocol crate's types; do not edit (see transport/declarations.rs) ---
/**
 * The cluster broker's state on one node.
 */
export type BrokerState = "none" | "connected" | "disconnected";

/**
 * What a client asks. Any command may carry an `id` (a string or a number); a command with an
 * id gets exactly one reply carrying the same id.
 */
export type Command = SubscribeCommand | UnsubscribeCommand | MessageCommand | DirectCommand | TypingCommand | PresenceCommand | PingCommand;

/**
 * Any command may carry an id, a string or a number; a command with an id gets exactly one `reply` carrying it back.
 */
export type CommandId = string | number;

/**
 * Send a direct message to another user, who shares a project with you (anyone, for the
 * admin); acknowledged once it is in the log of both users' rooms.
 */
export type DirectCommand = {
  type: "direct";
  /**
   * The recipient's user id.
   */
  to: string;
  /**
   * 1 to 4,000 characters.
   */
  text: string;
  id?: CommandId;
};

/**
 * The result of a `direct` command: where the message was logged in the sender's own room, so
 * the client can match the `message.direct` event it will receive there.
 */
export type DirectPosted = {
  /**
   * The recipient.
   */
  to: string;
  /**
   * The sender's user room, `user:<sender>`.
   */
  room: string;
  /**
   * The message's offset in that room.
   */
  offset: number;
};

/**
 * Nothing to report.
 */
export type Empty = Record<string, never>;

/**
 * What went wrong, in a stable machine-readable code and a human message.
 */
export type ErrorDetail = {
  /**
   * Stable, snake_case; documented in the README. Clients branch on this, never on `message`.
   */
  code: string;
  /**
   * For people; may change between versions.
   */
  message: string;
  /**
   * The request's `X-Request-Id`, to find the matching server log lines.
   */
  request_id?: string | null;
  /**
   * Structured extras for some codes: the field at fault, a cycle's task ids, bad import lines.
   */
  details?: unknown;
};

/**
 * A command without an id failed, or a frame could not be read.
 */
export type ErrorFrame = {
  type: "error";
  /**
   * What went wrong.
   */
  error: ErrorDetail;
};

/**
 * A logged event as pushed to subscribers.
 */
export type EventFrame = {
  /**
   * The room the event was logged in (`project:<id>`, `user:<id>`).
   */
  room: string;
  /**
   * Its offset in that room.
   */
  offset: number;
  /**
   * What happened.
   */
  event: EventKind;
  /**
   * The payload.
   */
  data: unknown;
  /**
   * When it was committed.
   */
  at: string;
};

/**
 * A logged event.
 */
export type EventFrameMessage = EventFrame & {
  type: "event";
};

/**
 * What happened. The wire names are dotted (`task.created`).
 */
export type EventKind = "task.created" | "task.updated" | "task.moved" | "task.deleted" | "dependency.added" | "dependency.removed" | "task.assigned" | "message.created" | "member.added" | "member.removed" | "tasks.imported" | "message.direct" | "task.unblocked";

/**
 * First frame of every connection.
 */
export type Hello = {
  /**
   * This connection's id, for logs and support.
   */
  connection_id: string;
  /**
   * The authenticated user.
   */
  user: string;
  /**
   * How often the server pings, in milliseconds.
   */
  heartbeat_interval_ms: number;
  /**
   * The server's clock, to estimate skew.
   */
  server_time: string;
  /**
   * The epoch of the store's event log.
   */
  epoch: string;
};

/**
 * Sent once, first.
 */
export type HelloFrame = Hello & {
  type: "hello";
};

/**
 * Percentiles of a latency distribution, in milliseconds. From a histogram whose buckets are
 * at most a quarter wide: each value is the largest its bucket holds (never below the true
 * value, at most 25% above it). Commit times have millisecond resolution, so 0 means "within
 * the millisecond".
 */
export type Latency = {
  /**
   * The median.
   */
  p50: number;
  /**
   * The 99th percentile.
   */
  p99: number;
  /**
   * The largest.
   */
  max: number;
};

/**
 * Post a chat message to a project room; acknowledged once it is in the log.
 */
export type MessageCommand = {
  type: "message";
  /**
   * `project:<id>`.
   */
  room: string;
  /**
   * 1 to 4,000 characters.
   */
  text: string;
  id?: CommandId;
};

/**
 * The result of a chat `message`: where it was logged, so the client can match the event it
 * will receive.
 */
export type MessagePosted = {
  /**
   * The project room.
   */
  room: string;
  /**
   * The message's offset in the room.
   */
  offset: number;
};

/**
 * Application-level ping for clients that cannot send WebSocket pings; answered by `pong`.
 */
export type PingCommand = {
  type: "ping";
  id?: CommandId;
};

/**
 * Answer to `ping` (carries the ping's id, if any).
 */
export type PongFrame = {
  type: "pong";
  /**
   * The ping's id.
   */
  id?: CommandId;
};

/**
 * A user entering or leaving a room, or typing in it (ephemeral: no offset).
 */
export type PresenceChange = {
  /**
   * The room.
   */
  room: string;
  /**
   * The user.
   */
  user: string;
};

/**
 * Who is in the room, with their connection counts.
 */
export type PresenceCommand = {
  type: "presence";
  /**
   * The room.
   */
  room: string;
  id?: CommandId;
};

/**
 * A user's first connection joined the room.
 */
export type PresenceJoinedFrame = PresenceChange & {
  type: "presence.joined";
};

/**
 * A user's last connection left the room.
 */
export type PresenceLeftFrame = PresenceChange & {
  type: "presence.left";
};

/**
 * The result of a `presence` command.
 */
export type PresenceList = {
  /**
   * The room.
   */
  room: string;
  /**
   * Everyone in it, with their connection counts, across the cluster.
   */
  present: Present[];
};

/**
 * One user in a room, for `presence` replies.
 */
export type Present = {
  /**
   * The user.
   */
  user: string;
  /**
   * How many of the user's connections are in the room.
   */
  connections: number;
};

/**
 * The one answer to a command that carried an `id`.
 */
export type ReplyFrame = {
  type: "reply";
  /**
   * The command's id.
   */
  id: CommandId;
  /**
   * `true` with `result`, `false` with `error`.
   */
  ok: boolean;
  /**
   * What the command produced.
   */
  result?: unknown;
  /**
   * Why it failed.
   */
  error?: ErrorDetail | null;
};

/**
 * Everything the server sends.
 */
export type ServerFrame = HelloFrame | ReplyFrame | ErrorFrame | EventFrameMessage | PresenceJoinedFrame | PresenceLeftFrame | TypingFrame | SubscribedFrame | StatsFrame | PongFrame;

/**
 * Where a client stopped: the epoch of the history it followed and the last offset it has, for
 * a room; for `tasks`, the last offset of each project room it has seen.
 */
export type Since = {
  /**
   * The store's epoch when the client last received events.
   */
  epoch: string;
  /**
   * The last offset received (single rooms).
   */
  offset?: number | null;
  /**
   * The last offset received per project room (`tasks`); a room missing here is replayed
   * from its start.
   */
  offsets?: {
    [key: string]: number;
  };
};

/**
 * One node's numbers over the last interval, pushed to the admin-only `system` room every
 * `dashboard_interval_ms` while someone follows it (a dashboard's feed, instead of
 * scraping `/metrics`). Ephemeral: not logged, never replayed.
 */
export type StatsFrame = {
  type: "stats";
  /**
   * Always `system`.
   */
  room: string;
  /**
   * The node that measured: its `node_id` in a cluster, `local` on a single node. A
   * dashboard of a cluster gets one frame per node per interval.
   */
  node: string;
  /**
   * When the interval ended.
   */
  at: string;
  /**
   * The interval's length in milliseconds (as measured, not as configured).
   */
  interval_ms: number;
  /**
   * Open real-time connections by transport (a long poll counts while it waits).
   */
  connections: TransportCounts;
  /**
   * Room subscriptions over all connections.
   */
  subscriptions: number;
  /**
   * Events this node dispatched per second (each committed event once, whatever its
   * audience).
   */
  events_per_sec: number;
  /**
   * Frames of those events queued to subscribers per second.
   */
  deliveries_per_sec: number;
  /**
   * Delivery latency (from the event's commit to its queueing for subscribers) over the
   * interval's events, in milliseconds; `null` when no event was dispatched.
   */
  latency_ms?: Latency | null;
  /**
   * The process's resident memory in bytes; `null` where the platform does not say.
   */
  rss_bytes?: number | null;
  /**
   * Connections closed during the interval because they could not keep up (close code 4008).
   */
  slow_consumer_closes: number;
  /**
   * The cluster broker, as this node sees it.
   */
  broker: BrokerState;
};

/**
 * Receive the room's events from now on or, with `since`, from that position: the missed
 * events are replayed from the log first, then the live stream follows with no gap and no
 * duplicate.
 */
export type SubscribeCommand = {
  type: "subscribe";
  /**
   * `tasks`, `project:<id>` or `user:<id>`.
   */
  room: string;
  /**
   * Where the client stopped.
   */
  since?: Since | null;
  id?: CommandId;
};

/**
 * The answer to a subscription: where the stream starts and whether a resume recovered
 * everything.
 */
export type Subscribed = {
  /**
   * The room.
   */
  room: string;
  /**
   * The store's epoch.
   */
  epoch: string;
  /**
   * The offset the live stream starts after (single rooms). After a successful resume the
   * missed events up to it are replayed first.
   */
  offset?: number | null;
  /**
   * The same per project room (`tasks`).
   */
  offsets?: {
    [key: string]: number;
  };
  /**
   * `false` when `since` could not be honoured (another epoch, or events no longer
   * retained): the client must reload its state through REST; the stream continues live from
   * `offset`. `true` otherwise.
   */
  recovered: boolean;
};

/**
 * A subscription of a stream transport (SSE) took effect; WebSocket clients get the same
 * in their `subscribe` reply.
 */
export type SubscribedFrame = Subscribed & {
  type: "subscribed";
};

/**
 * Open connections by transport.
 */
export type TransportCounts = {
  /**
   * WebSocket connections.
   */
  websocket: number;
  /**
   * Server-Sent Events streams.
   */
  sse: number;
  /**
   * Long polls waiting for an event.
   */
  long_polling: number;
};

/**
 * Tell the room you are typing (ephemeral, at most once).
 */
export type TypingCommand = {
  type: "typing";
  /**
   * `project:<id>`.
   */
  room: string;
  id?: CommandId;
};

/**
 * A user is typing in the room.
 */
export type TypingFrame = PresenceChange & {
  type: "typing";
};

/**
 * Stop receiving the room's events.
 */
export type UnsubscribeCommand = {
  type: "unsubscribe";
  /**
   * The room.
   */
  room: string;
  id?: CommandId;
};

/**
 * The result of an `unsubscribe`.
 */
export type Unsubscribed = {
  /**
   * The room the connection no longer follows.
   */
  room: string;
};
// --- end of protocol ---

/** The transports, best first. */
export type TransportName = "websocket" | "sse" | "poll";

/** Where the client stands: reported by `onState`. */
export type ClientState = "connecting" | "live" | "reconnecting" | "degraded" | "offline";

/** What `onState` says beside the state. */
export interface StateInfo {
  /** The transport in use or being tried; `null` while none is. */
  transport: TransportName | null;
  /** While `reconnecting`: when the next attempt starts (`Date.now()` milliseconds). */
  retryAt?: number;
  /** While `reconnecting` after a node refused (503/429): its `Retry-After`, in seconds. */
  retryAfter?: number;
  /** Why the node refused (`draining`, `connection_limit`, `storm`...), when it said so. */
  reason?: string | null;
  /** The server closed because the token expired (4001): call `setToken` with a fresh one. */
  tokenExpired?: boolean;
}

/** How a (re)subscription went: `recovered: false` means reload the room's state through REST. */
export interface Recovery {
  room: string;
  recovered: boolean;
}

/** The options of `connect` and `new TaskflowClient`. */
export interface ConnectOptions {
  /** A user's token (JWT) or the admin token. */
  token: string;
  /** The rooms to follow: `tasks`, `project:<id>`, `user:<id>` (at least one). */
  rooms: string[];
  /** The server's origin; the page's own by default. */
  url?: string;
  /** The transports to try, best first (default: all three). */
  transports?: TransportName[];
  /** The first reconnect delay, in ms (default 500); doubled per failure, with full jitter. */
  backoffBase?: number;
  /** The longest reconnect delay, in ms (default 30000). */
  backoffCap?: number;
  /** While degraded, how often a better transport is tried, in ms (default 30000). */
  upgradeInterval?: number;
  /** Follow the browser's online/offline events (default true). */
  watchNetwork?: boolean;
  /** Each logged event once, in offset order per room, whatever the transport and reconnects. */
  onEvent?: (event: EventFrame) => void;
  /** Every frame the server sends, as it arrives (events before de-duplication). */
  onFrame?: (frame: ServerFrame) => void;
  /** Every change of state. */
  onState?: (state: ClientState, info: StateInfo) => void;
  /** After every (re)subscription of a room. */
  onRecovery?: (recovery: Recovery) => void;
  /** The token expired: call `client.setToken(fresh)`. */
  onTokenExpired?: () => void;
}

/** What a command resolves with, by command: the reply's `result`. */
export interface CommandResults {
  subscribe: Subscribed;
  unsubscribe: Unsubscribed;
  message: MessagePosted;
  direct: DirectPosted;
  typing: Empty;
  presence: PresenceList;
  ping: Empty;
}

/** A command as `command()` takes it: the library adds the `id`. */
export type CommandInput<C extends Command = Command> = C extends unknown ? Omit<C, "id"> : never;

/** A refused command: the `Error` `command()` rejects with. */
export interface CommandError extends Error {
  /** The error's stable code (`forbidden`, `invalid_field`, ...). */
  code: string;
}

export class TaskflowClient {
  constructor(options: ConnectOptions);
  /** The current state. */
  readonly state: ClientState;
  /** The transport in use, if any. */
  readonly transport: TransportName | null;
  /** Starts (or restarts) with the best transport. */
  start(): void;
  /** Stops for good: closes the transport and cancels every retry. */
  close(): void;
  /** Replaces the token (after `onTokenExpired`) and connects again. */
  setToken(token: string): void;
  /**
   * Sends a command over WebSocket (chat, typing, presence); resolves with its result, rejects
   * with a `CommandError` when the server refuses it, or when the transport is not WebSocket.
   */
  command<C extends CommandInput>(
    command: C,
  ): Promise<C extends { type: infer T extends keyof CommandResults } ? CommandResults[T] : never>;
  /** The last offset received in each room. */
  offsets(): Record<string, number>;
  /** Whether the browser says it has no network at all. */
  isOffline(): boolean;
}

/** Starts a client (see `ConnectOptions`); call `close()` to stop. */
export function connect(options: ConnectOptions): TaskflowClient;

/**
 * The wait after `Retry-After: retryAfter` (seconds), in ms: uniform in [retryAfter, 2 x
 * retryAfter], capped.
 */
export function retryAfterDelay(retryAfter: number): number;

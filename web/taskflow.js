// taskflow.js: the browser client of a Taskflow server. Plain ES module, no build step; the
// server serves it at /taskflow.js, and its TypeScript declarations at /taskflow.d.ts (save both
// side by side and TypeScript types this module).
//
//   import { connect } from "/taskflow.js";
//   const client = connect({
//     token,                                   // a user token (JWT) or the admin token
//     rooms: ["project:web", "user:alice"],
//     onEvent: (event) => { ... },             // each logged event once, in offset order per room
//     onState: (state, info) => { ... },       // connecting | live | reconnecting | degraded | offline
//     onRecovery: ({ room, recovered }) => { ... }, // recovered: false = reload state via REST
//     onTokenExpired: () => client.setToken(freshToken()),
//   });
//
// `onFrame` gets every frame as it arrives (before `onEvent`), also the ephemeral ones: presence,
// typing, and the `stats` frames of the admin-only `system` room, which a dashboard follows like
// any room: connect({ token: adminToken, rooms: ["system"], onFrame: (f) => f.type === "stats" && show(f) }).
//
// A large import logs one `tasks.imported` event per room instead of a `task.created` per task
// (docs/api.md, "Import"): `onEvent` gets it like any event, in order; reload the room's tasks
// then (`GET /tasks?project=…`), as the board does.
//
// Transports, best first: WebSocket, then Server-Sent Events, then long polling. A transport that
// cannot connect at all (a proxy that blocks upgrades, a server that refuses it) makes the client
// fall back to the next; while degraded it retries the better ones in the background and moves
// up as soon as one works. Every transport resumes from the last offset seen in each room, and
// events are de-duplicated by offset, so switching and reconnecting lose nothing and repeat
// nothing. Reconnects wait with exponential backoff and full jitter.
//
// A node that cannot take a connection now (draining, at its connection limit, in a reconnect
// storm) refuses the handshake with 503 and `Retry-After`. A browser's WebSocket and EventSource
// cannot read that answer, so when one fails before it opened the client asks the node with a
// plain `GET /ws/tasks` (the probe), which answers the same 503 while the node would refuse. Then
// it waits at least the `Retry-After`, with jitter up to twice that, instead of falling back to
// another transport the node would refuse as well; `reconnecting` carries `info.retryAfter`.
//
// In a browser it also follows the network: when the browser goes offline it drops its
// transport and reports `offline` (no retries are wasted meanwhile); when the network is back it
// reconnects at once, without waiting for a backoff, and resumes. `watchNetwork: false` turns
// this off.

const TRANSPORTS = ["websocket", "sse", "poll"];

/** The longest `Retry-After` honoured as it is, in seconds (a larger one is read as this). */
const MAX_RETRY_AFTER = 60;

/**
 * What a 503 (or 429) says about when to come back: `{ retryAfter, reason }`, with `retryAfter` in
 * seconds from the `Retry-After` header or else the body's `details.retry_after_secs`; `null` for
 * any other answer, or one without a usable value (then the normal backoff applies).
 */
async function busyAnswer(response) {
  if (response.status !== 503 && response.status !== 429) return null;
  let details = {};
  try {
    details = (await response.json()).error.details ?? {};
  } catch {
    /* no JSON body, or one without details: the header alone will do */
  }
  const header = response.headers.get("Retry-After");
  const retryAfter = header !== null && /^\s*\d+\s*$/.test(header) ? Number(header) : details.retry_after_secs;
  if (!Number.isInteger(retryAfter) || retryAfter < 0) return null;
  return { retryAfter, reason: details.reason ?? null };
}

/** The wait after `Retry-After: retryAfter` (seconds), in ms: uniform in [retryAfter, 2 x retryAfter], so the
 * clients a node refused together do not return together; never below it (up to MAX_RETRY_AFTER), never
 * above MAX_RETRY_AFTER beyond it. */
export function retryAfterDelay(retryAfter) {
  const least = Math.min(retryAfter, MAX_RETRY_AFTER) * 1000;
  return Math.floor(Math.min(least * (1 + Math.random()), Math.max(least, MAX_RETRY_AFTER * 1000)));
}

/** Starts a client; see the header for the options. Returns it (call `close()` to stop). */
export function connect(options) {
  const client = new TaskflowClient(options);
  client.start();
  return client;
}

export class TaskflowClient {
  constructor(options) {
    if (!options || !options.token) throw new Error("taskflow: a token is required");
    if (!options.rooms || options.rooms.length === 0) throw new Error("taskflow: name at least one room");
    this.options = {
      url: globalThis.location ? globalThis.location.origin : "http://localhost:3000",
      transports: TRANSPORTS,
      backoffBase: 500,
      backoffCap: 30000,
      upgradeInterval: 30000,
      watchNetwork: true,
      onEvent: () => {},
      onFrame: () => {},
      onState: () => {},
      onRecovery: () => {},
      onTokenExpired: () => {},
      ...options,
    };
    this.transports = this.options.transports.filter((t) => TRANSPORTS.includes(t));
    this.rooms = [...new Set(this.options.rooms)];
    this.epoch = null;
    this.positions = new Map(); // room -> last offset received
    this.lost = new Set(); // rooms whose positions a new epoch made meaningless, until resubscribed
    this.state = "connecting";
    this.transport = null; // the transport in use: websocket | sse | poll
    this.current = null; // its handle, with a close() method
    this.failures = 0;
    this.closed = false;
    this.timers = new Set();
    this.pending = new Map(); // command id -> {resolve, reject}
    this.nextId = 1;
    this.upgradeTimer = null; // the one pending upgrade probe, while degraded
    this.probing = null; // the handle of a probe in flight
    this.networkListeners = null; // the online/offline listeners, while watching the network
  }

  /** Starts (or restarts) with the best transport. */
  start() {
    this.closed = false;
    this.watchNetwork();
    this.attempt(0, false);
  }

  /** Stops for good: closes the transport and cancels every retry. */
  close() {
    this.closed = true;
    this.unwatchNetwork();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.upgradeTimer = null;
    if (this.probing) this.probing.close();
    this.probing = null;
    if (this.current) this.current.close();
    this.current = null;
  }

  /** Replaces the token (after `onTokenExpired`) and connects again. */
  setToken(token) {
    this.options.token = token;
    if (this.closed) this.start();
  }

  /** The server closed because the token expired: retrying with it is useless. */
  tokenExpired() {
    this.close();
    this.setState("reconnecting", { transport: null, tokenExpired: true });
    this.options.onTokenExpired();
  }

  /** Sends a command over WebSocket (chat, typing, presence); resolves with its result. */
  command(command) {
    if (this.transport !== "websocket" || !this.current || !this.current.ws) {
      return Promise.reject(new Error("commands need the WebSocket transport"));
    }
    const id = `c${this.nextId++}-${Math.random().toString(36).slice(2, 8)}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.current.ws.send(JSON.stringify({ ...command, id }));
    });
  }

  /** The last offset received in each room, e.g. to reload state consistently. */
  offsets() {
    return Object.fromEntries(this.positions);
  }

  // --- the network -------------------------------------------------------------------------

  /** Whether the browser says it has no network at all (it never says so wrongly). */
  isOffline() {
    return Boolean(this.options.watchNetwork && globalThis.navigator && globalThis.navigator.onLine === false);
  }

  watchNetwork() {
    if (!this.options.watchNetwork || this.networkListeners || typeof globalThis.addEventListener !== "function") return;
    const offline = () => this.goOffline();
    const online = () => this.backOnline();
    globalThis.addEventListener("offline", offline);
    globalThis.addEventListener("online", online);
    this.networkListeners = { offline, online };
  }

  unwatchNetwork() {
    if (!this.networkListeners) return;
    globalThis.removeEventListener("offline", this.networkListeners.offline);
    globalThis.removeEventListener("online", this.networkListeners.online);
    this.networkListeners = null;
  }

  /** No network: drop the transport and every pending retry, and say so. */
  goOffline() {
    if (this.closed) return;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.upgradeTimer = null;
    this.cancelUpgrade();
    if (this.current) this.current.close();
    this.current = null;
    this.transport = null;
    this.setState("offline", { transport: null });
  }

  /** The network is back: reconnect now (resuming from the last offsets), not after a backoff. */
  backOnline() {
    if (this.closed || this.state !== "offline") return;
    this.failures = 0;
    this.attempt(0, true);
  }

  // --- state ---------------------------------------------------------------------------------

  setState(state, info = {}) {
    const transport = info.transport ?? this.transport;
    const key = `${state}:${transport}:${info.retryAt ?? ""}`;
    if (key === this.stateKey) return;
    this.stateKey = key;
    this.state = state;
    this.options.onState(state, { transport, ...info });
  }

  later(ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  /** Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^n)]. */
  backoff() {
    const ceiling = Math.min(this.options.backoffCap, this.options.backoffBase * 2 ** Math.min(this.failures, 20));
    this.failures += 1;
    return Math.floor(Math.random() * ceiling);
  }

  // --- connecting ----------------------------------------------------------------------------

  /**
   * Tries transport `index` (falling back down the list when one cannot connect at all).
   * `reconnecting` says whether we had been connected before, for the reported state.
   */
  attempt(index, reconnecting) {
    if (this.closed) return;
    if (this.isOffline()) {
      this.goOffline();
      return;
    }
    if (index >= this.transports.length) {
      // Nothing connects: wait and start again from the best transport.
      const delay = this.backoff();
      this.setState("reconnecting", { retryAt: Date.now() + delay, transport: null });
      this.later(delay, () => this.attempt(0, true));
      return;
    }
    const name = this.transports[index];
    if (!reconnecting && index === 0) this.setState("connecting", { transport: name });
    this.open(name, {
      onLive: () => {
        this.failures = 0;
        if (index === 0) this.setState("live", { transport: name });
        else {
          this.setState("degraded", { transport: name });
          this.scheduleUpgrade(index);
        }
      },
      onUnavailable: () => this.attempt(index + 1, reconnecting),
      // The node said "not now": the other transports would be refused too.
      onBusy: (busy) => this.retryWhenAsked(name, busy),
      onLost: () => {
        if (this.closed) return;
        this.cancelUpgrade();
        const delay = this.backoff();
        this.setState("reconnecting", { retryAt: Date.now() + delay, transport: name });
        this.later(delay, () => this.attempt(0, true));
      },
    });
  }

  /** Waits as the node asked (`busyAnswer`), then starts again from the best transport. The wait
   * counts as a failure, so the backoff after it goes on from where it was. */
  retryWhenAsked(transport, { retryAfter, reason }) {
    if (this.closed) return;
    this.cancelUpgrade();
    this.failures += 1;
    const delay = retryAfterDelay(retryAfter);
    this.setState("reconnecting", { retryAt: Date.now() + delay, retryAfter, reason, transport });
    this.later(delay, () => this.attempt(0, true));
  }

  /**
   * Why a WebSocket or EventSource that never opened failed, which the browser does not tell: a
   * plain GET of /ws/tasks answers 503 with `Retry-After` while the node would refuse a
   * connection (426 otherwise). Resolves with `busyAnswer`'s verdict; `null` when the node would
   * take one or the probe itself fails (a cross-origin page without CORS, the node is down).
   */
  async whyRefused() {
    try {
      const timeout = typeof AbortSignal.timeout === "function" ? AbortSignal.timeout(5000) : undefined;
      return await busyAnswer(await fetch(this.httpUrl("/ws/tasks"), { cache: "no-store", signal: timeout }));
    } catch {
      return null;
    }
  }

  /** After a transport failed to open: `onBusy` if the node says "not now", else `onUnavailable`
   * (the next transport). Nothing if the handle was closed meanwhile. */
  refusedOrUnavailable(handlers, isClosed) {
    this.whyRefused().then((busy) => {
      if (this.closed || isClosed()) return;
      if (busy) handlers.onBusy(busy);
      else handlers.onUnavailable();
    });
  }

  cancelUpgrade() {
    if (this.upgradeTimer !== null) {
      clearTimeout(this.upgradeTimer);
      this.timers.delete(this.upgradeTimer);
      this.upgradeTimer = null;
    }
    if (this.probing) this.probing.close();
    this.probing = null;
  }

  /** While degraded, tries the better transports now and then; switches when one works. */
  scheduleUpgrade(index) {
    this.cancelUpgrade();
    this.upgradeTimer = this.later(this.options.upgradeInterval, () => {
      this.upgradeTimer = null;
      if (this.transport !== this.transports[index]) return;
      this.probe(0, index);
    });
  }

  probe(candidate, index) {
    if (candidate >= index || this.closed) {
      this.scheduleUpgrade(index);
      return;
    }
    const name = this.transports[candidate];
    this.probing = this.open(name, {
      switching: true,
      onLive: () => {
        // The probe is the transport now; the degraded one goes.
        const degraded = this.current;
        this.probing = null;
        this.current = this.pendingSwitch;
        this.transport = name;
        if (degraded && degraded !== this.current) degraded.close();
        this.failures = 0;
        if (candidate === 0) this.setState("live", { transport: name });
        else {
          this.setState("degraded", { transport: name });
          this.scheduleUpgrade(candidate);
        }
      },
      onUnavailable: () => {
        this.probing = null;
        this.probe(candidate + 1, index);
      },
      // The node is busy: the degraded transport goes on; try again at the next interval.
      onBusy: () => {
        this.probing = null;
        this.scheduleUpgrade(index);
      },
      onLost: () => {
        this.probing = null;
        const delay = this.backoff();
        this.setState("reconnecting", { retryAt: Date.now() + delay, transport: name });
        this.later(delay, () => this.attempt(0, true));
      },
    });
  }

  /** Opens a transport; a probe (`switching`) becomes current only once it is live, until
   * then the degraded one keeps delivering. Returns the handle. */
  open(name, handlers) {
    if (!handlers.switching) this.cancelUpgrade();
    const handle =
      name === "websocket" ? this.openWebSocket(handlers) : name === "sse" ? this.openSse(handlers) : this.openPoll(handlers);
    if (!handlers.switching) {
      this.current = handle;
      this.transport = name;
    } else {
      this.pendingSwitch = handle;
    }
    return handle;
  }

  // --- delivery ------------------------------------------------------------------------------

  /** Handles any server frame, from any transport. */
  receive(frame) {
    this.options.onFrame(frame);
    switch (frame.type) {
      case "hello":
        this.noteEpoch(frame.epoch);
        break;
      case "subscribed":
        this.subscribed(frame);
        break;
      case "reply": {
        const waiter = this.pending.get(frame.id);
        if (waiter) {
          this.pending.delete(frame.id);
          if (frame.ok) waiter.resolve(frame.result);
          else waiter.reject(Object.assign(new Error(frame.error.message), { code: frame.error.code }));
        }
        break;
      }
      case "event": {
        const last = this.positions.get(frame.room);
        if (last !== undefined && frame.offset <= last) return; // seen already (a switch or a resume)
        this.positions.set(frame.room, frame.offset);
        this.options.onEvent(frame);
        break;
      }
      default:
        break;
    }
  }

  noteEpoch(epoch) {
    if (this.epoch !== null && this.epoch !== epoch) {
      // Another history (a new database): positions mean nothing there. The rooms we had been
      // following are reported `recovered: false` when they are subscribed again, so the
      // application reloads them.
      for (const room of this.positions.keys()) this.lost.add(room);
      this.positions.clear();
    }
    this.epoch = epoch;
  }

  /** A subscription took effect: note where its stream starts; report a failed resume. */
  subscribed(answer) {
    this.noteEpoch(answer.epoch);
    const wasLost = this.lost.delete(answer.room);
    const recovered = Boolean(answer.recovered) && !wasLost;
    if (answer.offset !== undefined && answer.offset !== null) {
      if (!recovered || !this.positions.has(answer.room)) this.positions.set(answer.room, answer.offset);
    }
    this.options.onRecovery({ room: answer.room, recovered });
  }

  /** `since` for a room, when the client has been there. */
  since(room) {
    if (this.epoch === null || !this.positions.has(room)) return undefined;
    return { epoch: this.epoch, offset: this.positions.get(room) };
  }

  /** The cursor SSE and long polling resume from: base64url of {e: epoch, o: {room: offset}}. */
  cursor() {
    if (this.epoch === null) return null;
    const offsets = {};
    for (const room of this.rooms) {
      if (this.positions.has(room)) offsets[room] = this.positions.get(room);
    }
    const json = JSON.stringify({ e: this.epoch, o: offsets });
    return btoa(json).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  }

  decodeCursor(cursor) {
    try {
      const padded = cursor.replaceAll("-", "+").replaceAll("_", "/");
      const { e, o } = JSON.parse(atob(padded + "===".slice((padded.length + 3) % 4)));
      return { epoch: e, offsets: o };
    } catch {
      return null;
    }
  }

  httpUrl(path) {
    return new URL(path, this.options.url);
  }

  // --- WebSocket -----------------------------------------------------------------------------

  openWebSocket(handlers) {
    const url = this.httpUrl("/ws/tasks");
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("auto", "false");
    url.searchParams.set("access_token", this.options.token);
    const ws = new WebSocket(url);
    let opened = false;
    let live = false;
    let ended = false;
    let closedHere = false;
    let waiting = 0;
    const handle = {
      ws,
      close: () => {
        ended = true;
        closedHere = true;
        try {
          ws.close(1000, "client closing");
        } catch {
          /* already closed */
        }
      },
    };
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "hello") {
        this.noteEpoch(frame.epoch);
        waiting = this.rooms.length;
        this.rooms.forEach((room, i) => {
          const since = this.since(room);
          ws.send(JSON.stringify({ type: "subscribe", room, id: `sub-${i}`, ...(since ? { since } : {}) }));
        });
        return;
      }
      if (frame.type === "reply" && typeof frame.id === "string" && frame.id.startsWith("sub-")) {
        if (frame.ok) this.subscribed(frame.result);
        waiting -= 1;
        if (waiting === 0 && !live) {
          live = true;
          handlers.onLive();
        }
        return;
      }
      if (!ended) this.receive(frame);
    };
    ws.onclose = (event) => {
      for (const waiter of this.pending.values()) waiter.reject(new Error("connection lost"));
      this.pending.clear();
      if (ended) return;
      ended = true;
      if (event.code === 4001) {
        this.tokenExpired();
        return;
      }
      if (!opened) this.refusedOrUnavailable(handlers, () => closedHere);
      else if (!live) handlers.onUnavailable();
      else handlers.onLost();
    };
    return handle;
  }

  // --- Server-Sent Events --------------------------------------------------------------------

  openSse(handlers) {
    const url = this.httpUrl("/events");
    url.searchParams.set("rooms", this.rooms.join(","));
    url.searchParams.set("access_token", this.options.token);
    const cursor = this.cursor();
    if (cursor) url.searchParams.set("last_event_id", cursor);
    const source = new EventSource(url);
    let live = false;
    let everLive = false;
    let ended = false;
    let closedHere = false;
    let waiting = this.rooms.length;
    const handle = {
      close: () => {
        ended = true;
        closedHere = true;
        source.close();
      },
    };
    source.onmessage = (message) => {
      if (ended) return;
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "close" && frame.code === 4001) {
        ended = true;
        source.close();
        this.tokenExpired();
        return;
      }
      if (frame.type === "subscribed") {
        this.subscribed(frame);
        waiting -= 1;
        if (waiting <= 0 && !live) {
          live = true;
          if (everLive) this.setState("degraded", { transport: "sse" });
          else handlers.onLive();
          everLive = true;
        }
        return;
      }
      this.receive(frame);
    };
    source.onerror = () => {
      if (ended) return;
      if (!everLive) {
        // Never got going: the node is busy, or SSE is not available here.
        ended = true;
        source.close();
        this.refusedOrUnavailable(handlers, () => closedHere);
        return;
      }
      // The browser reconnects by itself, resuming with Last-Event-ID. If it gave up, we do.
      if (source.readyState === EventSource.CLOSED) {
        ended = true;
        handlers.onLost();
      } else {
        this.setState("reconnecting", { transport: "sse" });
        live = false;
        waiting = this.rooms.length;
      }
    };
    return handle;
  }

  // --- long polling --------------------------------------------------------------------------

  openPoll(handlers) {
    let ended = false;
    let live = false;
    const controller = new AbortController();
    const handle = {
      close: () => {
        ended = true;
        controller.abort();
      },
    };
    let cursor = this.cursor();
    const loop = async () => {
      while (!ended) {
        const url = this.httpUrl("/poll");
        url.searchParams.set("rooms", this.rooms.join(","));
        if (cursor) url.searchParams.set("cursor", cursor);
        let answer;
        try {
          const response = await fetch(url, {
            headers: { Authorization: `Bearer ${this.options.token}` },
            signal: controller.signal,
            cache: "no-store",
          });
          if (response.status === 401 && live) {
            ended = true;
            this.tokenExpired();
            return;
          }
          const busy = await busyAnswer(response);
          if (busy && !ended) {
            ended = true;
            handlers.onBusy(busy);
            return;
          }
          if (!response.ok) throw new Error(`poll answered ${response.status}`);
          answer = await response.json();
        } catch (err) {
          if (ended) return;
          ended = true;
          if (!live) handlers.onUnavailable();
          else handlers.onLost();
          return;
        }
        const decoded = this.decodeCursor(answer.cursor);
        if (decoded) {
          this.noteEpoch(decoded.epoch);
          if (!cursor || !answer.recovered) {
            for (const room of this.rooms) {
              this.subscribed({ room, epoch: decoded.epoch, offset: decoded.offsets[room] ?? 0, recovered: answer.recovered });
            }
          }
        }
        for (const frame of answer.events) this.receive(frame);
        cursor = answer.cursor;
        if (!live) {
          live = true;
          handlers.onLive();
        }
      }
    };
    loop();
    return handle;
  }
}

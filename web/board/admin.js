// The admin view: the server's own numbers, pushed. It follows the admin-only `system` room
// through taskflow.js like any other room, so it is live over WebSocket and degrades to
// Server-Sent Events and long polling with the rest of the board; nothing polls /metrics. Every
// node of a cluster sends one `stats` frame per `dashboard_interval_ms` (docs/protocol.md,
// "The system room"), whichever node the page is connected to. Two views of the same frames:
// live charts of the cluster's totals, and a table with one row per node.

import { connect } from "/taskflow.js";

const POINTS = 120; // two minutes at the default interval
/** A node whose last frame is older than this many of its intervals is shown as silent. */
const SILENT_AFTER_INTERVALS = 3;

const TRANSPORT_NAMES = { websocket: "WebSocket", sse: "Server-Sent Events", poll: "long polling" };

class Sparkline {
  constructor(figure, format) {
    this.canvas = figure.querySelector("canvas");
    this.output = figure.querySelector("output");
    this.peak = figure.querySelector(".peak");
    this.format = format;
    this.points = [];
  }

  push(value) {
    this.points.push(value);
    if (this.points.length > POINTS) this.points.shift();
    this.output.textContent = value === null ? "–" : this.format(value);
    const values = this.points.filter((v) => v !== null);
    const peak = values.length ? Math.max(...values) : null;
    this.peak.textContent = peak === null ? "" : `(peak ${this.format(peak)})`;
    this.peak.dataset.value = peak ?? "";
    this.draw();
  }

  draw() {
    const { canvas } = this;
    const ctx = canvas.getContext("2d");
    const { width, height } = canvas;
    ctx.clearRect(0, 0, width, height);
    const values = this.points.map((v) => v ?? 0);
    const max = Math.max(1e-9, ...values);
    ctx.strokeStyle = "#0b5cad";
    ctx.lineWidth = 2;
    ctx.beginPath();
    // The latest sample at the right edge; a short history fills in from the right.
    const first = POINTS - values.length;
    values.forEach((v, i) => {
      const x = ((first + i) / (POINTS - 1)) * (width - 2) + 1;
      const y = height - 2 - (v / max) * (height - 4);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

const rate = (v) => `${v.toFixed(1)}/s`;
// Commit times have millisecond resolution: 0 means within the millisecond.
const ms = (v) => (v < 1 ? "<1 ms" : `${Math.round(v)} ms`);
const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;
const connectionsOf = (f) => f.connections.websocket + f.connections.sse + f.connections.long_polling;

/** The node table's rows: key (the cells' `data-cell`), label, and the cell's text. */
const ROWS = [
  ["connections", "Connections", (f) => String(connectionsOf(f))],
  ["by-transport", "WS / SSE / poll", (f) => `${f.connections.websocket} / ${f.connections.sse} / ${f.connections.long_polling}`],
  ["subscriptions", "Subscriptions", (f) => String(f.subscriptions)],
  ["events", "Events", (f) => rate(f.events_per_sec)],
  ["deliveries", "Deliveries", (f) => rate(f.deliveries_per_sec)],
  ["latency", "Latency p50 / p99", (f) => (f.latency_ms ? `${ms(f.latency_ms.p50)} / ${ms(f.latency_ms.p99)}` : "–")],
  ["rss", "Memory (RSS)", (f) => (f.rss_bytes === null ? "–" : mib(f.rss_bytes))],
  ["slow", "Slow-consumer closes", (f) => String(f.slow_consumer_closes)],
  ["broker", "Broker", (f) => f.broker],
];

/** Sums what adds up over the nodes; the worst latency; RSS added over the processes. */
export function totals(frames) {
  const latencies = frames.map((f) => f.latency_ms).filter(Boolean);
  return {
    connections: frames.reduce((n, f) => n + connectionsOf(f), 0),
    events: frames.reduce((n, f) => n + f.events_per_sec, 0),
    deliveries: frames.reduce((n, f) => n + f.deliveries_per_sec, 0),
    p99: latencies.length ? Math.max(...latencies.map((l) => l.p99)) : null,
    rss: frames.every((f) => f.rss_bytes === null) ? null : frames.reduce((n, f) => n + (f.rss_bytes ?? 0), 0),
  };
}

export class AdminView {
  constructor(section, token) {
    this.section = section;
    this.token = token;
    const q = (id) => section.querySelector(`#${id}`);
    this.feed = q("admin-feed");
    this.head = q("admin-nodes-head");
    this.rows = q("admin-nodes-body");
    this.charts = {
      connections: new Sparkline(q("metric-connections"), (v) => String(Math.round(v))),
      events: new Sparkline(q("metric-events"), rate),
      deliveries: new Sparkline(q("metric-deliveries"), rate),
      p99: new Sparkline(q("metric-latency"), ms),
      rss: new Sparkline(q("metric-rss"), mib),
    };
    this.nodes = new Map(); // node -> { frame, receivedAt }
    this.client = null;
    this.tabs = [...section.querySelectorAll('[role="tab"]')];
    for (const tab of this.tabs) {
      tab.addEventListener("click", () => this.select(tab));
      tab.addEventListener("keydown", (event) => this.arrow(event, tab));
    }
  }

  start() {
    this.section.hidden = false;
    this.client = connect({
      token: this.token,
      rooms: ["system"],
      backoffCap: 10000,
      onState: (state, info) => this.showFeed(state, info),
      onFrame: (frame) => {
        if (frame.type === "stats") this.receive(frame);
      },
    });
  }

  stop() {
    if (this.client) this.client.close();
    this.client = null;
  }

  showFeed(state, info) {
    const transport = info.transport ?? this.client?.transport ?? null;
    this.feed.dataset.state = state;
    if (transport) this.feed.dataset.transport = transport;
    const over = transport ? ` over ${TRANSPORT_NAMES[transport] ?? transport}` : "";
    this.feed.textContent =
      state === "live" || state === "degraded" ? `Pushed by the server${over}` : state === "offline" ? "Offline" : "Connecting…";
  }

  receive(frame) {
    this.nodes.set(frame.node, { frame, receivedAt: performance.now() });
    this.renderTable();
    // One chart point per interval: when the first node (in name order) reports, with every
    // node's latest numbers.
    const [reference] = [...this.nodes.keys()].sort();
    if (frame.node === reference) {
      const fresh = this.fresh().map((n) => n.frame);
      const sum = totals(fresh);
      for (const [name, chart] of Object.entries(this.charts)) chart.push(sum[name]);
    }
  }

  fresh() {
    const now = performance.now();
    return [...this.nodes.values()].filter(({ frame, receivedAt }) => now - receivedAt <= SILENT_AFTER_INTERVALS * frame.interval_ms);
  }

  /** Rewrites the table: a row per number, a column per node (a sidebar is narrow; a cluster
   * has a handful of nodes). */
  renderTable() {
    const names = [...this.nodes.keys()].sort();
    const now = performance.now();
    const columns = names.map((name) => {
      const { frame, receivedAt } = this.nodes.get(name);
      return { name, frame, silent: now - receivedAt > SILENT_AFTER_INTERVALS * frame.interval_ms };
    });
    const head = document.createElement("tr");
    const corner = document.createElement("th");
    corner.scope = "col";
    corner.textContent = "Node";
    head.append(corner);
    for (const { name, silent } of columns) {
      const th = document.createElement("th");
      th.scope = "col";
      th.dataset.node = name;
      if (silent) th.dataset.silent = "true";
      th.textContent = name;
      head.append(th);
    }
    this.head.replaceChildren(head);
    this.rows.replaceChildren(
      ...ROWS.map(([key, label, show]) => {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = label;
        tr.append(th);
        for (const { name, frame, silent } of columns) {
          const td = document.createElement("td");
          td.dataset.node = name;
          td.dataset.cell = key;
          td.textContent = key === "broker" && silent ? "silent" : show(frame);
          tr.append(td);
        }
        return tr;
      }),
    );
  }

  select(tab) {
    for (const other of this.tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      this.section.querySelector(`#${other.getAttribute("aria-controls")}`).hidden = !selected;
    }
    // A canvas drawn while hidden kept its size; redraw now it shows.
    for (const chart of Object.values(this.charts)) chart.draw();
  }

  /** Arrow keys move between the tabs (the WAI-ARIA tabs pattern). */
  arrow(event, tab) {
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    event.preventDefault();
    const next = this.tabs[(this.tabs.indexOf(tab) + step + this.tabs.length) % this.tabs.length];
    this.select(next);
    next.focus();
  }
}

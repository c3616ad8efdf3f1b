// The admin view: open connections, events per second and delivery latency as small live
// charts. Read from the server's Prometheus text at /metrics (the same numbers an operator's
// scraper sees): `ws_connections`, the rate of `hub_events_dispatched_total`, and the mean of
// `hub_commit_to_enqueue_seconds` (commit of an event to its queueing for subscribers) over each
// interval.

const INTERVAL_MS = 2000;
const POINTS = 60; // two minutes

/** The samples of one metric name (without labels) summed over its label sets. */
export function parseMetrics(text) {
  const values = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    values.set(match[1], (values.get(match[1]) || 0) + value);
  }
  return values;
}

class Sparkline {
  constructor(canvas, output, format) {
    this.canvas = canvas;
    this.output = output;
    this.format = format;
    this.points = [];
  }

  push(value) {
    this.points.push(value);
    if (this.points.length > POINTS) this.points.shift();
    this.output.textContent = value === null ? "–" : this.format(value);
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

export class AdminView {
  constructor(section) {
    this.section = section;
    const q = (id) => section.querySelector(`#${id}`);
    this.connections = new Sparkline(q("chart-connections"), q("metric-connections"), (v) => String(Math.round(v)));
    this.events = new Sparkline(q("chart-events"), q("metric-events"), (v) => `${v.toFixed(1)}/s`);
    this.latency = new Sparkline(q("chart-latency"), q("metric-latency"), (v) => `${(v * 1000).toFixed(2)} ms`);
    this.previous = null;
    this.timer = null;
  }

  start() {
    this.section.hidden = false;
    const tick = async () => {
      try {
        await this.sample();
      } catch {
        // The server is away: the connection indicator says so; the charts just pause.
      }
      this.timer = setTimeout(tick, INTERVAL_MS);
    };
    tick();
  }

  async sample() {
    const response = await fetch("/metrics", { cache: "no-store" });
    const metrics = parseMetrics(await response.text());
    const now = performance.now();
    const sample = {
      at: now,
      events: metrics.get("hub_events_dispatched_total") || 0,
      latencySum: metrics.get("hub_commit_to_enqueue_seconds_sum") || 0,
      latencyCount: metrics.get("hub_commit_to_enqueue_seconds_count") || 0,
    };
    this.connections.push(metrics.get("ws_connections") || 0);
    const before = this.previous;
    this.previous = sample;
    if (!before || sample.events < before.events) return; // first sample, or a restarted server
    const seconds = (sample.at - before.at) / 1000;
    this.events.push((sample.events - before.events) / seconds);
    const count = sample.latencyCount - before.latencyCount;
    this.latency.push(count > 0 ? (sample.latencySum - before.latencySum) / count : null);
  }
}

// web/taskflow.js in a real headless Chromium (Debian's `chromium`, driven by playwright-core),
// against the real `taskflow` binary. Run by `cargo test` through tests/browser.rs, which passes
// the binary's path in TASKFLOW_BIN.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { freePort, stopped } from "./harness.mjs";

const BIN = process.env.TASKFLOW_BIN ?? new URL("../../target/debug/taskflow", import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const TOKEN = "browser-test-admin";
const WAIT = 20_000;

const scratch = mkdtempSync(join(tmpdir(), "taskflow-browser-"));
const servers = new Set();
let browser;

after(async () => {
  for (const server of servers) server.kill("SIGKILL");
  if (browser) await browser.close();
  rmSync(scratch, { recursive: true, force: true });
});

async function launch() {
  browser ??= await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // The test page is served by request interception, which Chromium's local-network-access
      // checks treat as a public page reaching 127.0.0.1; the board, served by Taskflow itself,
      // is not affected.
      "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights",
    ],
  });
  return browser;
}

/** Starts the server; resolves once it prints where it listens. */
function startServer({ db, port, disabled = [], env = {} }) {
  const child = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--database", `sqlite://${db}`], {
    env: {
      ...process.env,
      TASKFLOW_ADMIN_TOKEN: TOKEN,
      TASKFLOW_LOG_LEVEL: "warn",
      TASKFLOW_DISABLED_TRANSPORTS: disabled.join(","),
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  servers.add(child);
  child.once("exit", () => servers.delete(child));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      if (line.startsWith("Taskflow listening on ")) resolve(child);
    });
    child.once("exit", (code) => reject(new Error(`taskflow exited with ${code} before listening`)));
  });
}

async function createTasks(base, count, prefix) {
  for (let i = 0; i < count; i++) {
    const response = await fetch(`${base}/tasks`, {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ title: `${prefix} ${i}` }),
    });
    assert.equal(response.status, 201);
  }
}

/** A page of the server's origin running the library, recording what it sees. */
async function openPage(base) {
  const context = await (await launch()).newContext();
  const page = await context.newPage();
  page.on("pageerror", (err) => console.error("page error:", err));
  // Served under the server's origin, so the WebSocket's Origin is the server's own.
  await page.route(`${base}/__test.html`, (route) =>
    route.fulfill({
      contentType: "text/html",
      body: `<!doctype html><meta charset="utf-8"><title>taskflow.js test</title>
<script type="module">
  import { connect } from "/taskflow.js";
  window.received = [];
  window.states = [];
  window.recoveries = [];
  window.reports = [];
  window.client = connect({
    token: ${JSON.stringify(TOKEN)},
    rooms: ["project:default"],
    backoffBase: 100,
    backoffCap: 1000,
    upgradeInterval: 1000,
    onEvent: (e) => window.received.push(e.offset),
    onState: (state, info) => {
      window.states.push(info.transport ? state + ":" + info.transport : state);
      window.reports.push({ state, at: Date.now(), ...info });
    },
    onRecovery: (r) => window.recoveries.push(r),
  });
</script>`,
    }),
  );
  await page.goto(`${base}/__test.html`);
  return { page, context };
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function waitForState(page, state) {
  await page.waitForFunction((s) => window.states.includes(s), state, { timeout: WAIT });
}

async function waitForCount(page, n) {
  try {
    await page.waitForFunction((count) => window.received.length >= count, n, { timeout: WAIT });
  } catch (err) {
    const seen = await page.evaluate(() => ({ received: window.received, states: window.states, recoveries: window.recoveries }));
    throw new Error(`waited for ${n} events; the page has ${JSON.stringify(seen)}`, { cause: err });
  }
  return page.evaluate(() => window.received);
}

async function scenario({ disabled, expected }) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = await startServer({ db: join(scratch, `${expected.replace(":", "-")}.db`), port, disabled });
  const { page, context } = await openPage(base);
  await waitForState(page, expected);
  await createTasks(base, 30, "task");
  assert.deepEqual(await waitForCount(page, 30), range(1, 30), "every event once, in order");
  const states = await page.evaluate(() => window.states);
  assert.equal(states[states.length - 1], expected);
  await context.close();
  server.kill("SIGKILL");
  await stopped(server);
}

test("goes live over WebSocket and receives every event", () =>
  scenario({ disabled: [], expected: "live:websocket" }));

test("with WebSocket refused it degrades to SSE and still receives every event", () =>
  scenario({ disabled: ["websocket"], expected: "degraded:sse" }));

test("with WebSocket and SSE refused it degrades to long polling and still receives every event", () =>
  scenario({ disabled: ["websocket", "sse"], expected: "degraded:poll" }));

test("after a server restart it resumes without loss", async () => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const db = join(scratch, "restart.db");
  let server = await startServer({ db, port });
  const { page, context } = await openPage(base);
  await waitForState(page, "live:websocket");
  await createTasks(base, 20, "before");
  assert.deepEqual(await waitForCount(page, 20), range(1, 20));

  server.kill("SIGKILL");
  await stopped(server);
  await page.waitForFunction(() => window.states.some((s) => s.startsWith("reconnecting")), null, { timeout: WAIT });

  server = await startServer({ db, port });
  // Written right after the restart, possibly before the page is back: the resume replays them.
  await createTasks(base, 20, "after");
  assert.deepEqual(await waitForCount(page, 40), range(1, 40), "nothing lost, nothing twice");
  await page.waitForFunction(() => window.states[window.states.length - 1] === "live:websocket", null, {
    timeout: WAIT,
  });
  const recoveries = await page.evaluate(() => window.recoveries);
  assert.ok(recoveries.every((r) => r.recovered), "every resume recovered");
  await context.close();
  server.kill("SIGKILL");
  await stopped(server);
});

test("behind the same address, a new database (another epoch) is reported as not recovered", async () => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let server = await startServer({ db: join(scratch, "epoch-a.db"), port });
  const { page, context } = await openPage(base);
  await waitForState(page, "live:websocket");
  await createTasks(base, 3, "old");
  assert.deepEqual(await waitForCount(page, 3), range(1, 3));

  server.kill("SIGKILL");
  await stopped(server);
  await page.waitForFunction(() => window.states.some((s) => s.startsWith("reconnecting")), null, { timeout: WAIT });
  server = await startServer({ db: join(scratch, "epoch-b.db"), port });
  await page.waitForFunction(() => window.recoveries.some((r) => !r.recovered), null, { timeout: WAIT });
  const recoveries = await page.evaluate(() => window.recoveries);
  assert.deepEqual(recoveries[recoveries.length - 1], { room: "project:default", recovered: false });
  // The new history's events arrive from its start, not filtered by the old offsets.
  await createTasks(base, 2, "new");
  assert.deepEqual(await waitForCount(page, 5), [1, 2, 3, 1, 2]);
  await context.close();
  server.kill("SIGKILL");
  await stopped(server);
});

/**
 * Holds a WebSocket to the server from a page of its own (Node 20 has no WebSocket client), trying
 * again while the server refuses it. `release()` closes it and resolves once the close is answered.
 */
async function holdConnection(base) {
  const context = await (await launch()).newContext();
  const page = await context.newPage();
  await page.route(`${base}/__hold.html`, (route) =>
    route.fulfill({ contentType: "text/html", body: `<!doctype html><meta charset="utf-8"><title>hold</title>` }),
  );
  await page.goto(`${base}/__hold.html`);
  await page.evaluate(async (token) => {
    const deadline = Date.now() + 15000;
    for (;;) {
      const held = await new Promise((resolve) => {
        const ws = new WebSocket(`ws://${location.host}/ws/tasks?access_token=${token}`);
        ws.onmessage = (m) => JSON.parse(m.data).type === "hello" && resolve(ws);
        ws.onclose = () => resolve(null);
      });
      if (held) {
        window.held = held;
        return;
      }
      // Refused: the place the other page left is not free yet.
      if (Date.now() > deadline) throw new Error("the server never had a place for the held connection");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }, TOKEN);
  return {
    release: () =>
      page.evaluate(
        () =>
          new Promise((resolve) => {
            window.held.onclose = () => resolve();
            window.held.close(1000);
          }),
      ),
    close: () => context.close(),
  };
}

test("refused by a node at its connection limit, it waits out the Retry-After, gets in and resumes without loss", async () => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = await startServer({
    db: join(scratch, "busy.db"),
    port,
    env: { TASKFLOW_WS_MAX_CONNECTIONS: "1", TASKFLOW_WS_RETRY_AFTER_SECS: "1" },
  });
  const { page, context } = await openPage(base);
  await waitForState(page, "live:websocket");
  await createTasks(base, 5, "before");
  assert.deepEqual(await waitForCount(page, 5), range(1, 5));

  // The page drops its connection (offline); the node's one place goes to another page, and
  // events are written meanwhile.
  await context.setOffline(true);
  await waitForState(page, "offline");
  const holder = await holdConnection(base);
  await createTasks(base, 5, "meanwhile");

  // Back online, the page's WebSocket is refused with 503: the probe tells it to wait.
  const since = await page.evaluate(() => window.reports.length);
  await context.setOffline(false);
  let refused;
  try {
    refused = await page.waitForFunction(
      (from) => window.reports.slice(from).find((r) => r.state === "reconnecting" && r.retryAfter !== undefined),
      since,
      { timeout: WAIT },
    );
  } catch (err) {
    const seen = await page.evaluate(() => window.reports);
    throw new Error(`no reconnecting state with a retryAfter; the page reported ${JSON.stringify(seen)}`, { cause: err });
  }
  const report = await refused.jsonValue();
  assert.ok([1, 2].includes(report.retryAfter), `the server's Retry-After is 1 or 2 s: ${JSON.stringify(report)}`);
  assert.equal(report.reason, "server_full");
  assert.equal(report.transport, "websocket");
  assert.ok(report.retryAt - report.at >= report.retryAfter * 1000, `waits at least the Retry-After: ${JSON.stringify(report)}`);

  // The place is free: the page comes back, after its wait, and gets what it missed.
  await holder.release();
  await page.waitForFunction(
    (from) => window.reports.slice(from).some((r) => r.state === "live" && r.transport === "websocket"),
    since,
    { timeout: WAIT },
  );
  assert.deepEqual(await waitForCount(page, 10), range(1, 10), "nothing lost, nothing twice");
  const reports = await page.evaluate((from) => window.reports.slice(from), since);
  const live = reports.findLastIndex((r) => r.state === "live");
  const lastRefusal = reports.slice(0, live).findLast((r) => r.state === "reconnecting");
  assert.ok(lastRefusal.retryAfter !== undefined, `every wait before it was a Retry-After: ${JSON.stringify(reports)}`);
  assert.ok(
    reports[live].at - lastRefusal.at >= lastRefusal.retryAfter * 1000,
    `live only after the Retry-After: ${JSON.stringify(reports)}`,
  );
  const recoveries = await page.evaluate(() => window.recoveries);
  assert.ok(recoveries.every((r) => r.recovered), "every resume recovered");
  await createTasks(base, 1, "after");
  assert.deepEqual(await waitForCount(page, 11), range(1, 11));

  // The wait itself: at least the Retry-After, jittered up to twice it, at most 60 s.
  const delays = await page.evaluate(async () => {
    const { retryAfterDelay } = await import("/taskflow.js");
    return { one: Array.from({ length: 500 }, () => retryAfterDelay(1)), huge: retryAfterDelay(3600), near: retryAfterDelay(40) };
  });
  assert.ok(delays.one.every((d) => d >= 1000 && d <= 2000), "within [1 s, 2 s]");
  assert.ok(new Set(delays.one).size > 100, "jittered");
  assert.equal(delays.huge, 60000);
  assert.ok(delays.near >= 40000 && delays.near <= 60000);

  await holder.close();
  await context.close();
  server.kill("SIGKILL");
  await stopped(server);
});

test("a close from the page completes the closing handshake: wasClean, with the page's own code", async () => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = await startServer({ db: join(scratch, "close.db"), port });
  const context = await (await launch()).newContext();
  const page = await context.newPage();
  await page.route(`${base}/__close.html`, (route) =>
    route.fulfill({ contentType: "text/html", body: `<!doctype html><meta charset="utf-8"><title>close</title>` }),
  );
  await page.goto(`${base}/__close.html`);
  // A plain WebSocket: the page waits for the server's hello, closes with `code` and `reason`,
  // and reports the close event the browser fires once the server's answer has arrived.
  const closeWith = (code, reason) =>
    page.evaluate(
      ([token, code, reason]) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(`ws://${location.host}/ws/tasks?access_token=${token}`);
          ws.onmessage = (m) => {
            if (JSON.parse(m.data).type !== "hello") return;
            if (reason == null) ws.close(code);
            else ws.close(code, reason);
          };
          ws.onclose = (e) => resolve({ wasClean: e.wasClean, code: e.code, reason: e.reason });
          setTimeout(() => reject(new Error("no close event")), 15000);
        }),
      [TOKEN, code, reason],
    );
  assert.deepEqual(await closeWith(1000, null), { wasClean: true, code: 1000, reason: "" });
  assert.deepEqual(await closeWith(4000, "bye"), { wasClean: true, code: 4000, reason: "" });
  await context.close();
  server.kill("SIGKILL");
  await stopped(server);
});

/** A server that compresses (`ws_compression = on`, every frame worth it). */
function startCompressing(name, port) {
  return startServer({
    db: join(scratch, `${name}.db`),
    port,
    env: { TASKFLOW_WS_COMPRESSION: "on", TASKFLOW_WS_COMPRESSION_MIN_BYTES: "0" },
  });
}

test("Chromium negotiates permessage-deflate: events arrive compressed and its own compressed messages are read", async () => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = await startCompressing("deflate-chromium", port);
  const { page, context } = await openPage(base);
  await waitForState(page, "live:websocket");
  await createTasks(base, 30, "compressed");
  assert.deepEqual(await waitForCount(page, 30), range(1, 30), "every event once, in order");
  // A socket of the page's own: what was negotiated, and a command Chromium sends compressed.
  const seen = await page.evaluate(
    ({ url, token }) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${url}?access_token=${token}&auto=false`);
        ws.onerror = () => reject(new Error("the socket failed"));
        ws.onopen = () => ws.send(JSON.stringify({ type: "ping", id: "x".repeat(2000) }));
        ws.onmessage = (message) => {
          const frame = JSON.parse(message.data);
          if (frame.type === "pong") {
            resolve({ extensions: ws.extensions, echoed: frame.id.length });
            ws.close(1000);
          }
        };
      }),
    { url: base.replace("http", "ws") + "/ws/tasks", token: TOKEN },
  );
  assert.match(seen.extensions, /^permessage-deflate; server_no_context_takeover/);
  assert.equal(seen.echoed, 2000);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^ws_compressions_total \d+/m, "events went out compressed");
  assert.match(metrics, /^ws_compressed_messages_in_total [1-9]/m, "the page's command came in compressed");
  await context.close();
  server.kill("SIGKILL");
  await stopped(server);
});

test("the npm ws client negotiates permessage-deflate and gets every event, compressed both ways", async () => {
  const { WebSocket } = await import("ws");
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = await startCompressing("deflate-ws", port);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/tasks?auto=false`, {
    headers: { Authorization: `Bearer ${TOKEN}` },
    // ws compresses what it sends from 1 KiB on; lower it so the subscribe goes compressed.
    perMessageDeflate: { threshold: 0 },
  });
  const frames = [];
  let onFrame = () => {};
  ws.on("message", (data) => {
    frames.push(JSON.parse(data.toString()));
    onFrame();
  });
  const until = (what, condition) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT);
      onFrame = () => {
        if (condition()) {
          clearTimeout(timer);
          resolve();
        }
      };
      onFrame();
    });
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  assert.match(ws.extensions, /permessage-deflate/);
  ws.send(JSON.stringify({ type: "subscribe", room: "project:default", id: 1 }));
  await until("the subscribe reply", () => frames.some((f) => f.type === "reply" && f.id === 1 && f.ok));
  await createTasks(base, 25, "for ws");
  const events = () => frames.filter((f) => f.type === "event").map((f) => f.offset);
  await until("25 events", () => events().length >= 25);
  assert.deepEqual(events(), range(1, 25));
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^ws_compressed_messages_in_total [1-9]/m, "the subscribe came in compressed");
  assert.match(metrics, /^ws_compressions_total \d+/m, "events went out compressed");
  ws.close(1000);
  const [code] = await new Promise((resolve) => ws.once("close", (...args) => resolve(args)));
  assert.equal(code, 1000, "the closing handshake completed");
  server.kill("SIGKILL");
  await stopped(server);
});

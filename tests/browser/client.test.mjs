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
function startServer({ db, port, disabled = [] }) {
  const child = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--database", `sqlite://${db}`], {
    env: {
      ...process.env,
      TASKFLOW_ADMIN_TOKEN: TOKEN,
      TASKFLOW_LOG_LEVEL: "warn",
      TASKFLOW_DISABLED_TRANSPORTS: disabled.join(","),
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
  window.client = connect({
    token: ${JSON.stringify(TOKEN)},
    rooms: ["project:default"],
    backoffBase: 100,
    backoffCap: 1000,
    upgradeInterval: 1000,
    onEvent: (e) => window.received.push(e.offset),
    onState: (state, info) => window.states.push(info.transport ? state + ":" + info.transport : state),
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

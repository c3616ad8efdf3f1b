// The live task board (web/board/, served at /) in a real headless Chromium against the real
// `taskflow` binary: two people on one project, live changes both ways, presence, chat and
// typing, an offline spell, a server restart, an accessibility check, and screenshots. Run by
// `cargo test --test board` (tests/board.rs), which passes the binary's path in TASKFLOW_BIN.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { freePort, startTaskflow, stopped } from "./harness.mjs";

const BIN = process.env.TASKFLOW_BIN ?? new URL("../../target/debug/taskflow", import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.TASKFLOW_ARTIFACTS ?? new URL("./artifacts/", import.meta.url).pathname;
const TOKEN = "board-test-admin";
const WAIT = 30_000;
/** The issue's promise: a change made elsewhere appears within one second. */
const LIVE = 1_000;

const scratch = mkdtempSync(join(tmpdir(), "taskflow-board-"));
const servers = new Set();
let browser;

after(async () => {
  for (const server of servers) server.kill("SIGKILL");
  if (browser) await browser.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** Starts the server; resolves with it and the board's sign-in link it printed. */
function startServer({ db, port, env = {} }) {
  return startTaskflow({ bin: BIN, db, port, token: TOKEN, env, servers });
}

async function rest(base, method, path, body, token = TOKEN) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

async function launch() {
  browser ??= await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  return browser;
}

/** A browser context (one person) with the board open through a sign-in link. */
async function openBoard(link, viewport = { width: 1280, height: 900 }) {
  const context = await (await launch()).newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy|Refused to/.test(message.text())) problems.push(message.text());
  });
  await page.goto(link);
  return { context, page, problems };
}

const state = (page) => page.locator("#connection");
async function waitForState(page, wanted, timeout = WAIT) {
  await page.waitForFunction((s) => document.querySelector("#connection").dataset.state === s, wanted, { timeout });
}
const card = (page, title, status) =>
  page.locator(`${status ? `.column[data-status="${status}"] ` : ""}.card[data-title="${title}"]`);

/** The board's tasks as the page shows them: id -> status. */
function shownTasks(page) {
  return page.evaluate(() =>
    Object.fromEntries([...document.querySelectorAll(".card")].map((c) => [c.dataset.id, c.closest(".column").dataset.status])),
  );
}

test("the live board: two people, live changes, presence, chat, offline, restart, accessibility", async (t) => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const db = join(scratch, "board.db");
  let { child: server, link: adminLink } = await startServer({ db, port });

  await rest(base, "POST", "/projects", { id: "web", name: "Web site", members: ["alice", "bob"] });
  const alice = (await rest(base, "POST", "/auth/tokens", { user: "alice" })).token;
  const bob = (await rest(base, "POST", "/auth/tokens", { user: "bob" })).token;

  const A = await openBoard(`${base}/#token=${alice}`);
  const B = await openBoard(`${base}/#token=${bob}`);
  const a = A.page;
  const b = B.page;

  await t.test("signing in keeps the token out of the address bar", async () => {
    await waitForState(a, "live");
    await waitForState(b, "live");
    assert.equal(a.url(), `${base}/`);
    assert.equal(await a.evaluate(() => sessionStorage.getItem("taskflow.token")), alice);
    const response = await fetch(`${base}/`);
    const csp = response.headers.get("content-security-policy");
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(response.headers.get("x-content-type-options"), "nosniff");
  });

  await t.test("each sees the other in the presence list", async () => {
    await a.locator('#presence [data-user="bob"]').waitFor({ timeout: WAIT });
    await b.locator('#presence [data-user="alice"]').waitFor({ timeout: WAIT });
    assert.equal(await a.locator('#presence [data-user="alice"]').getAttribute("data-connections"), "1");
    // A second tab of Bob's counts as his second connection.
    const second = await B.context.newPage();
    await second.goto(`${base}/#token=${bob}`);
    await a.locator('#presence [data-user="bob"][data-connections="2"]').waitFor({ timeout: WAIT });
    await second.close();
    await a.locator('#presence [data-user="bob"][data-connections="1"]').waitFor({ timeout: WAIT });
  });

  await t.test("A creates a task and B sees it within one second", async () => {
    await a.locator("#new-title").fill("Write the board");
    await a.locator("#new-priority").fill("7");
    await a.getByRole("button", { name: "Add task" }).click();
    await card(b, "Write the board", "todo").waitFor({ timeout: LIVE });
    await card(a, "Write the board", "todo").waitFor({ timeout: LIVE });
    // The only ready task is the project's next one.
    await card(b, "Write the board").locator(".next-badge").waitFor({ timeout: WAIT });
  });

  await t.test("assigning a task to B shows B a toast", async () => {
    const assignee = card(a, "Write the board").getByLabel("Assignee");
    await assignee.fill("bob");
    await assignee.press("Enter");
    await b.locator("#toasts .toast", { hasText: "Assigned to you: “Write the board”" }).waitFor({ timeout: WAIT });
    assert.equal(await card(b, "Write the board").getByLabel("Assignee").inputValue(), "bob");
  });

  await t.test("B moves it (keyboard button, then drag and drop) and A sees it in done", async () => {
    // With the keyboard: focus the button, press Enter; the focus stays on the moved card.
    await card(b, "Write the board").getByRole("button", { name: "Move “Write the board” to In progress" }).focus();
    await b.keyboard.press("Enter");
    await card(a, "Write the board", "in_progress").waitFor({ timeout: LIVE });
    await card(b, "Write the board", "in_progress").waitFor({ timeout: WAIT });
    assert.equal(await b.evaluate(() => document.activeElement.closest(".card")?.dataset.title), "Write the board");
    await card(b, "Write the board", "in_progress").dragTo(b.locator('.column[data-status="done"]'));
    await card(a, "Write the board", "done").waitFor({ timeout: LIVE });
  });

  await t.test("a task deleted by B disappears from A's board", async () => {
    await a.locator("#new-title").fill("Delete me");
    await a.getByRole("button", { name: "Add task" }).click();
    await card(b, "Delete me").getByRole("button", { name: "Delete “Delete me”" }).click();
    await card(a, "Delete me").waitFor({ state: "detached", timeout: LIVE });
  });

  await t.test("a chat message and the typing indicator cross over", async () => {
    await a.locator("#chat-text").pressSequentially("Hello Bob", { delay: 20 });
    await b.locator("#typing", { hasText: "alice is typing" }).waitFor({ timeout: WAIT });
    await a.locator("#chat-text").press("Enter");
    await b.locator("#messages .message", { hasText: "Hello Bob" }).waitFor({ timeout: LIVE });
    await b.locator("#chat-text").fill("Hi Alice");
    await b.getByRole("button", { name: "Send" }).click();
    await a.locator("#messages .message", { hasText: "Hi Alice" }).waitFor({ timeout: LIVE });
  });

  await t.test("clicking a person opens a conversation; a direct message is a notification with an unread count", async () => {
    await a.locator('#presence [data-user="bob"] button').click();
    await a.locator('#direct[data-peer="bob"]').waitFor({ timeout: WAIT });
    await a.locator("#direct-text").fill("Lunch at noon?");
    await a.locator("#direct-form").getByRole("button", { name: "Send" }).click();
    await a.locator("#direct-messages .message", { hasText: "Lunch at noon?" }).waitFor({ timeout: LIVE });
    // B has no conversation open: a toast, and an unread count on the inbox and on A's avatar.
    await b.locator("#toasts .toast", { hasText: "alice: Lunch at noon?" }).waitFor({ timeout: LIVE });
    await b.locator('#inbox[data-unread="1"]').waitFor({ timeout: WAIT });
    await b.locator('#presence [data-user="alice"][data-unread="1"]').waitFor({ timeout: WAIT });
    // The inbox opens the latest unread conversation, with its history, and clears the count.
    await b.locator("#inbox").click();
    await b.locator('#direct[data-peer="alice"] .message', { hasText: "Lunch at noon?" }).waitFor({ timeout: WAIT });
    await b.locator('#inbox[data-unread="0"]').waitFor({ timeout: WAIT });
    assert.equal(await b.locator('#presence [data-user="alice"]').getAttribute("data-unread"), "0");
    await b.locator("#direct-text").fill("Yes!");
    await b.locator("#direct-text").press("Enter");
    // A's conversation is open: the answer appears in it and counts nothing unread.
    await a.locator("#direct-messages .message", { hasText: "Yes!" }).waitFor({ timeout: LIVE });
    assert.equal(await a.locator("#inbox").getAttribute("data-unread"), "0");
    await a.locator("#direct-close").click();
    await b.locator("#direct-close").click();
    await b.locator("#direct").waitFor({ state: "hidden", timeout: WAIT });
  });

  await t.test("B offline while A creates two tasks: back online, B shows both exactly once, without a reload", async () => {
    await b.evaluate(() => {
      window.sameDocument = true;
    });
    await B.context.setOffline(true);
    await waitForState(b, "offline");
    for (const title of ["Offline one", "Offline two"]) {
      await a.locator("#new-title").fill(title);
      await a.getByRole("button", { name: "Add task" }).click();
      await card(a, title, "todo").waitFor({ timeout: WAIT });
    }
    assert.equal(await card(b, "Offline one").count(), 0, "B is offline: nothing arrives");
    await B.context.setOffline(false);
    await waitForState(b, "live");
    await card(b, "Offline one", "todo").waitFor({ timeout: WAIT });
    await card(b, "Offline two", "todo").waitFor({ timeout: WAIT });
    assert.equal(await card(b, "Offline one").count(), 1);
    assert.equal(await card(b, "Offline two").count(), 1);
    assert.equal(await b.evaluate(() => window.sameDocument), true, "no page reload");
  });

  await t.test("dependencies: blocked badge names the unfinished one; a cycle is refused with the server's message", async () => {
    const two = card(a, "Offline two");
    await two.locator("summary").click();
    await two.getByLabel("Depends on").selectOption({ label: "Offline one" });
    await two.getByRole("button", { name: "Add", exact: true }).click();
    await card(b, "Offline two").locator(".blocked-badge", { hasText: "Blocked by “Offline one”" }).waitFor({ timeout: LIVE });
    const one = card(a, "Offline one");
    await one.locator("summary").click();
    await one.getByLabel("Depends on").selectOption({ label: "Offline two" });
    await one.getByRole("button", { name: "Add", exact: true }).click();
    // The server's message, with the tasks named by their titles.
    await one
      .locator(".card-note", { hasText: /would close the cycle “Offline (one|two)” → “Offline (one|two)” → “Offline (one|two)”/ })
      .waitFor({ timeout: WAIT });
    await two.getByRole("button", { name: "Remove dependency on “Offline one”" }).click();
    await card(b, "Offline two").locator(".blocked-badge").waitFor({ state: "hidden", timeout: LIVE });
  });

  await t.test("a stale edit (412) reloads the card and says so", async () => {
    // B stops listening, so its copy of the task goes stale when A's change lands.
    await b.evaluate(() => window.taskflowBoard.client.close());
    await card(a, "Offline two").locator(".title").fill("Offline two, renamed");
    await card(a, "Offline two").locator(".title").press("Enter");
    await card(a, "Offline two, renamed").waitFor({ timeout: WAIT });
    const stale = card(b, "Offline two");
    await stale.locator(".title").fill("Offline two, by Bob");
    await stale.locator(".title").press("Enter");
    const reloaded = card(b, "Offline two, renamed");
    await reloaded.locator(".card-note", { hasText: "changed elsewhere" }).waitFor({ timeout: WAIT });
    await b.evaluate(() => window.taskflowBoard.client.start());
    await waitForState(b, "live");
  });

  await t.test("the server is killed: both show reconnecting; restarted: both live and equal to REST", async () => {
    server.kill("SIGKILL");
    await stopped(server);
    await waitForState(a, "reconnecting");
    await waitForState(b, "reconnecting");
    assert.match(await state(a).textContent(), /Reconnecting/);
    ({ child: server } = await startServer({ db, port }));
    // Written before the pages are back: they get it from the resume.
    await rest(base, "POST", "/tasks", { title: "After the restart", project_id: "web", priority: 3 });
    // The pages retry with jittered backoff (at most 10 s apart), possibly through the SSE and
    // polling fallbacks first: allow two full ceilings and then some on a loaded machine.
    await waitForState(a, "live", 2 * WAIT);
    await waitForState(b, "live", 2 * WAIT);
    const truth = Object.fromEntries((await rest(base, "GET", "/tasks?project=web&limit=500")).items.map((t) => [t.id, t.status]));
    assert.equal(Object.keys(truth).length, 4);
    for (const page of [a, b]) {
      await page.waitForFunction(
        (expected) => {
          const shown = Object.fromEntries(
            [...document.querySelectorAll(".card")].map((c) => [c.dataset.id, c.closest(".column").dataset.status]),
          );
          return JSON.stringify(Object.entries(shown).sort()) === JSON.stringify(Object.entries(expected).sort());
        },
        truth,
        { timeout: WAIT },
      );
      assert.deepEqual(await shownTasks(page), truth);
    }
  });

  await t.test("no serious or critical accessibility violation (axe-core)", async () => {
    const axe = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
    // Open every card's dependencies so their controls are checked too.
    await a.evaluate(() => document.querySelectorAll("details.deps").forEach((d) => (d.open = true)));
    await a.evaluate(axe);
    const violations = await a.evaluate(async () => {
      const result = await window.axe.run(document, { resultTypes: ["violations"] });
      return result.violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }));
    });
    assert.deepEqual(violations, []);
  });

  await t.test("screenshots at desktop and phone width; usable at 375 px", async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    // A board as people see it: dependencies folded, one task blocked by another.
    await a.evaluate(() => {
      document.querySelectorAll("details.deps").forEach((d) => (d.open = false));
      document.activeElement?.blur();
    });
    const tasks = (await rest(base, "GET", "/tasks?project=web&limit=500")).items;
    const id = (title) => tasks.find((t) => t.title === title).id;
    await rest(base, "PUT", `/tasks/${id("After the restart")}/dependencies/${id("Offline one")}`);
    await card(a, "After the restart").locator(".blocked-badge", { hasText: "Blocked by “Offline one”" }).waitFor({ timeout: WAIT });
    await a.screenshot({ path: join(ARTIFACTS, "board-desktop.png"), fullPage: true });
    await a.setViewportSize({ width: 375, height: 812 });
    await a.screenshot({ path: join(ARTIFACTS, "board-phone.png"), fullPage: true });
    const overflow = await a.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling at 375 px (overflow ${overflow} px)`);
    assert.deepEqual(A.problems, []);
    assert.deepEqual(B.problems, []);
  });

  await t.test("finishing a task's last dependency tells its assignee it is ready", async () => {
    const tasks = (await rest(base, "GET", "/tasks?project=web&limit=500")).items;
    const find = (title) => tasks.find((t) => t.title === title);
    const after = find("After the restart");
    await rest(base, "PATCH", `/tasks/${after.id}`, { assignee: "bob" });
    await b.locator("#toasts .toast", { hasText: "Assigned to you: “After the restart”" }).waitFor({ timeout: WAIT });
    await rest(base, "PATCH", `/tasks/${find("Offline one").id}`, { status: "done" });
    await b.locator("#toasts .toast", { hasText: "Ready to start: “After the restart” (“Offline one” is done)" }).waitFor({ timeout: LIVE });
    // Everyone's card loses its badge from the event the server logged for it.
    await card(a, "After the restart").locator(".blocked-badge").waitFor({ state: "hidden", timeout: LIVE });
  });

  await t.test("the admin's sign-in link opens the board with the server's pushed numbers, over WebSocket", async () => {
    const admin = await openBoard(adminLink.replace("localhost", "127.0.0.1"));
    const page = admin.page;
    await waitForState(page, "live");
    await page.locator("#admin").waitFor({ state: "visible", timeout: WAIT });
    await page.waitForFunction(() => document.querySelector("#admin-feed").dataset.transport === "websocket", null, { timeout: WAIT });
    // A, B and the admin's two clients (board and dashboard) are connected.
    await page.waitForFunction(() => Number(document.querySelector("#metric-connections output").textContent) >= 4, null, {
      timeout: WAIT,
    });
    // Events flow: the frames' rate shows them (the peak keeps the interval that had them).
    await rest(base, "POST", "/tasks", { title: "Counted on the dashboard", project_id: "web" });
    await page.waitForFunction(() => Number(document.querySelector("#metric-events .peak").dataset.value) > 0, null, { timeout: WAIT });
    await page.waitForFunction(() => Number(document.querySelector("#metric-deliveries .peak").dataset.value) > 0, null, { timeout: WAIT });
    // The second view: one row per node (one node here), its broker state.
    await page.getByRole("tab", { name: "Nodes" }).click();
    const cell = (key) => page.locator(`#admin-nodes td[data-node="local"][data-cell="${key}"]`);
    await cell("broker").waitFor({ timeout: WAIT });
    assert.equal(await cell("broker").textContent(), "none");
    assert.match(await cell("rss").textContent(), /MiB$/);
    assert.equal(await page.locator("#admin-charts").isHidden(), true);
    await page.screenshot({ path: join(ARTIFACTS, "board-admin.png"), fullPage: true });
    assert.deepEqual(admin.problems, []);
    await admin.context.close();
  });

  await A.context.close();
  await B.context.close();
  server.kill("SIGKILL");
  await stopped(server);
});

/** Waits until `condition()` (async) holds, checking every 100 ms; fails after `timeout`. */
async function until(condition, what, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test("degraded to SSE, and after a resume the server cannot honour, the board still converges", async (t) => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  // WebSocket refused (as behind a proxy that breaks upgrades); each room keeps only its last
  // event, compacted every second, so a client that misses a few cannot resume.
  const { child: server } = await startServer({
    db: join(scratch, "fallback.db"),
    port,
    env: { TASKFLOW_DISABLED_TRANSPORTS: "websocket", TASKFLOW_RETENTION_MAX_EVENTS: "1", TASKFLOW_RETENTION_INTERVAL_SECS: "1" },
  });
  await rest(base, "POST", "/projects", { id: "ops", name: "Operations", members: ["carol", "dave"] });
  const carol = (await rest(base, "POST", "/auth/tokens", { user: "carol" })).token;
  const dave = (await rest(base, "POST", "/auth/tokens", { user: "dave" })).token;
  const C = await openBoard(`${base}/#token=${carol}`);
  const D = await openBoard(`${base}/#token=${dave}`);
  const c = C.page;
  const d = D.page;

  await t.test("the indicator says degraded, over Server-Sent Events", async () => {
    await waitForState(c, "degraded");
    await waitForState(d, "degraded");
    assert.equal(await state(c).getAttribute("data-transport"), "sse");
    assert.match(await state(c).textContent(), /Degraded: Server-Sent Events/);
  });

  await t.test("changes, presence and chat still cross over (chat and presence through REST)", async () => {
    await c.locator("#new-title").fill("Rotate the keys");
    await c.getByRole("button", { name: "Add task" }).click();
    await card(d, "Rotate the keys", "todo").waitFor({ timeout: LIVE });
    await c.locator('#presence [data-user="dave"]').waitFor({ timeout: WAIT });
    await d.locator("#chat-text").fill("On it");
    await d.locator("#chat-text").press("Enter");
    await c.locator("#messages .message", { hasText: "On it" }).waitFor({ timeout: LIVE });
  });

  await t.test("a resume from compacted events is not recovered: the board reloads and shows everything once", async () => {
    const reloads = await d.evaluate(() => window.taskflowBoard.reloads);
    await D.context.setOffline(true);
    await waitForState(d, "offline");
    for (const title of ["Renew the certificate", "Patch the kernel", "Check the backups"]) {
      await rest(base, "POST", "/tasks", { title, project_id: "ops" });
    }
    // The chat message is compacted away once later events exist: the log no longer has what
    // Dave missed.
    await until(async () => (await rest(base, "GET", "/projects/ops/messages")).length === 0, "compaction");
    await D.context.setOffline(false);
    await d.waitForFunction((before) => window.taskflowBoard.reloads > before, reloads, { timeout: WAIT });
    for (const title of ["Rotate the keys", "Renew the certificate", "Patch the kernel", "Check the backups"]) {
      await card(d, title, "todo").waitFor({ timeout: WAIT });
      assert.equal(await card(d, title).count(), 1, title);
    }
    await waitForState(d, "degraded");
    assert.deepEqual(C.problems, []);
    assert.deepEqual(D.problems, []);
  });

  await C.context.close();
  await D.context.close();
  server.kill("SIGKILL");
  await stopped(server);
});

test("the admin view forced onto long polling still gets the server's frames", async (t) => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const { child: server, link } = await startServer({
    db: join(scratch, "dashboard-poll.db"),
    port,
    env: { TASKFLOW_DISABLED_TRANSPORTS: "websocket,sse", TASKFLOW_DASHBOARD_INTERVAL_MS: "250" },
  });
  await rest(base, "POST", "/projects", { id: "ops", name: "Operations", members: ["erin"] });
  const admin = await openBoard(link.replace("localhost", "127.0.0.1"));
  const page = admin.page;

  await t.test("the feed says long polling and the table counts the waiting polls", async () => {
    await page.waitForFunction(() => document.querySelector("#admin-feed").dataset.transport === "poll", null, { timeout: WAIT });
    await page.getByRole("tab", { name: "Nodes" }).click();
    await page.locator('#admin-nodes th[data-node="local"]').waitFor({ timeout: WAIT });
    // The board's poll and the dashboard's poll wait at the server.
    await page.waitForFunction(
      () => {
        const cell = document.querySelector('#admin-nodes td[data-node="local"][data-cell="by-transport"]');
        return cell && /^0 \/ 0 \/ [1-9]/.test(cell.textContent);
      },
      null,
      { timeout: WAIT },
    );
  });

  await t.test("events still show on the charts", async () => {
    await page.getByRole("tab", { name: "Charts" }).click();
    await rest(base, "POST", "/tasks", { title: "Polled", project_id: "ops" });
    await page.waitForFunction(() => Number(document.querySelector("#metric-events .peak").dataset.value) > 0, null, { timeout: WAIT });
    assert.deepEqual(admin.problems, []);
  });

  await admin.context.close();
  server.kill("SIGKILL");
  await stopped(server);
});

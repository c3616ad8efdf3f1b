// Collaborative descriptions with the real npm clients: `yjs` documents synced through
// `y-websocket`'s `WebsocketProvider`, unchanged, against the real `taskflow` binary's
// `/ws/docs`. Run by `cargo test` through tests/browser.rs (TASKFLOW_BIN is the binary).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { freePort, startTaskflow } from "./harness.mjs";

const BIN = process.env.TASKFLOW_BIN ?? new URL("../../target/debug/taskflow", import.meta.url).pathname;
const TOKEN = "docs-test-admin";
const WAIT = 30_000;

const scratch = mkdtempSync(join(tmpdir(), "taskflow-docs-"));
const servers = new Set();
const providers = new Set();

after(() => {
  // The provider leaves its awareness (and the awareness's timer) alive; the document's
  // destruction ends both, so the process can exit.
  for (const provider of providers) {
    provider.destroy();
    provider.doc.destroy();
  }
  for (const server of servers) server.kill("SIGKILL");
  rmSync(scratch, { recursive: true, force: true });
});

/** A server of its own, a project with `members`, a task in it, and a token per member. */
async function setup(name, members, description = "") {
  const port = await freePort();
  await startTaskflow({
    bin: BIN,
    db: join(scratch, `${name}.db`),
    port,
    token: TOKEN,
    servers,
    // The random editors below type far faster than people: the per-connection rate limit is
    // raised so that what is tested is convergence, not the limit.
    env: { TASKFLOW_DOCS_MESSAGES_PER_SEC: "5000", TASKFLOW_DOCS_MESSAGES_BURST: "5000" },
  });
  const base = `http://127.0.0.1:${port}`;
  const call = async (method, path, body) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
      body: body && JSON.stringify(body),
    });
    assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.clone().text()}`);
    return response.json();
  };
  await call("POST", "/projects", { id: "p", name: "P", members });
  const task = await call("POST", "/tasks", { title: "together", project_id: "p", description });
  const tokens = {};
  for (const user of members) tokens[user] = (await call("POST", "/auth/tokens", { user })).token;
  return { base, port, task, tokens, call };
}

/** A Yjs document bound to the task's description through y-websocket, as a browser tab does. */
function editor({ port, task, tokens }, user) {
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`ws://127.0.0.1:${port}/ws/docs`, `task:${task.id}`, doc, {
    params: { access_token: tokens[user] },
    WebSocketPolyfill: WebSocket,
    disableBc: true,
  });
  providers.add(provider);
  return { user, doc, text: doc.getText("description"), provider };
}

/** Resolves when `predicate()` holds, checked on every change of `emitters`; fails after WAIT. */
function until(what, predicate, emitters) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!predicate()) return false;
      clearTimeout(timer);
      for (const [emitter, event] of emitters) emitter.off(event, check);
      resolve();
      return true;
    };
    const timer = setTimeout(() => {
      for (const [emitter, event] of emitters) emitter.off(event, check);
      reject(new Error(`timed out waiting for ${what}`));
    }, WAIT);
    for (const [emitter, event] of emitters) emitter.on(event, check);
    check();
  });
}

const synced = (e) => until(`${e.user} to sync`, () => e.provider.synced, [[e.provider, "sync"]]);

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function random(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One random edit: mostly inserts, deletes once the text is long, never past 2,000 chars. */
function randomEdit(e, rand) {
  const length = e.text.length;
  if (length > 0 && (rand() < 0.35 || length > 2000)) {
    const at = Math.floor(rand() * length);
    e.text.delete(at, Math.min(length - at, 1 + Math.floor(rand() * 8)));
  } else {
    const at = Math.floor(rand() * (length + 1));
    const alphabet = "abcdefghij é🎉\n";
    let chunk = "";
    for (let i = 1 + Math.floor(rand() * 5); i > 0; i--) {
      chunk += [...alphabet][Math.floor(rand() * [...alphabet].length)];
    }
    e.text.insert(at, chunk);
  }
}

/** Every editor has the same text, and the server's REST description is that text. */
async function converged(ctx, editors) {
  const emitters = editors.map((e) => [e.doc, "update"]);
  await until("the editors to converge", () => editors.every((e) => e.text.toString() === editors[0].text.toString()), emitters);
  const final = editors[0].text.toString();
  const deadline = Date.now() + WAIT;
  for (;;) {
    const task = await ctx.call("GET", `/tasks/${ctx.task.id}`);
    if ((task.description ?? "") === final) return final;
    assert.ok(Date.now() < deadline, `REST still shows ${JSON.stringify(task.description)?.slice(0, 80)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Each editor makes `ops` random edits, yielding to the event loop between them. */
async function typeAtOnce(editors, ops, seed, { offline } = {}) {
  await Promise.all(
    editors.map(async (e, i) => {
      const rand = random(seed + i);
      for (let n = 0; n < ops; n++) {
        if (offline && offline.editor === e && n === offline.from) e.provider.disconnect();
        if (offline && offline.editor === e && n === offline.to) e.provider.connect();
        randomEdit(e, rand);
        if (n % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
    }),
  );
}

test("two y-websocket clients edit one description concurrently and converge with the server", async () => {
  const ctx = await setup("two", ["ann", "ben"], "start here");
  const editors = [editor(ctx, "ann"), editor(ctx, "ben")];
  await Promise.all(editors.map(synced));
  assert.equal(editors[0].text.toString(), "start here", "the document starts from the description");
  await typeAtOnce(editors, 1500, 1);
  const text = await converged(ctx, editors);
  assert.ok(text.length > 0);
});

test("five clients converge, one of them offline for part of the time", async () => {
  const users = ["u1", "u2", "u3", "u4", "u5"];
  const ctx = await setup("five", users);
  const editors = users.map((u) => editor(ctx, u));
  await Promise.all(editors.map(synced));
  const away = editors[2];
  await typeAtOnce(editors, 600, 100, { offline: { editor: away, from: 100, to: 400 } });
  await until("the offline editor to be back", () => away.provider.wsconnected && away.provider.synced, [
    [away.provider, "sync"],
    [away.provider, "status"],
  ]);
  await converged(ctx, editors);
  // A REST edit reaches every editor too.
  await ctx.call("PATCH", `/tasks/${ctx.task.id}`, { description: "rewritten over REST" });
  await until("the REST edit to arrive", () => editors.every((e) => e.text.toString() === "rewritten over REST"), editors.map((e) => [e.doc, "update"]));
});

test("an editor's cursor reaches the others and vanishes when it disconnects", async () => {
  const ctx = await setup("awareness", ["ann", "ben"], "cursor me");
  const ann = editor(ctx, "ann");
  const ben = editor(ctx, "ben");
  await Promise.all([ann, ben].map(synced));
  const anchor = Y.createRelativePositionFromTypeIndex(ann.text, 3);
  ann.provider.awareness.setLocalState({
    user: { id: "ann", name: "Ann", color: "#e91e63" },
    cursor: { anchor: Y.relativePositionToJSON(anchor), head: Y.relativePositionToJSON(anchor) },
  });
  const annId = ann.doc.clientID;
  const seen = () => ben.provider.awareness.getStates().get(annId);
  await until("Ann's cursor at Ben", () => seen()?.user?.name === "Ann" && seen()?.cursor, [[ben.provider.awareness, "change"]]);
  const at = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(seen().cursor.anchor), ben.doc);
  assert.equal(at.index, 3);
  // Ann's tab goes away without a goodbye: the server removes her state at once, long before
  // the 30 s awareness timeout.
  const started = Date.now();
  ann.provider.ws.terminate?.() ?? ann.provider.ws.close();
  ann.provider.disconnect();
  await until("Ann's cursor to vanish", () => !ben.provider.awareness.getStates().has(annId), [[ben.provider.awareness, "change"]]);
  assert.ok(Date.now() - started < 10_000, "removed by the server, not by the client's timeout");
});

test("strangers are refused at the handshake and deleting the task closes the document with 4404", async () => {
  const ctx = await setup("access", ["ann"], "members only");
  const stranger = (await ctx.call("POST", "/auth/tokens", { user: "zed" })).token;
  const status = await new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${ctx.port}/ws/docs/task:${ctx.task.id}?access_token=${stranger}`);
    // With this listener, `ws` leaves the refused request open: it is ended here, or the
    // process would not exit.
    ws.on("unexpected-response", (request, response) => {
      resolve(response.statusCode);
      response.destroy();
      request.destroy();
    });
    ws.on("error", () => {});
    ws.on("open", () => {
      resolve("open");
      ws.terminate();
    });
  });
  assert.equal(status, 403);
  const ann = editor(ctx, "ann");
  await synced(ann);
  const closed = new Promise((resolve) => ann.provider.on("connection-close", (event) => resolve(event?.code)));
  const response = await fetch(`${ctx.base}/tasks/${ctx.task.id}`, { method: "DELETE", headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(response.status, 204);
  assert.equal(await closed, 4404);
  ann.provider.disconnect();
});

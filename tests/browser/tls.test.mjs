// The live board over HTTPS and WSS in a real headless Chromium, trusting the server's
// certificate by its SPKI hash (the way a private deployment is reached without installing a CA
// into the browser). Run by `cargo test --test browser` (tests/browser.rs), which makes a test CA
// and a server certificate for 127.0.0.1 (rcgen) and passes their folder in TASKFLOW_TLS_DIR; it
// also sets NODE_EXTRA_CA_CERTS to the CA, so this file's own fetch() trusts the server.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { freePort, startTaskflow } from "./harness.mjs";

const BIN = process.env.TASKFLOW_BIN ?? new URL("../../target/debug/taskflow", import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const TLS_DIR = process.env.TASKFLOW_TLS_DIR;
const TOKEN = "tls-test-admin";
const WAIT = 20_000;
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const scratch = mkdtempSync(join(tmpdir(), "taskflow-tls-"));
const servers = new Set();
const browsers = new Set();

after(async () => {
  for (const server of servers) server.kill("SIGKILL");
  for (const browser of browsers) await browser.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: Chromium's pin format. */
function spkiHash(pem) {
  const spki = new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

/** Starts the server with TLS; resolves with it and the board link it printed. */
function startServer(port) {
  const env = { TASKFLOW_TLS_CERT: join(TLS_DIR, "cert.pem"), TASKFLOW_TLS_KEY: join(TLS_DIR, "key.pem") };
  return startTaskflow({ bin: BIN, db: join(scratch, "tls.db"), port, token: TOKEN, env, servers });
}

async function launch(args) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...ARGS, ...args] });
  browsers.add(browser);
  return browser;
}

test("the board over https:// and wss://, its certificate trusted by SPKI hash", async (t) => {
  assert.ok(TLS_DIR, "TASKFLOW_TLS_DIR names the folder with cert.pem and key.pem");
  const port = await freePort();
  const base = `https://127.0.0.1:${port}`;
  const { link } = await startServer(port);

  // The link names the host the server prints (localhost); the certificate covers it and
  // 127.0.0.1.
  const origin = new URL(link);
  await t.test("the printed sign-in link is https://", () => {
    assert.equal(origin.protocol, "https:");
    assert.equal(origin.port, String(port));
  });

  await t.test("without the pin, Chromium refuses the private CA's certificate", async () => {
    const page = await (await launch([])).newPage();
    await assert.rejects(page.goto(`${base}/`), /ERR_CERT_AUTHORITY_INVALID/);
  });

  await t.test("with it, the board goes live over wss:// and shows a change made elsewhere", async () => {
    const pin = spkiHash(readFileSync(join(TLS_DIR, "cert.pem"), "utf8"));
    const browser = await launch([`--ignore-certificate-errors-spki-list=${pin}`]);
    const page = await browser.newPage();
    const sockets = [];
    page.on("websocket", (ws) => sockets.push(ws.url()));
    const problems = [];
    page.on("pageerror", (err) => problems.push(err.message));
    await page.goto(link);
    await page.waitForFunction(() => document.querySelector("#connection").dataset.state === "live", null, { timeout: WAIT });
    assert.equal(new URL(page.url()).protocol, "https:");
    assert.ok(sockets.length > 0 && sockets.every((url) => url.startsWith(`wss://${origin.host}/`)), sockets.join(", "));
    // The server sends HSTS on its TLS answers.
    const response = await fetch(`${base}/`);
    assert.match(response.headers.get("strict-transport-security") ?? "", /max-age=\d+/);
    // A task created over REST (Node trusts the CA) appears on the board live.
    const created = await fetch(`${base}/tasks`, {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ title: "Served over TLS" }),
    });
    assert.equal(created.status, 201, await created.text());
    await page.locator('.card[data-title="Served over TLS"]').waitFor({ timeout: WAIT });
    assert.deepEqual(problems, []);
  });
});

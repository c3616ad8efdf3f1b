// What the browser tests share: a free port, starting the server, and waiting for a child
// process to exit.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { createInterface } from "node:readline";

/** A free TCP port on 127.0.0.1 (so a restarted server can take the same one). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Resolves once `child` has exited (at once if it already has). */
export function stopped(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

/**
 * Starts `bin serve` on 127.0.0.1:`port` with the SQLite file `db`, the admin token `token` and
 * `env`; adds the process to `servers` while it runs. Resolves with it and the board's sign-in
 * link it printed (`http://` or `https://`).
 */
export function startTaskflow({ bin, db, port, token, env = {}, servers }) {
  const child = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--database", `sqlite://${db}`], {
    env: { ...process.env, TASKFLOW_ADMIN_TOKEN: token, TASKFLOW_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  servers.add(child);
  child.once("exit", () => servers.delete(child));
  return new Promise((resolve, reject) => {
    let listening = false;
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      if (line.startsWith("Taskflow listening on ")) listening = true;
      const link = /^\s+(https?:\/\/\S+\/#token=\S+)$/.exec(line);
      if (listening && link) resolve({ child, link: link[1] });
    });
    child.once("exit", (code) => reject(new Error(`taskflow exited with ${code} before listening`)));
  });
}

// What the browser tests share: a free port, and waiting for a child process to exit.
import { createServer } from "node:net";

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

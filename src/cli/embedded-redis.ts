import { spawn, spawnSync } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { createConnection } from "node:net";
import { resolve } from "node:path";
import { DispatchError } from "../shared/errors.js";

export interface EmbeddedRedis {
  url: string;
  close(): Promise<void>;
}

const INSTALL_HINT =
  "redis-server was not found on PATH. Install Redis 7 (Debian/Ubuntu: `sudo apt install redis-server`; " +
  "macOS: `brew install redis`), or set REDIS_URL to a Redis you already run.";

function portInUse(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => (socket.destroy(), done(true)));
    socket.once("error", () => done(false));
  });
}

/**
 * Starts `redis-server` on loopback with AOF (fsync every second) and `noeviction`, its data in
 * `dataDir`. Uses `preferredPort` when free, else the next free port above it.
 */
export async function startEmbeddedRedis(dataDir: string, preferredPort: number): Promise<EmbeddedRedis> {
  if (spawnSync("redis-server", ["--version"]).error) throw new DispatchError(INSTALL_HINT);
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true });
  let port = preferredPort;
  while (await portInUse(port)) port += 1;
  const child = spawn(
    "redis-server",
    [
      "--bind",
      "127.0.0.1",
      "--port",
      String(port),
      "--dir",
      dir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
      "--maxmemory-policy",
      "noeviction",
      "--save",
      "",
      "--protected-mode",
      "yes",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  const deadline = Date.now() + 10_000;
  while (!(await portInUse(port))) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new DispatchError(`redis-server did not start on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  let closing: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    close: () =>
      (closing ??= (async () => {
        if (child.exitCode === null) child.kill("SIGTERM");
        await exited;
      })()),
  };
}

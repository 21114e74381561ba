/**
 * Runs the real `redis-server` binary (from PATH) on 127.0.0.1 for tests, with its own data dir.
 * `kill("SIGKILL")` followed by `start()` restarts it on the same port and dir, so crash and
 * persistence tests can use it (pass `appendonly: true` for AOF with `appendfsync always`).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RedisProcess {
  url: string;
  port: number;
  dir: string;
  /** Signal the server (default SIGTERM) and wait until it has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** (Re)start on the same port and dir; waits until PING answers. No-op if running. */
  start(): Promise<void>;
  /** Idempotent: stops the server and removes the dir if this module created it. */
  close(): Promise<void>;
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      const port = typeof address === "object" && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Sends a raw PING; resolves true on +PONG. */
function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let data = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: Buffer) => {
      data += chunk.toString("utf8");
      if (data.includes("\r\n")) done(data.startsWith("+PONG"));
    });
  });
}

function assertRedisInstalled(): void {
  const probe = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      "redis-server not found on PATH: install Redis (e.g. `apt-get install redis-server`) " +
        "or set REDIS_URL to an existing server.",
    );
  }
}

export async function startRedisServer(
  opts: { appendonly?: boolean; dir?: string; port?: number } = {},
): Promise<RedisProcess> {
  assertRedisInstalled();
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "ocd-redis-")));
  const port = opts.port ?? (await freePort());
  const args = [
    "--bind",
    "127.0.0.1",
    "--port",
    String(port),
    "--dir",
    dir,
    "--save",
    "",
    "--protected-mode",
    "no",
    "--maxmemory-policy",
    "noeviction",
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
    "--logfile",
    join(dir, "redis.log"),
    ...(opts.appendonly ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
  ];

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let closed = false;
  let closing: Promise<void> | undefined;

  async function start(): Promise<void> {
    if (closed) throw new Error("redis: start() after close()");
    if (child) return;
    const proc = spawn("redis-server", args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    proc.stderr?.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    child = proc;
    exited = new Promise<void>((resolve) => {
      proc.once("exit", () => {
        if (child === proc) child = undefined;
        resolve();
      });
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) break;
      if (await ping(port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    proc.kill("SIGKILL");
    await exited;
    throw new Error(`redis-server on port ${port} did not answer PING (dir ${dir}). ${stderr}`.trim());
  }

  async function kill(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const proc = child;
    if (!proc) return;
    proc.kill(signal);
    const force = setTimeout(() => proc.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(force);
  }

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    kill,
    start,
    close() {
      closing ??= (async () => {
        await kill("SIGTERM");
        closed = true;
        if (ownDir) await rm(dir, { recursive: true, force: true, maxRetries: 3 });
      })();
      return closing;
    },
  };
}

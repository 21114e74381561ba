import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Logger } from "../../shared/logger.js";
import { installBudgetGuard } from "./budget-guard-plugin.js";
import { basicAuth } from "./opencode-client.js";
import { ownPids, startReaper, writePids } from "./orphans.js";
import { sandboxed, type SandboxSettings } from "./sandbox.js";

export interface OpencodeServer {
  url: string;
  /** The Authorization header value for every call, or undefined when the server has no password. */
  authorization: string | undefined;
  /** The process ID when this worker spawned the server. */
  pid: number | undefined;
  /** The spawned server's own data directory (removed on close). */
  dataDir?: string;
  /** Where the budget guard plugin reads the guarded sessions (a spawned server's; see budget-guard-plugin.ts). */
  guardDir?: string;
  /** Resolves when a spawned server exits (never, for an attached one). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * Runs `opencode <args>` against this server's data directory (e.g. `import file.json`), for a
   * spawned server; undefined for an attached one.
   */
  runCli?: (args: string[], opts: { cwd: string; signal?: AbortSignal }) => Promise<string>;
  close(): Promise<void>;
}

export interface SpawnOptions {
  bin: string;
  /** This server's own data directory (sessions, logs); created, and removed on close. */
  dataDir: string;
  /** The environment the server inherits (it chooses providers through OPENCODE_CONFIG*). */
  env: NodeJS.ProcessEnv;
  /** Where the user's opencode keeps provider credentials (auth.json), copied into dataDir. */
  userDataHome?: string;
  log: Logger;
  /**
   * opencode's per-step git snapshots of the working directory (for undo). Off by default: on a
   * large directory they cost more than the model call, and a queue does not undo.
   */
  snapshots?: boolean;
  /** Load the budget guard plugin (see budget-guard-plugin.ts). */
  budgetGuard?: boolean;
  startTimeoutMs?: number;
  signal?: AbortSignal;
  /** Run the server under bubblewrap (see sandbox.ts). */
  sandbox?: SandboxSettings;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/**
 * Spawns `opencode serve` on loopback with a fresh password and its own data directory, and
 * resolves once it answers its health check.
 */
export async function spawnOpencodeServer(opts: SpawnOptions): Promise<OpencodeServer> {
  const port = await freePort();
  const password = randomBytes(24).toString("base64url");
  const username = "opencode";
  const dataHome = join(opts.dataDir, "data");
  await mkdir(join(dataHome, "opencode"), { recursive: true });
  if (opts.userDataHome) {
    await copyFile(join(opts.userDataHome, "opencode", "auth.json"), join(dataHome, "opencode", "auth.json")).catch(
      () => undefined,
    );
  }
  const guard = opts.budgetGuard ? await installBudgetGuard(opts.dataDir) : undefined;
  // `opencode export` / `import` (runCli) get no plugin: they make no model call.
  const cliEnv = {
    ...withoutWorkerSecrets(opts.env),
    XDG_DATA_HOME: dataHome,
    ...configOverlay(opts.env, { snapshot: opts.snapshots ?? false }),
  };
  const env = guard
    ? { ...cliEnv, ...configOverlay(opts.env, { snapshot: opts.snapshots ?? false }, { plugin: [guard.plugin] }) }
    : cliEnv;
  const serve = ["serve", "--hostname", "127.0.0.1", "--port", String(port)];
  const run = opts.sandbox
    ? sandboxed(opts.bin, serve, { dataDir: opts.dataDir, settings: opts.sandbox, env })
    : { command: opts.bin, args: serve };
  const child = spawn(run.command, run.args, {
    env: { ...env, OPENCODE_SERVER_PASSWORD: password, OPENCODE_SERVER_USERNAME: username },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: a Ctrl-C meant for the worker must not kill the server under the
    // jobs it lets finish. The reaper (orphans.ts) makes sure it never outlives the worker.
    detached: true,
  });
  let reaper: { stop(): void } | undefined;
  if (child.pid !== undefined) {
    writePids(opts.dataDir, ownPids(child.pid, port));
    reaper = startReaper(child.pid, opts.dataDir);
  }
  const url = `http://127.0.0.1:${port}`;
  const log = opts.log.child({ opencode: url, opencodePid: child.pid });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error) => {
      log.error({ err: error }, "opencode server could not start");
      resolve({ code: null, signal: null });
    });
  });
  pipeLines(child, log);

  const server: OpencodeServer = {
    url,
    authorization: basicAuth(username, password),
    pid: child.pid,
    dataDir: opts.dataDir,
    ...(guard ? { guardDir: guard.guardDir } : {}),
    exited,
    runCli: (args, cliOpts) => runOpencode(opts.bin, args, { env: cliEnv, ...cliOpts }),
    close: once(async () => {
      await stopProcess(child, exited);
      reaper?.stop();
      await rm(opts.dataDir, { recursive: true, force: true }).catch(() => undefined);
    }),
  };
  try {
    await waitHealthy(server, { timeoutMs: opts.startTimeoutMs ?? 60_000, signal: opts.signal, exited });
  } catch (error) {
    await server.close();
    throw error;
  }
  log.info("opencode server is ready");
  return server;
}

/** An opencode server someone else runs; closing it does nothing to it. */
export async function attachOpencodeServer(
  url: string,
  auth: { username: string; password?: string },
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<OpencodeServer> {
  const server: OpencodeServer = {
    url: url.replace(/\/+$/, ""),
    authorization: auth.password ? basicAuth(auth.username, auth.password) : undefined,
    pid: undefined,
    exited: new Promise(() => undefined),
    close: async () => undefined,
  };
  await waitHealthy(server, { timeoutMs: opts.timeoutMs ?? 30_000, signal: opts.signal });
  return server;
}

/** Polls `GET /global/health` until it answers healthy. */
export async function waitHealthy(
  server: Pick<OpencodeServer, "url" | "authorization">,
  opts: { timeoutMs: number; signal?: AbortSignal; exited?: Promise<unknown> },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let dead = false;
  void opts.exited?.then(() => (dead = true));
  let last = "no answer";
  while (Date.now() < deadline) {
    opts.signal?.throwIfAborted();
    if (dead) throw new Error(`opencode server at ${server.url} exited before it was ready`);
    const health = await checkHealth(server, AbortSignal.timeout(2_000));
    if (health.ok) return;
    last = health.reason;
    if (health.fatal) throw new Error(`opencode server at ${server.url}: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`opencode server at ${server.url} not healthy after ${opts.timeoutMs} ms: ${last}`);
}

export async function checkHealth(
  server: Pick<OpencodeServer, "url" | "authorization">,
  signal: AbortSignal,
): Promise<{ ok: true } | { ok: false; fatal: boolean; reason: string }> {
  try {
    const headers: Record<string, string> = server.authorization ? { authorization: server.authorization } : {};
    const response = await fetch(`${server.url}/global/health`, { headers, signal });
    if (response.status === 401)
      return { ok: false, fatal: true, reason: "401 unauthorized (check OPENCODE_SERVER_PASSWORD)" };
    if (!response.ok) return { ok: false, fatal: false, reason: `HTTP ${response.status}` };
    const body = (await response.json()) as { healthy?: boolean };
    return body.healthy ? { ok: true } : { ok: false, fatal: false, reason: "not healthy yet" };
  } catch (error) {
    return { ok: false, fatal: false, reason: (error as Error).message };
  }
}

async function stopProcess(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // The server leads its own process group: signal the group, so the commands its tools started
  // (shells, MCP servers, language servers) go with it.
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      child.kill(signal);
    }
  };
  signalGroup("SIGTERM");
  signalGroup("SIGCONT"); // a stopped (wedged, SIGSTOPped) server gets its SIGTERM only once it runs
  const timer = setTimeout(() => signalGroup("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

function pipeLines(child: ChildProcess, log: Logger): void {
  for (const stream of [child.stdout, child.stderr]) {
    let buffer = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) if (line.trim()) log.debug({ line }, "opencode");
    });
  }
}

export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let promise: Promise<T> | undefined;
  return () => (promise ??= fn());
}

/** Runs the opencode CLI to completion; rejects with its stderr when it fails. */
export function runOpencode(
  bin: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string; signal?: AbortSignal },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      env: opts.env,
      cwd: opts.cwd,
      stdio: ["ignore", "pipe", "pipe"],
      signal: opts.signal,
    });
    const stdout: Buffer[] = [];
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => stdout.push(d));
    child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2_000)));
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0
        ? resolve(Buffer.concat(stdout).toString("utf8"))
        : reject(new Error(`opencode ${args[0]} exited ${code}: ${stderr.trim()}`)),
    );
  });
}

/**
 * Settings laid over the user's opencode configuration through OPENCODE_CONFIG_CONTENT (which
 * opencode merges last), keeping whatever else the user gave there; `append` lists are added to
 * the user's own (plugins).
 */
export function configOverlay(
  env: NodeJS.ProcessEnv,
  overlay: Record<string, unknown>,
  append: Record<string, unknown[]> = {},
): { OPENCODE_CONFIG_CONTENT: string } {
  let content: Record<string, unknown> = {};
  try {
    const parsed: unknown = env.OPENCODE_CONFIG_CONTENT ? JSON.parse(env.OPENCODE_CONFIG_CONTENT) : {};
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) content = parsed as Record<string, unknown>;
  } catch {
    // not JSON: opencode would reject it too; our overlay alone is used
  }
  const appended = Object.fromEntries(
    Object.entries(append).map(([key, items]) => {
      const own = content[key];
      return [key, [...(Array.isArray(own) ? (own as unknown[]) : []), ...items]];
    }),
  );
  return { OPENCODE_CONFIG_CONTENT: JSON.stringify({ ...content, ...overlay, ...appended }) };
}

/**
 * The worker's own secrets stay out of the server's environment: the agent's shell tool inherits
 * it, and a prompt like "print the environment" would put them into a result.
 */
export function withoutWorkerSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(env).filter(
      ([key]) =>
        !/^(REDIS_URL|DISPATCH_|DASHBOARD_|OPENCODE_SERVER_PASSWORD$|OPENCODE_SERVER_USERNAME$|OPENCODE_URL$)/.test(
          key,
        ),
    ),
  );
}

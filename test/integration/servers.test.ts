/**
 * The opencode servers a worker spawns (README "worker"): the start-up sweep of servers whose
 * worker is gone, and a server replaced once its memory passes `--recycle-rss`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningWorker } from "../../src/worker/worker";
import { startOpencodeServer, type OpencodeServer } from "../support/opencode-server";
import { useStack } from "../support/stack";
import { alive, until } from "../support/until";

const WAIT = 60_000;

/** A process that has exited: its pid names no worker any more. */
async function deadPid(): Promise<number> {
  const child = spawn("true");
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid!;
}

describe("a worker's opencode servers", () => {
  const stack = useStack();
  let worker: RunningWorker;
  const children: ChildProcess[] = [];
  let orphan: OpencodeServer;
  /** The directories (and processes) the worker finds under DISPATCH_DATA_DIR when it starts. */
  let found: { gone: string; orphanPid: number; kept: string; owner: number; reused: string; stranger: number };

  const sleeper = () => {
    const child = spawn("sleep", ["600"], { stdio: "ignore" });
    children.push(child);
    return child.pid!;
  };
  const serverDir = async (name: string, pids: { owner: number; server: number; port: number }) => {
    const dir = join(stack.config.dataDir, name);
    await mkdir(join(dir, "data"), { recursive: true });
    await writeFile(join(dir, "pids.json"), JSON.stringify({ ...pids, ownerStartedAt: Date.now() - 60_000 }));
    return dir;
  };

  beforeAll(async () => {
    orphan = await startOpencodeServer({ env: stack.opencode.env, cwd: join(stack.opencode.root, "project") });
    const orphanPid = orphan.proc.pid!;
    // A dead worker's directory with its server still running.
    const gone = await serverDir("worker-gone-1", { owner: await deadPid(), server: orphanPid, port: orphan.port });
    // A live worker's directory, whatever its server.
    const owner = sleeper();
    const kept = await serverDir("worker-alive-1", { owner, server: sleeper(), port: 1 });
    // A dead worker's server pid that now names another program (not `opencode serve` on that port).
    const stranger = sleeper();
    const reused = await serverDir("worker-gone-2", { owner: await deadPid(), server: stranger, port: orphan.port });
    found = { gone, orphanPid, kept, owner, reused, stranger };
    worker = await stack.startWorker({ concurrency: 1, recycle: { rssBytes: 1024 * 1024 } });
  });
  afterAll(async () => {
    children.forEach((child) => child.kill("SIGKILL"));
    await orphan?.stop();
  });

  it("at start-up kills the server of a worker that is gone and removes its directory, and leaves the rest alone", async () => {
    await until("the orphaned server to die", () => !alive(found.orphanPid), 10_000);
    expect(existsSync(found.gone)).toBe(false);
    expect(existsSync(found.reused)).toBe(false);
    expect(alive(found.stranger)).toBe(true);
    expect(existsSync(found.kept)).toBe(true);
    expect(alive(found.owner)).toBe(true);
    expect(existsSync(worker.server().dataDir!)).toBe(true); // its own server's directory is not swept
  });

  it("replaces its server once the server's memory passes the --recycle-rss size (1 MB here), and goes on", async () => {
    const first = worker.server();
    const done = await stack.dispatcher.run({ prompt: "grow the server", model: "fake/echo" }, { timeoutMs: WAIT });
    expect(done).toMatchObject({ state: "completed", attempts: 1 });
    await until("a fresh server", () => worker.server() !== first && worker.server().pid !== undefined, WAIT);
    await until(
      "the old server to exit and its directory to go",
      () => !alive(first.pid!) && !existsSync(first.dataDir!),
      WAIT,
    );
    const after = await stack.dispatcher.run(
      { prompt: "on the fresh server", model: "fake/echo" },
      { timeoutMs: WAIT },
    );
    expect(after).toMatchObject({ state: "completed", text: "echo: on the fresh server", attempts: 1 });
  });
});

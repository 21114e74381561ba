import { DelayedError, WaitingError, type Job } from "bullmq";
import { describe, expect, it, vi } from "vitest";
import { createLogger } from "../../src/shared/logger";
import type { OpencodeServer } from "../../src/worker/server/opencode-server";
import { ServerKeeper } from "../../src/worker/server/server-keeper";

/** A spawned server that exits when `die()` (or close) is called. */
function fakeServer(n: number) {
  let exit!: (info: { code: number | null; signal: NodeJS.Signals | null }) => void;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => (exit = resolve));
  const server: OpencodeServer & { die(): void } = {
    url: `http://127.0.0.1:${4000 + n}`,
    authorization: undefined,
    pid: undefined,
    exited,
    close: async () => exit({ code: 0, signal: null }),
    die: () => exit({ code: null, signal: "SIGKILL" }),
  };
  return server;
}

async function keeperWith(recycleJobs: number, opts: { starting?: () => Promise<void> } = {}) {
  const servers: ReturnType<typeof fakeServer>[] = [];
  const replaced: string[] = [];
  const keeper = await ServerKeeper.start({
    start: async () => {
      if (servers.length > 0) await opts.starting?.();
      const server = fakeServer(servers.length);
      servers.push(server);
      return server;
    },
    spawned: true,
    recycle: { jobs: recycleJobs },
    log: createLogger("silent"),
    onReplaced: (why) => replaced.push(why),
    onFatal: (error) => {
      throw error;
    },
  });
  const cancelled: string[] = [];
  keeper.attach({
    pause: async () => undefined,
    resume: () => undefined,
    cancelJob: (jobId, reason) => void cancelled.push(`${jobId}:${reason}`),
  });
  return { keeper, servers, replaced, cancelled };
}

const job = (id: string) => ({ id }) as Job;
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe("the keeper of a worker's opencode server", () => {
  it("counts toward --recycle-jobs only the jobs that ran, not those sent back to the queue", async () => {
    const { keeper, servers, replaced } = await keeperWith(2);
    const bounce = keeper.wrap(async (j) => {
      throw j.id === "delayed" ? new DelayedError() : new WaitingError();
    });
    for (let i = 0; i < 5; i++) {
      await expect(bounce(job("delayed"))).rejects.toBeInstanceOf(DelayedError);
      await expect(bounce(job("handed-back"))).rejects.toBeInstanceOf(WaitingError);
    }
    await settle();
    expect(replaced).toEqual([]);
    const run = keeper.wrap(async () => "done");
    await run(job("a"));
    const fail = keeper.wrap(async () => {
      throw new Error("a real failure");
    });
    await expect(fail(job("b"))).rejects.toThrow("a real failure");
    await settle();
    expect(replaced).toEqual(["recycled"]);
    expect(servers).toHaveLength(2);
    await keeper.close();
  });

  it("when the server dies, aborts only the jobs running on it, not those waiting for the new one", async () => {
    let started!: () => void;
    const { keeper, servers, cancelled, replaced } = await keeperWith(0, {
      starting: () => new Promise<void>((resolve) => (started = resolve)),
    });
    const release = new Map<string, () => void>();
    const run = keeper.wrap((j) => new Promise<string>((resolve) => release.set(j.id!, () => resolve(j.id!))));
    const a = run(job("a"));
    await settle();
    servers[0]!.die();
    await settle();
    expect(cancelled).toEqual(["a:server-died"]);
    const b = run(job("b")); // fetched just before intake paused: waits for the new server
    await settle();
    expect(release.has("b")).toBe(false);
    started();
    await vi.waitFor(() => expect(release.has("b")).toBe(true));
    expect(replaced).toEqual(["died"]);
    expect(cancelled).toEqual(["a:server-died"]);
    // "a" is still unwinding when the new server dies too: only "b" ran on that one.
    servers[1]!.die();
    await settle();
    expect(cancelled).toEqual(["a:server-died", "b:server-died"]);
    started();
    release.get("a")!();
    release.get("b")!();
    await expect(Promise.all([a, b])).resolves.toEqual(["a", "b"]);
    await keeper.close();
  });
});

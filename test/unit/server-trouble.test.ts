/**
 * The keeper hears a job's report that its aborted session stayed busy, and recycles the server
 * once the jobs running on it are done (the stuck session's commands go with the old server).
 * (The real stall-and-wedge path is test/integration/wedged-server.test.ts; opencode 1.18 lets an
 * aborted session go idle, so this report is driven by hand here.)
 */
import type { Job } from "bullmq";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/shared/logger";
import { reportTrouble } from "../../src/worker/server/event-hub";
import type { OpencodeServer } from "../../src/worker/server/opencode-server";
import { ServerKeeper } from "../../src/worker/server/server-keeper";

describe("an aborted session that stays busy", () => {
  it("gets its server recycled once the running jobs are done", async () => {
    const started: OpencodeServer[] = [];
    const replaced: string[] = [];
    const keeper = await ServerKeeper.start({
      start: async () => {
        const server: OpencodeServer = {
          url: `http://127.0.0.1:${5000 + started.length}`,
          authorization: undefined,
          pid: undefined,
          exited: new Promise(() => undefined),
          close: async () => undefined,
        };
        started.push(server);
        return server;
      },
      spawned: true,
      recycle: { jobs: 0 },
      log: createLogger("silent"),
      onReplaced: (why) => replaced.push(why),
      onFatal: (error) => {
        throw error;
      },
    });
    keeper.attach({ pause: async () => undefined, resume: () => undefined, cancelJob: () => undefined });
    let finish!: () => void;
    const running = keeper.wrap(() => new Promise<void>((resolve) => (finish = resolve)))({ id: "other" } as Job);
    reportTrouble(keeper.client(), "stuck");
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(replaced).toEqual([]); // the other job is still running
    finish();
    await running;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(replaced).toEqual(["recycled"]);
    expect(keeper.server()).toBe(started[1]);
    await keeper.close();
  });
});

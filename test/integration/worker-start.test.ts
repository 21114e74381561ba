/**
 * A worker whose start fails half-way leaves nothing behind: its opencode server, its BullMQ
 * worker, its control-channel subscriber and its Redis connections are all closed (the same
 * teardown list as close() runs), and the error is the start's.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { createWorkerMetrics } from "../../src/worker/queue/metrics";
import { startWorker } from "../../src/worker/worker";
import { queueKeys } from "../../src/shared/keys";
import { withQueue } from "../support/queue";
import { useStack } from "../support/stack";
import { until } from "../support/until";

/** The opencode servers this test process has spawned and that still run. */
function opencodeChildren(): string[] {
  const out = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(process.pid)], { encoding: "utf8" });
  return out.split("\n").filter((line) => /opencode/.test(line) && /\bserve\b/.test(line));
}

describe("a worker whose start fails", () => {
  const stack = useStack();

  const controlSubscribers = () =>
    withQueue(stack, async (_queue, redis) => {
      const [, count] = (await redis.pubsub("NUMSUB", queueKeys(stack.queue).control)) as [string, number];
      return count;
    });

  it("while running, is seen by the probes this test uses", async () => {
    const worker = await stack.startWorker({ concurrency: 1 });
    try {
      expect(await controlSubscribers()).toBe(1);
      expect(await withQueue(stack, (queue) => queue.getWorkers())).not.toHaveLength(0);
      expect(opencodeChildren()).not.toHaveLength(0);
    } finally {
      await worker.close({ graceMs: 0 });
    }
    expect(await controlSubscribers()).toBe(0);
  });

  it("closes everything it had started, and rejects with its error", async () => {
    await until("no opencode server left from the last test", () => opencodeChildren().length === 0, 20_000);
    // The last step of a start: everything else (server, worker, control, webhooks) is up by then.
    const metrics = {
      ...createWorkerMetrics(),
      attach: () => {
        throw new Error("metrics port taken");
      },
    };
    const starting = startWorker({
      config: stack.config,
      concurrency: 1,
      metrics,
      serverEnv: { ...process.env, ...stack.opencode.env },
    });
    await expect(starting).rejects.toThrow("metrics port taken");
    expect(await controlSubscribers()).toBe(0);
    expect(await withQueue(stack, (queue) => queue.getWorkers())).toHaveLength(0);
    await until("its opencode server to be gone", () => opencodeChildren().length === 0, 20_000);
  });
});

/**
 * Enqueueing many tasks on a real Redis (no worker): chunks are written two at a time, and what
 * depends on order — a key given twice, a follow-up of a job in an earlier chunk — still holds.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Dispatcher } from "../../src/producer/dispatcher";
import { loadConfig } from "../../src/shared/config";
import { NotFoundError } from "../../src/shared/errors";
import { queueKeys } from "../../src/shared/keys";
import { BatchInputError } from "../../src/producer/batch/submit";
import { openQueue } from "../../src/shared/queue";
import { closeRedis, connectRedis } from "../../src/shared/redis";
import type { JobPayload } from "../../src/shared/task";

const redisUrl = inject("redisUrl");
let redis: Awaited<ReturnType<typeof connectRedis>>;

beforeAll(async () => {
  redis = await connectRedis(redisUrl, "producer");
});
afterAll(async () => {
  await closeRedis(redis);
});

/** Runs a test on a queue of its own, then closes the dispatcher and removes the queue. */
async function withFreshQueue(
  test: (dispatcher: Dispatcher, queue: ReturnType<typeof openQueue>) => Promise<void>,
): Promise<void> {
  const name = `enq-${randomUUID().slice(0, 8)}`;
  const dispatcher = new Dispatcher({ config: loadConfig({ REDIS_URL: redisUrl, DISPATCH_QUEUE: name }) });
  const queue = openQueue(name, redis);
  try {
    await test(dispatcher, queue);
  } finally {
    await dispatcher.close();
    await queue.obliterate({ force: true });
    await queue.close();
  }
}

async function total(queue: ReturnType<typeof openQueue>): Promise<number> {
  const counts = await queue.getJobCounts("waiting", "delayed", "prioritized", "waiting-children");
  return Object.values(counts).reduce((a, b) => a + (b ?? 0), 0);
}

describe("enqueueMany over several chunks", () => {
  it("adds every task once, reports a key repeated in a later chunk as duplicate, and places a follow-up after its job", async () => {
    await withFreshQueue(async (dispatcher, queue) => {
      const tasks = Array.from({ length: 3_500 }, (_, i) => ({ prompt: `task ${i}`, id: `k-${i}` }));
      tasks[2_100] = { prompt: "same key as task 10", id: "k-10" }; // chunk 3 repeats a key of chunk 1
      tasks[3_200] = { prompt: "follow-up", id: "k-follow", continue: "k-20" } as (typeof tasks)[number];
      tasks[21] = { prompt: "follow-up in the same chunk", id: "k-21", continue: "k-20" } as (typeof tasks)[number];
      const receipts = await dispatcher.enqueueMany(tasks);
      expect(receipts).toHaveLength(3_500);
      expect(receipts[2_100]).toEqual({ jobId: "k-10", duplicate: true });
      expect(receipts.filter((r) => r.duplicate)).toHaveLength(1);
      expect(await total(queue)).toBe(3_499);
      expect(await (await dispatcher.batch(receipts.batchId)).status()).toMatchObject({
        members: 3_499,
        complete: true,
        counts: { queued: 3_499 },
      });
      expect((await queue.getJob("k-10"))!.data.prompt).toBe("task 10"); // the first one wins
      const follow = (await queue.getJob("k-follow"))!.data as JobPayload;
      expect(((await queue.getJob("k-21"))!.data as JobPayload).after).toBe("k-20");
      expect(follow.after).toBe("k-21"); // the tail of k-20's thread by then
      expect(follow.thread).toBe("job:k-20");
      // Enqueued again: all duplicates, nothing added.
      const again = await dispatcher.enqueueMany(tasks.slice(0, 2_500));
      expect(again.every((r) => r.duplicate)).toBe(true);
      expect(await total(queue)).toBe(3_499);
    });
  });

  it("rejects a follow-up of an unknown job (or of a later task) before enqueueing anything", async () => {
    await withFreshQueue(async (dispatcher, queue) => {
      const tasks: { prompt: string; id?: string; continue?: string }[] = Array.from({ length: 2_500 }, (_, i) => ({
        prompt: `task ${i}`,
      }));
      tasks[2_400] = { prompt: "follow-up", continue: "no-such-job" };
      tasks[2_410] = { prompt: "follow-up of a later task", continue: "later" };
      tasks[2_420] = { prompt: "later", id: "later" };
      const error = await dispatcher.enqueueMany(tasks).catch((e: unknown) => e as Error);
      expect(error).toBeInstanceOf(NotFoundError);
      expect((error as Error).message).toBe(
        'tasks[2400].continue: no job with ID "no-such-job"\ntasks[2410].continue: no job with ID "later"',
      );
      expect(await total(queue)).toBe(0);
      expect(await redis.keys(`${queueKeys(dispatcher.queueName).batch("")}*`)).toEqual([]); // no batch begun either
    });
  });
});

describe("a batch whose jobs were removed before they ran", () => {
  it("counts them failed (Missing) and its wait ends instead of waiting for ever", async () => {
    await withFreshQueue(async (dispatcher, queue) => {
      const handle = await dispatcher.submitBatch([{ prompt: "a" }, { prompt: "b" }, { prompt: "c" }], { id: "gone" });
      await (await queue.getJob("gone-2"))!.remove();
      expect((await handle.status()).counts).toEqual({ queued: 2, running: 0, completed: 0, failed: 1 });
      await (await queue.getJob("gone-1"))!.remove();
      await (await queue.getJob("gone-3"))!.remove();
      const summary = await handle.wait({ timeoutMs: 10_000 });
      expect(summary).toMatchObject({ total: 3, completed: 0, failed: 3 });
      expect(summary.failures.map((f) => [f.line, f.error?.name])).toEqual([1, 2, 3].map((line) => [line, "Missing"]));
    });
  });
});

describe("submitBatch over several chunks", () => {
  it("enqueues every line once, chains a follow-up of an earlier chunk, and adds nothing when submitted again", async () => {
    await withFreshQueue(async (dispatcher, queue) => {
      const lines: { prompt: string; id?: string; continue?: string }[] = Array.from({ length: 450 }, (_, i) => ({
        prompt: `line ${i + 1}`,
      }));
      lines[4] = { prompt: "root", id: "root-job" };
      lines[5] = { prompt: "follow-up in the same chunk", id: "near-job", continue: "root-job" };
      lines[399] = { prompt: "follow-up", id: "follow-job", continue: "root-job" };
      const progress: number[] = [];
      const handle = await dispatcher.submitBatch(lines, {
        id: "chunky",
        chunkSize: 100,
        onEnqueued: (p) => progress.push(p.processed),
      });
      expect(handle.receipt).toMatchObject({ total: 450, enqueued: 450, duplicates: 0 });
      expect(progress.at(-1)).toBe(450);
      expect(await total(queue)).toBe(450);
      expect(await queue.getJob("chunky-1")).toBeTruthy();
      expect(((await queue.getJob("near-job"))!.data as JobPayload).after).toBe("root-job");
      expect(((await queue.getJob("follow-job"))!.data as JobPayload).after).toBe("near-job");
      const again = await dispatcher.submitBatch(lines, { id: "chunky", chunkSize: 100 });
      expect(again.receipt).toMatchObject({ total: 450, enqueued: 0, duplicates: 450 });
      expect(await total(queue)).toBe(450);
    });
  });

  it("rejects a line continuing an unknown job with its line number, or leaves it out with skipInvalid", async () => {
    await withFreshQueue(async (dispatcher, queue) => {
      const lines: { prompt: string; continue?: string }[] = Array.from({ length: 250 }, (_, i) => ({
        prompt: `line ${i + 1}`,
      }));
      lines[209] = { prompt: "follow-up", continue: "no-such-job" };
      lines[219] = { prompt: "follow-up of line 3", continue: "fu-3" }; // a derived ID of an earlier line
      lines[229] = { prompt: "follow-up of line 240", continue: "fu-240" }; // a later line: not yet there
      lines[244] = { prompt: "follow-up of line 230", continue: "fu-230" }; // a line left out
      const error = await dispatcher.submitBatch(lines, { id: "fu", chunkSize: 100 }).catch((e: unknown) => e as Error);
      expect(error).toBeInstanceOf(BatchInputError);
      expect((error as BatchInputError).invalidLines).toEqual([
        {
          line: 210,
          error: 'continue: no job with ID "no-such-job" (neither in the queue nor an earlier line of the batch)',
        },
        {
          line: 230,
          error: 'continue: no job with ID "fu-240" (neither in the queue nor an earlier line of the batch)',
        },
        { line: 245, error: 'continue: line 230 ("fu-230") is left out' },
      ]);
      expect(await total(queue)).toBe(0);
      const handle = await dispatcher.submitBatch(lines, { id: "fu", chunkSize: 100, skipInvalid: true });
      expect(handle.receipt).toMatchObject({ total: 247, enqueued: 247, invalid: 3 });
      expect(await total(queue)).toBe(247);
      expect(await queue.getJob("fu-210")).toBeUndefined();
      expect(((await queue.getJob("fu-220"))!.data as JobPayload).after).toBe("fu-3");
    });
  });
});

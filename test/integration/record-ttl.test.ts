/**
 * Every record has the configured TTL, also those a producer writes: a cancel's record and kept
 * task, a retry's re-queued record and its run count expire as the workers' records do
 * (DISPATCH_RESULT_TTL, which every worker publishes for the queue's producers).
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queueKeys } from "../../src/shared/keys";
import { retriesKey } from "../../src/shared/webhook";
import type { RunningWorker } from "../../src/worker/worker";
import { startStack, type Stack } from "../support/stack";

const TTL = 2 * 3_600_000;

describe("records a producer writes expire like the workers' records", () => {
  let stack: Stack;
  let worker: RunningWorker;
  let redis: Redis;
  /** The key's remaining time to live, ms (-1: none). */
  const ttlOf = (key: string) => redis.pttl(key);
  const expectConfiguredTtl = async (key: string) => {
    const left = await ttlOf(key);
    expect(left, key).toBeGreaterThan(TTL - 60_000);
    expect(left, key).toBeLessThanOrEqual(TTL);
  };

  beforeAll(async () => {
    stack = await startStack({ configEnv: { DISPATCH_RESULT_TTL: "2h" } });
    worker = await stack.startWorker({ concurrency: 1 });
    redis = new Redis(stack.redisUrl);
  });
  afterAll(async () => {
    redis?.disconnect();
    await stack?.close();
  });

  it("cancel and retry write records, kept tasks and run counts with the TTL", async () => {
    const keys = queueKeys(stack.queue);
    const failed = await stack.dispatcher.run({ prompt: "refused [[status:401]]" }, { timeoutMs: 120_000 });
    expect(failed.state).toBe("failed");
    await expectConfiguredTtl(keys.result(failed.jobId)); // the worker's own record

    const later = await stack.dispatcher.enqueue({ prompt: "later", delay: 3_600_000 });
    expect((await stack.dispatcher.cancel(later.jobId)).outcome).toBe("removed");
    await expectConfiguredTtl(keys.result(later.jobId));
    await expectConfiguredTtl(keys.taskCopy(later.jobId));

    // No worker runs the re-queued jobs, so what the test reads is what the producer wrote.
    await worker.close({ graceMs: 0 });
    expect(await stack.dispatcher.retry(failed.jobId)).toMatchObject({ how: "retried" });
    expect((await stack.dispatcher.status(failed.jobId)).result?.state).toBe("waiting");
    await expectConfiguredTtl(keys.result(failed.jobId));
    await expectConfiguredTtl(retriesKey(stack.queue, failed.jobId));
    expect(await stack.dispatcher.retry(later.jobId)).toMatchObject({ how: "requeued" });
    await expectConfiguredTtl(keys.result(later.jobId));
    await expectConfiguredTtl(retriesKey(stack.queue, later.jobId));
  });
});

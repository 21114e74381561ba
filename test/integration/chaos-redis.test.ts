/**
 * Redis (AOF, appendfsync always) killed with SIGKILL and restarted mid-batch: every job enqueued
 * before completes, none is lost, and the producer and the worker reconnect on their own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedisServer, type RedisProcess } from "../support/redis";
import { useStack } from "../support/stack";
import { until } from "../support/until";

const WAIT = 150_000;

describe("Redis killed and restarted mid-batch", () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await startRedisServer({ appendonly: true });
  });
  afterAll(async () => {
    await redis?.close();
  });
  const stack = useStack(() => ({ redisUrl: redis.url, worker: { concurrency: 2 } }));
  // Runs before the stack's close (afterAll hooks run in reverse).
  afterAll(async () => {
    await redis?.start().catch(() => undefined); // so the stack can clean its keys
  }, 180_000);

  it("completes every job enqueued before the crash, and the same producer enqueues after it", async () => {
    const tasks = Array.from({ length: 8 }, (_, i) => ({
      prompt: `[[delay:400]] persisted ${i}`,
      model: "fake/echo",
      id: `persisted-${i}`,
    }));
    const receipts = await stack.dispatcher.enqueueMany(tasks);
    expect(receipts.every((r) => !r.duplicate)).toBe(true);
    // Mid-batch: some answered, the rest queued or running.
    const deadline = Date.now() + WAIT;
    while (stack.fake.calls("persisted") < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(stack.fake.calls("persisted")).toBeGreaterThanOrEqual(2);

    await redis.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 1_500));
    // The producer fails fast while Redis is away (no offline queue, no waiting for a reconnect).
    const asked = Date.now();
    await expect(stack.dispatcher.status("persisted-0")).rejects.toThrow();
    expect(Date.now() - asked).toBeLessThan(500);
    await redis.start();
    // The same producer reconnects in the background: calls work again without a new Dispatcher.
    await until(
      "the producer's calls to work again",
      () =>
        stack.dispatcher.status("persisted-0").then(
          () => true,
          () => false,
        ),
      30_000,
    );

    const records = await Promise.all(receipts.map(({ jobId }) => stack.dispatcher.wait(jobId, { timeoutMs: WAIT })));
    for (const [i, record] of records.entries()) {
      expect(record, record.jobId).toMatchObject({
        jobId: `persisted-${i}`,
        state: "completed",
        text: `echo: [[delay:400]] persisted ${i}`,
      });
    }
    for (let i = 0; i < tasks.length; i++) expect(stack.fake.calls(`persisted ${i}`)).toBeGreaterThanOrEqual(1);

    const after = await stack.dispatcher.run({ prompt: "after the restart", model: "fake/echo" }, { timeoutMs: WAIT });
    expect(after).toMatchObject({ state: "completed", text: "echo: after the restart", worker: stack.worker.id });
  }, 400_000);
});

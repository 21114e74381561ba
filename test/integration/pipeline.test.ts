import { describe, expect, it } from "vitest";
import { withQueue } from "../support/queue";
import { useStack } from "../support/stack";

describe("dispatch pipeline on real Redis and a real opencode server", () => {
  const stack = useStack({ worker: { concurrency: 2 } });

  it("runs a prompt and stores the answer with its session ID", async () => {
    const { jobId, duplicate } = await stack.dispatcher.enqueue({
      prompt: "hello there",
      model: "fake/echo",
      title: "t",
    });
    expect(duplicate).toBe(false);
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: 120_000 });
    expect(record).toMatchObject({
      jobId,
      state: "completed",
      text: "echo: hello there",
      model: "fake/echo",
      attempts: 1,
      error: null,
    });
    expect(record.sessionId).toMatch(/^ses_/);
    expect(record.tokens!.total).toBeGreaterThan(0);
    expect(record.worker).toBe(stack.worker.id);
    expect(Date.parse(record.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(record.startedAt!));
    expect(stack.fake.calls("hello there")).toBe(1);
  });

  it("keeps the result after BullMQ has removed the job", async () => {
    const { jobId } = await stack.dispatcher.enqueue({ prompt: "remember me", model: "fake/echo" });
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: 120_000 });
    await withQueue(stack, async (queue) => {
      await (await queue.getJob(jobId))!.remove();
      expect(await queue.getJob(jobId)).toBeUndefined();
    });
    expect(await stack.dispatcher.result(jobId)).toEqual(record);
    expect((await stack.dispatcher.status(jobId)).state).toBe("completed");
  });

  it("fails a job whose provider answers 401, with the provider's message, after one attempt", async () => {
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "secret [[status:401]]",
      model: "fake/echo",
      attempts: 3,
    });
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: 120_000 });
    expect(record.state).toBe("failed");
    expect(record.attempts).toBe(1);
    expect(record.error).toMatchObject({ name: "APIError", statusCode: 401, retryable: false });
    expect(record.error!.message).toContain("fake error 401");
    expect(record.text).toBeNull();
    expect(stack.fake.calls("secret")).toBe(1);
  });

  it("a single 500 is retried by opencode itself, within the job's first attempt", async () => {
    // DISPATCH_PROVIDER_RETRIES (default 2) of opencode's own retries are let run: one 500, then
    // the answer, both inside attempt 1; the queue's retry (a second attempt) is not needed.
    stack.fake.script({ status: 500 });
    const { jobId } = await stack.dispatcher.enqueue({ prompt: "flaky", model: "fake/echo", attempts: 3 });
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: 55_000 });
    expect(record).toMatchObject({ state: "completed", text: "echo: flaky", attempts: 1, error: null });
    expect(stack.fake.calls("flaky")).toBe(2);
  });

  it("rejects invalid tasks naming the field, enqueueing nothing", async () => {
    const before = await stack.dispatcher.enqueue({ prompt: "x", model: "fake/echo", delay: 3_600_000 });
    await expect(stack.dispatcher.enqueue({ prompt: "  " })).rejects.toThrow(/prompt: must not be empty/);
    await expect(stack.dispatcher.enqueue({ prompt: "x", model: "nomodel" })).rejects.toThrow(
      /model: must be of the form/,
    );
    await expect(
      stack.dispatcher.enqueueMany([{ prompt: "ok" }, { prompt: "ok", colour: "red" } as never]),
    ).rejects.toThrow(/tasks\[1\]\.: unknown field "colour"|unknown field "colour"/);
    await withQueue(stack, async (queue) => {
      const counts = await queue.getJobCounts("waiting", "delayed", "prioritized");
      expect((counts.waiting ?? 0) + (counts.prioritized ?? 0)).toBe(0);
      expect(counts.delayed).toBe(1); // only the valid delayed job from the start
      await (await queue.getJob(before.jobId))!.remove();
    });
  });

  it("enqueueMany returns the receipts in order and their batch: wait() with progress and every result", async () => {
    const many = await stack.dispatcher.enqueueMany([
      { prompt: "many one", model: "fake/echo" },
      { prompt: "many two [[status:401]]", model: "fake/echo" },
      { prompt: "many three", model: "fake/echo", id: "many-three" },
    ]);
    expect(many.map((r) => r.duplicate)).toEqual([false, false, false]);
    expect(many[2]!.jobId).toBe("many-three");
    expect(many.batchId).toMatch(/^many-/);
    const results = new Map<number, string>();
    let progressEvents = 0;
    many.on("result", (record, line) => results.set(line, `${record.jobId}:${record.state}`));
    many.on("progress", () => (progressEvents += 1));
    const summary = await many.wait({ timeoutMs: 120_000, progressMs: 50 });
    expect(summary).toMatchObject({ batchId: many.batchId, total: 3, completed: 2, failed: 1 });
    expect(summary.failures).toEqual([expect.objectContaining({ jobId: many[1]!.jobId, line: 2 })]);
    expect([...results.entries()].sort(([a], [b]) => a - b)).toEqual([
      [1, `${many[0]!.jobId}:completed`],
      [2, `${many[1]!.jobId}:failed`],
      [3, "many-three:completed"],
    ]);
    expect(progressEvents).toBeGreaterThan(0);
    // The batch is there for status and wait by its ID, like a submitted batch.
    expect((await (await stack.dispatcher.batch(many.batchId)).status()).counts).toEqual({
      queued: 0,
      running: 0,
      completed: 2,
      failed: 1,
    });
    // Again with a key already known: reported duplicate, still a member of the new batch.
    const again = await stack.dispatcher.enqueueMany([{ prompt: "many three", model: "fake/echo", id: "many-three" }], {
      batchId: "many-again",
    });
    expect(again.map((r) => r.duplicate)).toEqual([true]);
    expect(await again.wait({ timeoutMs: 10_000 })).toMatchObject({ batchId: "many-again", total: 1, completed: 1 });
  });

  it("enqueues a job with an idempotency key only once", async () => {
    const first = await stack.dispatcher.enqueue({ prompt: "once", model: "fake/echo", id: "key-once" });
    const second = await stack.dispatcher.enqueue({ prompt: "once", model: "fake/echo", id: "key-once" });
    expect(first).toEqual({ jobId: "key-once", duplicate: false });
    expect(second).toEqual({ jobId: "key-once", duplicate: true });
    await stack.dispatcher.wait("key-once", { timeoutMs: 120_000 });
    const third = await stack.dispatcher.enqueue({ prompt: "once", model: "fake/echo", id: "key-once" });
    expect(third.duplicate).toBe(true);
    expect(stack.fake.calls("once")).toBe(1);
  });
});

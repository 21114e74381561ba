/**
 * Chaos on one worker (in this process, real Redis, real `opencode serve`, fake model): the
 * opencode server killed mid-job, a running job cancelled from the CLI, a poisoned payload,
 * cancel/retry/list of queued jobs, and a server recycled after N jobs.
 */
import { describe, expect, it } from "vitest";
import { ResultStore } from "../../src/shared/result-store";
import { createClient } from "../../src/worker/server/opencode-client";
import { runCli } from "../support/cli";
import { withQueue } from "../support/queue";
import { useStack } from "../support/stack";
import { alive, until } from "../support/until";

/** The machine running the suite may be shared and loaded: a cold opencode prompt can take 30 s. */
const WAIT = 120_000;
const TEST = 240_000;

describe("chaos on one worker", () => {
  const stack = useStack({ worker: { concurrency: 3 } });

  it(
    "the opencode server killed mid-job: the server is restarted and the job completes on a retry",
    async () => {
      const { jobId } = await stack.dispatcher.enqueue({
        prompt: "[[delay:2500]] survive the crash",
        model: "fake/echo",
      });
      await until("the model call", () => stack.fake.calls("survive the crash") >= 1);
      const first = stack.worker.server().pid!;
      process.kill(first, "SIGKILL");
      const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
      expect(record).toMatchObject({ state: "completed", text: "echo: [[delay:2500]] survive the crash", attempts: 2 });
      expect(stack.worker.server().pid).not.toBe(first);
      expect(alive(first)).toBe(false);
      expect(stack.fake.calls("survive the crash")).toBe(2);
    },
    TEST,
  );

  it(
    "a job BullMQ fails for stalling too often gets its final record; the model is never asked",
    async () => {
      const { jobId } = await stack.dispatcher.enqueue({
        prompt: "stalled too often",
        model: "fake/echo",
        delay: 1_500,
      });
      await withQueue(stack, async (queue, redis) => {
        // What BullMQ's stalled check leaves on a job past its stall limit (moveStalledJobsToWait):
        // the next worker to fetch it fails it without running it.
        await redis.hset(queue.toKey(jobId), "defa", "job stalled more than allowable limit");
        const store = new ResultStore(redis, stack.queue);
        const record = await until("the final record", async () => {
          const stored = await store.get(jobId);
          return stored?.state === "failed" ? stored : undefined;
        });
        expect(record.error).toMatchObject({ name: "Stalled", retryable: false });
        expect(record.error!.message).toContain("job stalled more than allowable limit");
        expect(record.finishedAt).not.toBeNull();
        expect(await stack.dispatcher.wait(jobId, { timeoutMs: WAIT })).toMatchObject({
          state: "failed",
          error: { name: "Stalled" },
        });
        expect(stack.fake.calls("stalled too often")).toBe(0);
        await store.close();
      });
    },
    TEST,
  );

  it(
    "cancel of a running job aborts its opencode session and fails it Cancelled, quickly",
    async () => {
      const { jobId } = await stack.dispatcher.enqueue({
        prompt: "[[hang]] cancel me",
        model: "fake/echo",
        attempts: 3,
      });
      await until("the hanging model call", () => stack.fake.calls("cancel me") >= 1);
      const sessionId = await until(
        "the session",
        async () => (await stack.dispatcher.status(jobId)).result?.sessionId ?? undefined,
      );
      const client = createClient(stack.worker.server());
      const statusOf = async () => ((await client.session.status()).data ?? {})[sessionId]?.type ?? "idle";
      expect(await statusOf()).toBe("busy");

      const started = Date.now();
      const run = await runCli(["cancel", jobId], { env: stack.childEnv });
      expect(run.stderr).toBe("");
      expect(run.stdout).toContain(`job ${jobId} cancelled (its session was aborted)`);
      expect(run.code).toBe(0);
      expect(Date.now() - started).toBeLessThan(20_000);

      const record = await stack.dispatcher.result(jobId);
      expect(record).toMatchObject({ state: "failed", attempts: 1, error: { name: "Cancelled", retryable: false } });
      await until("the session to stop", async () => (await statusOf()) !== "busy", 30_000);
      expect(stack.fake.calls("cancel me")).toBe(1); // not retried

      const again = await runCli(["cancel", jobId], { env: stack.childEnv });
      expect(again.code).toBe(6);
      expect(again.stderr).toMatch(/has already failed; there is nothing to cancel/);
    },
    TEST,
  );

  it(
    "a poisoned payload fails with the schema error while other jobs carry on",
    async () => {
      await withQueue(stack, async (queue) => {
        await queue.add("dispatch", { prompt: 42, colour: "red" }, { jobId: "poisoned", attempts: 3 });
      });
      const good = await stack.dispatcher.enqueue({ prompt: "still fine", model: "fake/echo" });
      const [poisoned, fine] = await Promise.all([
        stack.dispatcher.wait("poisoned", { timeoutMs: WAIT }),
        stack.dispatcher.wait(good.jobId, { timeoutMs: WAIT }),
      ]);
      expect(poisoned).toMatchObject({
        state: "failed",
        attempts: 1,
        error: { name: "InvalidPayload", retryable: false },
      });
      expect(poisoned.error!.message).toMatch(/prompt/);
      expect(fine).toMatchObject({ state: "completed", text: "echo: still fine" });
    },
    TEST,
  );

  it(
    "cancel removes a waiting job (its wait ends), retry re-queues it, list shows states; unknown IDs exit 4",
    async () => {
      // A job of its own that BullMQ keeps as failed, for list and retry below.
      const denied = await stack.dispatcher.run(
        { prompt: "denied for retry [[status:401]]", model: "fake/echo", id: "denied-for-retry" },
        { timeoutMs: WAIT },
      );
      expect(denied).toMatchObject({ state: "failed", attempts: 1, error: { name: "APIError", statusCode: 401 } });
      const { jobId } = await stack.dispatcher.enqueue({
        prompt: "later please",
        model: "fake/echo",
        delay: 3_600_000,
        id: "later-please",
      });
      const waiting = stack.dispatcher.wait(jobId, { timeoutMs: 30_000 });

      const listed = await runCli(["list", "--state", "delayed", "--json"], { env: stack.childEnv });
      expect(listed.code).toBe(0);
      const rows = listed.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      expect(rows).toEqual([
        expect.objectContaining({ jobId, state: "delayed", prompt: "later please", model: "fake/echo" }),
      ]);

      const cancel = await runCli(["cancel", jobId, "--json"], { env: stack.childEnv });
      expect(cancel.code).toBe(0);
      expect(JSON.parse(cancel.stdout)).toMatchObject({
        jobId,
        outcome: "removed",
        record: { state: "failed", error: { name: "Cancelled" } },
      });
      expect(await waiting).toMatchObject({ state: "failed", error: { name: "Cancelled", retryable: false } });
      expect((await stack.dispatcher.status(jobId)).state).toBe("failed");

      const retry = await runCli(["retry", jobId], { env: stack.childEnv });
      expect(retry.code).toBe(0);
      expect(retry.stdout).toContain("re-queued (its whole task, kept with its record)");
      const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
      expect(record).toMatchObject({ state: "completed", text: "echo: later please", error: null });

      const failedList = await runCli(["list", "--state", "failed,completed"], { env: stack.childEnv });
      expect(failedList.code).toBe(0);
      expect(failedList.stdout).toMatch(/^JOB\s+STATE/);
      expect(failedList.stdout).toMatch(/denied-for-retry\s+failed/);
      expect(failedList.stdout).toMatch(/later-please\s+completed/);
      expect(failedList.stdout).not.toMatch(/\bdelayed\b/);

      // retry of a job BullMQ still keeps as failed: its own retry, with fresh attempts
      const retried = await runCli(["retry", "denied-for-retry", "--json"], { env: stack.childEnv });
      expect(retried.code).toBe(0);
      expect(JSON.parse(retried.stdout)).toEqual({ jobId: "denied-for-retry", how: "retried" });
      expect(await stack.dispatcher.wait("denied-for-retry", { timeoutMs: WAIT })).toMatchObject({
        state: "failed",
        attempts: 1,
        error: { name: "APIError" },
      });
      expect(stack.fake.calls("denied for retry")).toBe(2);

      for (const command of ["cancel", "retry", "status"]) {
        const unknown = await runCli([command, "no-such-job"], { env: stack.childEnv });
        expect(unknown.code, command).toBe(4);
        expect(unknown.stderr).toMatch(/no job with ID "no-such-job"/);
      }
      const notFailed = await runCli(["retry", jobId], { env: stack.childEnv });
      expect(notFailed.code).toBe(6);
      expect(notFailed.stderr).toMatch(/only a failed job can be retried/);
      const badState = await runCli(["list", "--state", "sleeping"], { env: stack.childEnv });
      expect(badState.code).toBe(2);
      expect(badState.stderr).toMatch(/--state: "sleeping" is not one of/);
    },
    TEST,
  );
});

describe("server recycling", () => {
  const stack = useStack();

  it(
    "replaces the opencode server after N jobs, between jobs, and goes on",
    async () => {
      const worker = await stack.startWorker({ concurrency: 2, recycle: { jobs: 2 } });
      const first = worker.server().pid!;
      const ids: string[] = [];
      for (let i = 0; i < 2; i++)
        ids.push(
          (await stack.dispatcher.enqueue({ prompt: `[[delay:500]] batch one ${i}`, model: "fake/echo" })).jobId,
        );
      for (const id of ids)
        expect(await stack.dispatcher.wait(id, { timeoutMs: WAIT })).toMatchObject({ state: "completed", attempts: 1 });
      const second = await until("a new server", () =>
        worker.server().pid !== first ? worker.server().pid : undefined,
      );
      await until("the old server to exit", () => !alive(first));
      const after = await stack.dispatcher.run(
        { prompt: "on the fresh server", model: "fake/echo" },
        { timeoutMs: WAIT },
      );
      expect(after).toMatchObject({ state: "completed", text: "echo: on the fresh server", attempts: 1 });
      expect(worker.server().pid).toBe(second); // one job on it: below the threshold
      expect(alive(second)).toBe(true);
    },
    TEST,
  );
});

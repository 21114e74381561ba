import { beforeAll, describe, expect, it } from "vitest";
import { messageText } from "../support/fake-model";
import type { ResultRecord } from "../../src/shared/result";
import { runCli } from "../support/cli";
import { useStack } from "../support/stack";

const text = messageText;
const userTexts = (record: ResultRecord): string[] => JSON.parse(record.text!) as string[];

describe("forks: many tasks start from one shared context", () => {
  let source: ResultRecord;

  const stack = useStack({ worker: { concurrency: 10 } });
  beforeAll(async () => {
    source = await stack.dispatcher.run(
      { prompt: "read the codebase: the codeword is HELIOTROPE", model: "fake/echo" },
      { timeoutMs: 120_000 },
    );
    expect(source.state).toBe("completed");
  });

  it("ten forks of one job run at once, each in its own session carrying the shared first turn", async () => {
    const cli = await runCli(
      ["enqueue", "fork 0 [[delay:2000]] [[transcript]]", "--fork", source.jobId, "--model", "fake/echo", "--json"],
      { env: stack.childEnv },
    );
    expect(cli.code, cli.stderr).toBe(0);
    const ids = [(JSON.parse(cli.stdout) as { jobId: string }).jobId];
    for (let n = 1; n < 10; n++) {
      ids.push(
        (
          await stack.dispatcher.fork(source.jobId, {
            prompt: `fork ${n} [[delay:2000]] [[transcript]]`,
            model: "fake/echo",
          })
        ).jobId,
      );
    }
    const records = await Promise.all(ids.map((id) => stack.dispatcher.wait(id, { timeoutMs: 120_000 })));

    expect(records.map((r) => r.state)).toEqual(Array(10).fill("completed"));
    // Each its own new session, none the source's.
    const sessions = new Set(records.map((r) => r.sessionId));
    expect(sessions.size).toBe(10);
    expect(sessions.has(source.sessionId)).toBe(false);
    records.forEach((r, n) => {
      expect(r.forkedFrom).toBe(source.jobId);
      expect(r.continues).toBeNull();
      // The model saw the shared first turn and this fork's prompt, nothing of the other forks.
      expect(userTexts(r)).toEqual([source.prompt, `fork ${n} [[delay:2000]] [[transcript]]`]);
    });
    // Each model call carried the source's answer too.
    const forkCalls = stack.fake.requests.filter((req) => /fork \d/.test(text(req.messages.at(-1))));
    expect(forkCalls).toHaveLength(10);
    for (const req of forkCalls)
      expect(req.messages.some((m) => m.role === "assistant" && text(m) === `echo: ${source.prompt}`)).toBe(true);
    // At once: every fork started before any of them finished (each model call takes 2 s).
    const lastStart = Math.max(...records.map((r) => Date.parse(r.startedAt!)));
    const firstEnd = Math.min(...records.map((r) => Date.parse(r.finishedAt!)));
    expect(lastStart).toBeLessThan(firstEnd);
  });

  it("the source's own session is untouched: a follow-up of it sees only its turns", async () => {
    const follow = await stack.dispatcher.run(
      { prompt: "and now? [[transcript]]", continue: source.jobId },
      { timeoutMs: 120_000 },
    );
    expect(follow.sessionId).toBe(source.sessionId);
    expect(userTexts(follow)).toEqual([source.prompt, "and now? [[transcript]]"]);
  });

  it("a fork made after the source's session took more turns copies it as the source job left it", async () => {
    const follow = await stack.dispatcher.run(
      { prompt: "a later turn", continue: source.jobId },
      { timeoutMs: 120_000 },
    );
    expect(follow.sessionId).toBe(source.sessionId);
    const fork = await stack.dispatcher.wait(
      (await stack.dispatcher.fork(source.jobId, { prompt: "late fork [[transcript]]" })).jobId,
      { timeoutMs: 120_000 },
    );
    expect(fork.state).toBe("completed");
    expect(userTexts(fork)).toEqual([source.prompt, "late fork [[transcript]]"]);
  });

  it("a fork enqueued before its source ends waits for it, then runs on a worker whose server never saw the source (from the stored session)", async () => {
    const slow = await stack.dispatcher.enqueue({ prompt: "slow source [[delay:1500]]", model: "fake/echo" });
    const fork = await stack.dispatcher.fork(slow.jobId, { prompt: "early fork [[transcript]]" });
    const slowRecord = await stack.dispatcher.wait(slow.jobId, { timeoutMs: 120_000 });
    const forkRecord = await stack.dispatcher.wait(fork.jobId, { timeoutMs: 120_000 });
    expect(Date.parse(forkRecord.startedAt!)).toBeGreaterThanOrEqual(Date.parse(slowRecord.finishedAt!));
    expect(userTexts(forkRecord)).toEqual(["slow source [[delay:1500]]", "early fork [[transcript]]"]);

    await stack.worker.close();
    await stack.startWorker({ concurrency: 2 }); // it serves the tests below too
    const elsewhere = await stack.dispatcher.wait(
      (await stack.dispatcher.fork(slow.jobId, { prompt: "fork elsewhere [[transcript]]" })).jobId,
      { timeoutMs: 120_000 },
    );
    expect(elsewhere.state).toBe("completed");
    expect(elsewhere.worker).not.toBe(slowRecord.worker);
    expect(userTexts(elsewhere)).toEqual(["slow source [[delay:1500]]", "fork elsewhere [[transcript]]"]);
  });

  it("a fork of a job that failed fails for good, without a model call", async () => {
    const failed = await stack.dispatcher.run(
      { prompt: "no [[status:401]]", model: "fake/echo", attempts: 1 },
      { timeoutMs: 120_000 },
    );
    expect(failed.state).toBe("failed");
    const calls = stack.fake.requests.length;
    const fork = await stack.dispatcher.wait(
      (await stack.dispatcher.fork(failed.jobId, { prompt: "fork of a failure", attempts: 3 })).jobId,
      { timeoutMs: 120_000 },
    );
    expect(fork.state).toBe("failed");
    expect(fork.error).toMatchObject({ name: "UpstreamFailed", retryable: false });
    expect(fork.error!.message).toContain(failed.jobId);
    expect(fork.attempts).toBe(1);
    expect(stack.fake.requests.length).toBe(calls);
  });

  it("batch lines fork too: an earlier line's job, or one already in the queue", async () => {
    const handle = await stack.dispatcher.submitBatch(
      [
        { id: "base-line", prompt: "batch base" },
        { prompt: "line fork [[transcript]]", fork: "base-line" },
        { prompt: "queue fork [[transcript]]", fork: source.jobId },
      ],
      { defaults: { model: "fake/echo" } },
    );
    await handle.wait({ timeoutMs: 120_000 });
    const [lineFork, queueFork] = await Promise.all([
      stack.dispatcher.result(`${handle.id}-2`),
      stack.dispatcher.result(`${handle.id}-3`),
    ]);
    expect(userTexts(lineFork)).toEqual(["batch base", "line fork [[transcript]]"]);
    expect(userTexts(queueFork)).toEqual([source.prompt, "queue fork [[transcript]]"]);
    await expect(stack.dispatcher.submitBatch([{ prompt: "x", fork: "nowhere" }])).rejects.toThrow(
      /line 1: fork: no job with ID "nowhere"/,
    );
  });

  it("refuses a fork of an unknown job, and fork with continue", async () => {
    await expect(stack.dispatcher.fork("no-such-job", { prompt: "x" })).rejects.toThrow(
      /fork: no job with ID "no-such-job"/,
    );
    const unknown = await runCli(["enqueue", "x", "--fork", "no-such-job"], { env: stack.childEnv });
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('fork: no job with ID "no-such-job"');
    const both = await runCli(["enqueue", "x", "--fork", source.jobId, "--continue", source.jobId], {
      env: stack.childEnv,
    });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("a fork starts its own session");
  });
});

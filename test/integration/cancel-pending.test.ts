/**
 * A cancel that no worker confirms (README: "if no worker confirms by then (its worker died, say)
 * it exits 5, and the cancel stays recorded for 7 days: a worker that picks the job up later
 * refuses it"). The job's worker is a CLI child killed with SIGKILL mid-job, so the job stays
 * active with nobody listening; a short lock lets the next worker take it back in seconds.
 */
import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli";
import { SHORT_LOCK, useStack } from "../support/stack";
import { until } from "../support/until";

describe("a cancel no worker confirms", () => {
  const stack = useStack({ configEnv: SHORT_LOCK });

  it("exits 5 with the job pending, and the worker that picks the job up later refuses it", async () => {
    const dead = await stack.startCliWorker(["--concurrency", "1"]);
    // The first call hangs; were the job run again, the next call would answer.
    stack.fake.script({ hang: true });
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "orphaned by its worker",
      model: "fake/echo",
      attempts: 3,
    });
    await until("the model call", () => stack.fake.calls("orphaned by its worker") >= 1, 60_000);
    dead.child.kill("SIGKILL");
    await dead.exited(10_000);
    // No worker is left to take its lock back: the job stays active, and nobody hears the cancel.
    expect((await stack.dispatcher.status(jobId)).state).toBe("active");

    const started = Date.now();
    const cancel = await runCli(["cancel", jobId, "--timeout", "2s", "--json"], { env: stack.childEnv });
    expect(cancel.code, cancel.stderr).toBe(5);
    expect(JSON.parse(cancel.stdout)).toEqual({ jobId, outcome: "pending", record: null });
    expect(cancel.stderr).toContain(`cancel of job ${jobId} requested; no worker confirmed it yet`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
    expect((await stack.dispatcher.status(jobId)).state).toBe("active");

    // A worker starting later takes the job back from the dead one, and refuses it.
    const next = await stack.startWorker({ concurrency: 1 });
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: 60_000 });
    expect(record).toMatchObject({ state: "failed", error: { name: "Cancelled", retryable: false } });
    expect(record.error!.message).toMatch(/cancelled before it ran/);
    expect(stack.fake.calls("orphaned by its worker")).toBe(1);
    expect((await stack.dispatcher.status(jobId)).state).toBe("failed");
    await next.close({ graceMs: 0 });
  });
});

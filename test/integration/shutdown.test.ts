/**
 * Graceful shutdown of a CLI worker (README: "SIGINT/SIGTERM: the worker stops taking jobs and lets
 * running ones finish for `--grace`, then aborts them and hands them back to the queue for another
 * worker; a second signal hands them back at once"), on real Redis and real `opencode serve`.
 */
import { describe, expect, it } from "vitest";
import type { CliProcess } from "../support/cli";
import { useStack } from "../support/stack";
import { until } from "../support/until";

const WAIT = 60_000;

describe("a worker stopped by a signal", () => {
  const stack = useStack();

  const startWorker = (grace: string, opts: { concurrency?: number; detached?: boolean } = {}) =>
    stack.startCliWorker(["--concurrency", String(opts.concurrency ?? 1), "--grace", grace], {
      detached: opts.detached,
    });
  /** Another worker, started while the CLI worker runs the job, so that only it can take the job back. */
  const anotherWorker = () => stack.startWorker({ concurrency: 1 });
  const ranOn = (worker: CliProcess) => new RegExp(`-${worker.child.pid}-`);

  it("lets a job that ends within --grace finish, hands back one that does not, and another worker completes it", async () => {
    const worker = await startWorker("4s", { concurrency: 2, detached: true });
    stack.fake.script({ hang: true }); // the stopping worker's call for "hand me back" never ends; the next one answers
    const back = await stack.dispatcher.enqueue({ prompt: "hand me back", model: "fake/echo", attempts: 1 });
    await until("the hanging model call", () => stack.fake.calls("hand me back") >= 1, WAIT);
    const done = await stack.dispatcher.enqueue({ prompt: "[[delay:1500]] finish me", model: "fake/echo" });
    await until("the second model call", () => stack.fake.calls("finish me") >= 1, WAIT);
    const sent = Date.now();
    // As a terminal's Ctrl-C: SIGINT to the worker's whole process group. The opencode server leads
    // a group of its own, so it keeps serving the jobs the worker lets finish.
    process.kill(-worker.child.pid!, "SIGINT");
    const other = anotherWorker(); // it starts while the stopping one waits out its grace
    expect(await worker.exited(20_000)).toBe(0);
    expect(Date.now() - sent).toBeGreaterThanOrEqual(4_000);
    expect(worker.output()).toMatch(/stopping: no new jobs/);
    expect(worker.output()).toMatch(/job handed back to the queue for another worker/);

    const finished = await stack.dispatcher.result(done.jobId);
    expect(finished).toMatchObject({ state: "completed", text: "echo: [[delay:1500]] finish me", attempts: 1 });
    expect(finished.worker).toMatch(ranOn(worker));
    expect(stack.fake.calls("finish me")).toBe(1);

    const handedBack = await stack.dispatcher.wait(back.jobId, { timeoutMs: WAIT });
    // Handed back, not failed: its one attempt was not spent, and it waited for the grace to pass.
    expect(handedBack).toMatchObject({
      state: "completed",
      text: "echo: hand me back",
      worker: (await other).id,
      error: null,
    });
    expect(Date.parse(handedBack.startedAt!)).toBeGreaterThanOrEqual(sent + 3_900);
    expect(stack.fake.calls("hand me back")).toBe(2);
    await (await other).close({ graceMs: 0 });
  });

  it("a second signal hands the running job back at once, long before --grace", async () => {
    const worker = await startWorker("5m");
    stack.fake.script({ hang: true });
    const { jobId } = await stack.dispatcher.enqueue({ prompt: "hand me back now", model: "fake/echo", attempts: 1 });
    await until("the hanging model call", () => stack.fake.calls("hand me back now") >= 1, WAIT);
    worker.child.kill("SIGTERM");
    await worker.waitFor(/stopping: no new jobs/, 10_000);
    const sent = Date.now();
    worker.child.kill("SIGTERM");
    expect(await worker.exited(9_000)).toBe(0);
    expect(worker.output()).toMatch(/stopping now: handing running jobs back/);
    // Back in the queue waiting for a worker, not failed (that another worker then runs it, its one
    // attempt unspent, is the test above).
    const status = await stack.dispatcher.status(jobId);
    expect(status.state).toBe("waiting");
    expect(status.result).toMatchObject({ state: "waiting", error: null });
    expect(Date.now() - sent).toBeLessThan(10_000);
  });
});

/**
 * Exact budgets (worker --budget-guard): the spawned server loads the budget guard plugin, which
 * holds a budgeted session's next model call until the worker has counted the step before it and
 * refuses it once a cap is passed. Without the guard the run is aborted, which may come just after
 * the next call went out (sessions.test.ts).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { useStack } from "../support/stack";

const bash = (command: string) => ({ toolCall: { name: "bash", args: { command, description: "say hi" } } });

describe("exact budgets with the budget guard", () => {
  const stack = useStack({ configEnv: { DISPATCH_BUDGET_GUARD: "true" }, worker: { concurrency: 2 } });
  beforeAll(async () => {
    // The first prompt waits for opencode to install its plugin package into the fresh config folder.
    const warm = await stack.dispatcher.run({ prompt: "warm up", model: "fake/echo" }, { timeoutMs: 170_000 });
    expect(warm.state).toBe("completed");
  });

  it("the step that passes a cap is the last: no model call is made after it", async () => {
    // Each first step's usage (the ~2,400-token system prompt) passes the cap. Were the run let go
    // on, the second step would answer after 15 s with another tool call, and a third call follow.
    for (let run = 1; run <= 3; run++) {
      stack.fake.script(bash("echo hi"), { ...bash("echo again"), delayMs: 15_000 });
      const started = Date.now();
      const capped = await stack.dispatcher.run(
        { prompt: `steps capped ${run}`, model: "fake/echo", maxTokens: 1_000 },
        { timeoutMs: 120_000 },
      );
      expect(capped.state).toBe("failed");
      expect(capped.error).toMatchObject({ name: "BudgetExceeded", retryable: false });
      expect(capped.error!.message).toMatch(/budget exceeded: \d+ tokens passed --max-tokens 1000/);
      expect(Date.now() - started).toBeLessThan(14_000); // the second step would answer after 15 s
      expect(stack.fake.calls(`steps capped ${run}`)).toBe(1);
      stack.fake.reset(); // its second step was never asked for
    }
  });

  it("an unbudgeted job runs every step, and a later turn in a stopped session is not refused", async () => {
    stack.fake.script(bash("echo hi"), { ...bash("echo again"), delayMs: 15_000 });
    const capped = await stack.dispatcher.run(
      { prompt: "capped first", model: "fake/echo", maxTokens: 1_000 },
      { timeoutMs: 120_000 },
    );
    expect(capped.error).toMatchObject({ name: "BudgetExceeded" });
    stack.fake.reset();
    // The same session, continued without a budget: its turn is its own, and runs both its steps.
    stack.fake.script(bash("echo three"));
    const later = await stack.dispatcher.run(
      { prompt: "uncapped later", model: "fake/echo", continue: capped.jobId },
      { timeoutMs: 120_000 },
    );
    expect(later.state).toBe("completed");
    expect(later.sessionId).toBe(capped.sessionId);
    expect(later.text).toMatch(/^tool done: three/);
    expect(stack.fake.calls("uncapped later")).toBe(2);
  });
});

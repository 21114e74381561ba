import { describe, expect, it } from "vitest";
import { createClient } from "../../src/worker/server/opencode-client";
import { useStack } from "../support/stack";

describe("failures end in the right state, fast, and stop the agent", () => {
  const stack = useStack({
    configEnv: { DISPATCH_STALL_TIMEOUT: "4s", DISPATCH_PROVIDER_RETRIES: "1" },
    worker: { concurrency: 4 },
  });

  const sessionStatus = async (sessionId: string) => {
    const client = createClient(stack.worker.server());
    const all = (await client.session.status({}, { signal: AbortSignal.timeout(5_000) })).data ?? {};
    return (all as Record<string, { type: string }>)[sessionId]?.type ?? "idle";
  };

  it("a provider 401 that opencode would retry for a minute fails the job within 15 s, after one attempt", async () => {
    const started = Date.now();
    const record = await stack.dispatcher.run(
      { prompt: "denied [[status:401:type=server_error]]", model: "fake/echo", attempts: 3 },
      { timeoutMs: 120_000 },
    );
    const elapsed = Date.now() - started;
    expect(record.state).toBe("failed");
    expect(record.attempts).toBe(1);
    expect(record.error).toMatchObject({ name: "APIError", statusCode: 401, retryable: false });
    expect(elapsed).toBeLessThan(15_000);
  });

  it("a provider that keeps answering 503 is handed to the queue's retry and fails after the job's attempts", async () => {
    const record = await stack.dispatcher.run(
      { prompt: "down [[status:503]]", model: "fake/echo", attempts: 2 },
      { timeoutMs: 90_000 },
    );
    expect(record.state).toBe("failed");
    expect(record.attempts).toBe(2);
    expect(record.error).toMatchObject({ name: "APIError", statusCode: 503, retryable: true });
  });

  it("a job's timeout aborts its opencode session and counts as a failed attempt", async () => {
    const record = await stack.dispatcher.run(
      { prompt: "think forever [[hang]]", model: "fake/echo", timeout: "3s", attempts: 1 },
      { timeoutMs: 120_000 },
    );
    expect(record.state).toBe("failed");
    expect(record.error).toMatchObject({ name: "Timeout", retryable: true });
    expect(record.sessionId).toMatch(/^ses_/);
    await expect.poll(() => sessionStatus(record.sessionId!), { timeout: 10_000 }).toBe("idle");
  });

  it("the stall watchdog aborts a session that makes no progress, and the retry completes", async () => {
    stack.fake.script({ hang: true });
    const record = await stack.dispatcher.run(
      { prompt: "stalls once", model: "fake/echo", timeout: "5m", attempts: 2 },
      { timeoutMs: 90_000 },
    );
    expect(record.state).toBe("completed");
    expect(record.attempts).toBe(2);
    expect(record.text).toBe("echo: stalls once");
  });

  it("a stall on every attempt ends as failed with the stall named", async () => {
    const record = await stack.dispatcher.run(
      { prompt: "stalls always [[hang]]", model: "fake/echo", timeout: "5m", attempts: 1 },
      { timeoutMs: 120_000 },
    );
    expect(record.state).toBe("failed");
    expect(record.error).toMatchObject({ name: "Stalled", retryable: true });
    expect(record.error!.message).toMatch(/no progress from opencode for 4 s/);
  });
});

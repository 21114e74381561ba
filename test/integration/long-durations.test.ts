/**
 * Durations past Node's timer limit (2^31-1 ms, 24.8 days) work: a job enqueued with
 * `--timeout 30d` runs to completion (it used to time out at once) and its webhook, with a 30-day
 * delivery timeout, is delivered; a duration past what a field can mean is refused, naming both.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli";
import { startStack, type Stack } from "../support/stack";
import { until } from "../support/until";

describe("durations past 24.8 days", () => {
  let stack: Stack;
  let receiver: http.Server;
  const deliveries: string[] = [];

  beforeAll(async () => {
    receiver = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        deliveries.push(String(req.headers["x-dispatch-event"]));
        res.end("ok");
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    stack = await startStack({ configEnv: { DISPATCH_WEBHOOK_TIMEOUT: "30d" } });
    await stack.startWorker({ concurrency: 1 });
  });
  afterAll(async () => {
    await stack?.close();
    receiver?.close();
  });

  it("a job with --timeout 30d completes, and its webhook with a 30-day timeout is delivered", async () => {
    const webhook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const run = await runCli(["enqueue", "a long leash [[reply:finished]]", "--timeout", "30d", "--webhook", webhook, "--wait", "--json"], { env: stack.childEnv });
    expect(run.stderr).not.toContain("TimeoutOverflowWarning");
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ state: "completed", text: "finished", attempts: 1 });
    await until("the webhook delivery", () => deliveries.length >= 1, 30_000);
    expect(deliveries).toEqual(["completed"]);
  });

  it("a duration longer than the field allows is refused, naming the field and the limit", async () => {
    const run = await runCli(["enqueue", "too long", "--timeout", "400d"], { env: stack.childEnv });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--timeout: duration "400d" is longer than the longest allowed, 365d');
  });
});

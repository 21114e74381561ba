/**
 * Durations past Node's timer limit (2^31-1 ms, 24.8 days) work: a job enqueued with
 * `--timeout 30d` runs to completion (it used to time out at once) and its webhook, with a 30-day
 * delivery timeout, is delivered; a duration past what a field can mean is refused, naming both.
 * And every record has the configured TTL, also those a producer writes: a cancel's record and
 * kept task, a retry's re-queued record and its run count expire as the workers' records do
 * (DISPATCH_RESULT_TTL, which every worker publishes for the queue's producers).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queueKeys } from "../../src/shared/keys";
import { retriesKey } from "../../src/shared/webhook";
import { runCli } from "../support/cli";
import { useStack } from "../support/stack";
import { until } from "../support/until";

const TTL = 2 * 3_600_000;

describe("durations past 24.8 days, and records' TTLs", () => {
  let redis: Redis;
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
  });
  afterAll(() => {
    receiver?.close();
  });
  const stack = useStack({
    configEnv: { DISPATCH_WEBHOOK_TIMEOUT: "30d", DISPATCH_RESULT_TTL: "2h" },
    worker: { concurrency: 1 },
  });
  beforeAll(() => {
    redis = new Redis(stack.redisUrl);
  });
  afterAll(() => {
    redis?.disconnect();
  });

  it("a job with --timeout 30d completes, and its webhook with a 30-day timeout is delivered", async () => {
    const webhook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const run = await runCli(
      ["enqueue", "a long leash [[reply:finished]]", "--timeout", "30d", "--webhook", webhook, "--wait", "--json"],
      { env: stack.childEnv },
    );
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

  /** The key's remaining time to live, ms (-1: none). */
  const ttlOf = (key: string) => redis.pttl(key);
  const expectConfiguredTtl = async (key: string) => {
    const left = await ttlOf(key);
    expect(left, key).toBeGreaterThan(TTL - 60_000);
    expect(left, key).toBeLessThanOrEqual(TTL);
  };

  it("(last: it stops the worker) cancel and retry write records, kept tasks and run counts with the TTL", async () => {
    const keys = queueKeys(stack.queue);
    const failed = await stack.dispatcher.run({ prompt: "refused [[status:401]]" }, { timeoutMs: 120_000 });
    expect(failed.state).toBe("failed");
    await expectConfiguredTtl(keys.result(failed.jobId)); // the worker's own record

    const later = await stack.dispatcher.enqueue({ prompt: "later", delay: 3_600_000 });
    expect((await stack.dispatcher.cancel(later.jobId)).outcome).toBe("removed");
    await expectConfiguredTtl(keys.result(later.jobId));
    await expectConfiguredTtl(keys.taskCopy(later.jobId));

    // No worker runs the re-queued jobs, so what the test reads is what the producer wrote.
    await stack.worker.close({ graceMs: 0 });
    expect(await stack.dispatcher.retry(failed.jobId)).toMatchObject({ how: "retried" });
    expect((await stack.dispatcher.status(failed.jobId)).result?.state).toBe("waiting");
    await expectConfiguredTtl(keys.result(failed.jobId));
    await expectConfiguredTtl(retriesKey(stack.queue, failed.jobId));
    expect(await stack.dispatcher.retry(later.jobId)).toMatchObject({ how: "requeued" });
    await expectConfiguredTtl(keys.result(later.jobId));
    await expectConfiguredTtl(retriesKey(stack.queue, later.jobId));
  });
});

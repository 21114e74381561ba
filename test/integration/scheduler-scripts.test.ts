/**
 * The scheduling core's scripts on a real Redis, without opencode: the rules that the end-to-end
 * tests (scheduling.test.ts) only meet on some runs — a provider's learned rate, the chain rule for
 * records written before the done mark, a hold given a fractional time.
 */
import { randomUUID } from "node:crypto";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { gatesFor } from "../../src/scheduling/gates";
import { Scheduler } from "../../src/scheduling/scheduler";
import * as scripts from "../../src/scheduling/scripts";
import { queueKeys } from "../../src/shared/keys";
import { deleteQueueKeys } from "../support/stack";

const NO_CAPS = { concurrency: [], rate: [], keyConcurrency: 1 };

describe("scheduling scripts", () => {
  const name = `test-${randomUUID().slice(0, 8)}`;
  const keys = queueKeys(name);
  let redis: Redis;
  let queue: Queue;
  let scheduler: Scheduler;

  beforeAll(async () => {
    redis = new Redis(inject("redisUrl"));
    queue = new Queue(name, { connection: redis, prefix: keys.bullPrefix });
    scheduler = new Scheduler(redis, keys, queue, 1);
  });
  afterAll(async () => {
    await queue?.close();
    redis?.disconnect();
    await deleteQueueKeys(inject("redisUrl"), name);
  });

  it("every script compiles", async () => {
    for (const [script, body] of Object.entries(scripts)) {
      await expect(redis.script("LOAD", body as string), script).resolves.toMatch(/^[0-9a-f]{40}$/);
    }
  });

  it("a 429 teaches the provider's rate: what it took before saying no, per the time until the hold ends", async () => {
    const gates = gatesFor("x", { model: "quota/m" }, NO_CAPS);
    const t0 = Date.now();
    // Eight calls start at once; the provider takes three and turns five away, saying "in 5 s".
    for (let i = 0; i < 8; i++)
      expect(await scheduler.admit(`q${i}`, `q${i}@t`, gates, 30_000, t0)).toEqual({ admitted: true });
    let limit = 0;
    for (let i = 3; i < 8; i++) limit = await scheduler.hold("quota", t0 + 5_000, `q${i}@t`);
    expect(limit).toBe(3);
    // Once the hold passed, the learned rate lets three through per period (5 s, from the first
    // start to the end of the hold); a fourth waits until the oldest of them leaves the window.
    const after = t0 + 5_001;
    for (let i = 10; i < 13; i++)
      expect(await scheduler.admit(`q${i}`, `q${i}@t`, gates, 30_000, after + i)).toEqual({ admitted: true });
    const fourth = await scheduler.admit("q13", "q13@t", gates, 30_000, after + 20);
    expect(fourth).toMatchObject({ admitted: false, gate: "q:quota", delayUntil: after + 10 + 5_000 });
    expect((await scheduler.waitingFor("q13"))?.waitingFor).toMatch(
      /^waiting for provider quota's rate \(3\/3 per 5 s\)/,
    );
  });

  it("a fractional hold time is taken as the next whole millisecond", async () => {
    const now = Date.now();
    await expect(scheduler.hold("fraction", now + 1_234.5678, "f@t")).resolves.toBeGreaterThanOrEqual(1);
    const gates = gatesFor("f2", { model: "fraction/m" }, NO_CAPS);
    const admission = await scheduler.admit("f2", "f2@t", gates, 30_000, now + 10);
    expect(admission).toMatchObject({ admitted: false, gate: "h:fraction", delayUntil: Math.ceil(now + 1_234.5678) });
  });

  it("a follow-up of a job whose final record has no done mark (written before it existed) may start", async () => {
    await redis.set(keys.result("old-pred"), JSON.stringify({ jobId: "old-pred", state: "completed" }));
    const gates = gatesFor("old-next", { after: "old-pred" }, NO_CAPS);
    expect(await scheduler.admit("old-next", "old-next@t", gates, 30_000)).toEqual({ admitted: true });
    // A predecessor still running (a record, not final) holds it back.
    await redis.set(keys.result("live-pred"), JSON.stringify({ jobId: "live-pred", state: "active" }));
    const waiting = await scheduler.admit(
      "live-next",
      "live-next@t",
      gatesFor("live-next", { after: "live-pred" }, NO_CAPS),
      30_000,
    );
    expect(waiting).toMatchObject({ admitted: false, gate: "c:live-pred" });
    expect((await scheduler.waitingFor("live-next"))?.waitingFor).toBe("waiting for job live-pred");
  });
});

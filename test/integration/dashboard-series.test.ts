/**
 * The time series behind the dashboard's charts (shared/series.ts), written by the record write
 * itself: a job that finishes costs two or three more commands inside the write's script (and once
 * a minute a sample of the queue's depth); a final record written again is not counted again; a
 * job re-queued and finished again is. On a Redis of its own, so the command counts are this test's.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queueKeys } from "../../src/shared/keys";
import { baseRecord } from "../../src/shared/record";
import type { ResultRecord } from "../../src/shared/result";
import { ResultStore } from "../../src/shared/result-store";
import { minuteOf, readSeries } from "../../src/shared/series";
import { FinishedRecords, type BatchDeps } from "../../src/dashboard/batches";
import { startRedisServer, type RedisProcess } from "../support/redis";
import { commandCalls } from "../support/redis-stats";

const QUEUE = "series";
const SERIES_COMMANDS = ["hincrby", "hincrbyfloat", "hset", "pexpire", "llen", "zcard"] as const;

describe("the queue's time series", () => {
  let server: RedisProcess;
  let redis: Redis;
  let store: ResultStore;

  beforeAll(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url);
    store = new ResultStore(redis, QUEUE, 3_600_000);
  });
  afterAll(async () => {
    await store?.close();
    redis?.disconnect();
    await server?.close();
  });

  const counts = async () =>
    Object.fromEntries(await Promise.all(SERIES_COMMANDS.map(async (c) => [c, await commandCalls(redis, c)] as const)));
  const delta = (before: Record<string, number>, after: Record<string, number>) =>
    Object.fromEntries(SERIES_COMMANDS.map((c) => [c, after[c]! - before[c]!]));
  const finished = (jobId: string, state: "completed" | "failed", extra: Partial<ResultRecord> = {}): ResultRecord => ({
    ...baseRecord(jobId, { prompt: "p" }, state),
    model: "fake/priced",
    durationMs: 1_500,
    ...extra,
  });
  // The minute can turn between two writes: the test retries its window then.
  const thisMinute = async (fn: () => Promise<void>, queue = QUEUE) => {
    for (;;) {
      const minute = minuteOf(Date.now());
      await fn();
      if (minuteOf(Date.now()) === minute) return minute;
      await redis.del(queueKeys(queue).seriesMinute(minute), queueKeys(queue).seriesMinute(minute + 1));
    }
  };

  it("counts each finish in its minute with two or three commands, the depth once a minute", async () => {
    let first: Record<string, number> = {};
    let second: Record<string, number> = {};
    let rewritten: Record<string, number> = {};
    await redis.rpush(`${queueKeys(QUEUE).bull}wait`, "w1", "w2", "w3");
    const minute = await thisMinute(async () => {
      await redis.del(...["a", "b"].map((id) => `${queueKeys(QUEUE).sched}done:${id}`));
      await store.put({ ...baseRecord("a", { prompt: "p" }, "active") });
      let before = await counts();
      await store.put(finished("a", "completed", { cost: 0.25 }));
      first = delta(before, await counts());
      before = await counts();
      await store.put(finished("b", "failed", { durationMs: 12_000 }));
      second = delta(before, await counts());
      before = await counts();
      await store.put(finished("b", "failed", { durationMs: 12_000 })); // written again: counted once
      rewritten = delta(before, await counts());
    });
    // The minute's first finish: n, its bucket, its cost; the depth sample (LLEN wait, ZCARD
    // prioritized, LLEN active, one HSET) and the expiry, once.
    expect(first).toEqual({ hincrby: 2, hincrbyfloat: 1, hset: 1, pexpire: 1 + 3, llen: 2, zcard: 1 });
    // A later one: n and its bucket (no cost: no HINCRBYFLOAT). The three other PEXPIREs are the
    // record write's own (its live stream, the two indexes).
    expect(second).toEqual({ hincrby: 2, hincrbyfloat: 0, hset: 0, pexpire: 3, llen: 0, zcard: 0 });
    // Written again: not counted (its done mark was set; only its expiry is renewed).
    expect(rewritten).toEqual({ hincrby: 0, hincrbyfloat: 0, hset: 0, pexpire: 1 + 3, llen: 0, zcard: 0 });

    const [point] = await readSeries(redis, queueKeys(QUEUE), minute, minute);
    expect(point).toMatchObject({
      minute,
      completed: 1,
      failed: 1,
      cost: { "fake/priced": 0.25 },
      waiting: 3,
      running: 0,
    });
    expect(point!.durations[1]).toBe(1); // 1-2.5 s
    expect(point!.durations[4]).toBe(1); // 10-30 s
    expect(await redis.pttl(queueKeys(QUEUE).seriesMinute(minute))).toBeGreaterThan(25 * 3_600_000);
  });

  it("counts a job again once it was re-queued (retry) and finished again", async () => {
    const other = "series-retry";
    const retried = new ResultStore(redis, other, 3_600_000);
    const minute = await thisMinute(async () => {
      await redis.del(`${queueKeys(other).sched}done:c`);
      await retried.put(finished("c", "failed"));
      await retried.put({ ...baseRecord("c", { prompt: "p" }, "waiting") });
      await retried.put(finished("c", "completed"));
    }, other);
    const [point] = await readSeries(redis, queueKeys(other), minute, minute);
    expect(point).toMatchObject({ failed: 1, completed: 1 });
    await retried.close();
  });

  it("keeps finished members' records between readings of a batch, and reads one again once it was written since", async () => {
    const kept = new FinishedRecords();
    const deps = { redis, results: store } as unknown as BatchDeps;
    await store.put(finished("m1", "failed"));
    await store.put({ ...baseRecord("m2", { prompt: "p" }, "active") });
    expect((await kept.read(deps, ["m1", "m2", "none"])).map((r) => r?.state ?? null)).toEqual([
      "failed",
      "active",
      null,
    ]);
    const gets = await commandCalls(redis, "mget");
    expect((await kept.read(deps, ["m1"]))[0]).toMatchObject({ state: "failed", text: null, prompt: "" });
    expect(await commandCalls(redis, "mget")).toBe(gets); // m1 was kept: nothing read
    // Retried and finished again: its index score moved, so it is read again.
    await new Promise((resolve) => setTimeout(resolve, 5));
    await store.put({ ...baseRecord("m1", { prompt: "p" }, "waiting") });
    await store.put(finished("m1", "completed"));
    expect((await kept.read(deps, ["m1", "m2"])).map((r) => r?.state)).toEqual(["completed", "active"]);
  });
});

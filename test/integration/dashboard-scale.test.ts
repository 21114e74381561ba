/**
 * Every dashboard page answers quickly on a queue of 100,000 result records, 20,000 of them
 * members of one batch and the rest in 200 small batches, with a day of time series: pages are
 * read from indexes (the result index, the batch index, the batch's member set, the per-minute
 * series), never by SCAN or KEYS. On a Redis of its own, so the command counts are this test's.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDashboard, type RunningDashboard } from "../../src/dashboard/server";
import { queueKeys } from "../../src/shared/keys";
import { baseRecord } from "../../src/shared/record";
import { minuteOf } from "../../src/shared/series";
import { startRedisServer, type RedisProcess } from "../support/redis";
import { scansSoFar } from "../support/redis-stats";
import { seedRecords } from "../support/seed-records";

const QUEUE = "scale";
const RECORDS = 100_000;
const BIG = 20_000;
const SMALL = 200;
const NOW = Date.now();
/** A page must answer within this (a 2-core machine shared with the rest of the suite; alone they take a tenth of it). */
const FAST_MS = 5_000;

describe("a dashboard on 100,000 records", () => {
  let server: RedisProcess;
  let redis: Redis;
  let dashboard: RunningDashboard;

  beforeAll(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url);
    const keys = queueKeys(QUEUE);
    await seedRecords(redis, keys, RECORDS, (n) => {
      const at = NOW - (RECORDS - n) * 500;
      const record = {
        ...baseRecord(`job-${n}`, { prompt: `task ${n}`, model: "fake/priced" }, n % 20 === 0 ? "failed" : "completed"),
        enqueuedAt: new Date(at - 2_000).toISOString(),
        startedAt: new Date(at - 1_000).toISOString(),
        finishedAt: new Date(at).toISOString(),
        durationMs: 1_000 + (n % 7) * 400,
        cost: 0.01,
        text: `answer ${n} `.repeat(20),
        error: n % 20 === 0 ? { name: "APIError", message: "fake error 401", retryable: false } : null,
      };
      return {
        record,
        at,
        batch: n < BIG ? "big" : `small-${n % SMALL}`,
        // One record whose state is not where records put it: read by the full decode.
        ...(n === 1 ? { json: JSON.stringify(Object.assign({ state: record.state }, record)) } : {}),
      };
    });
    const pipe = redis.pipeline();
    for (const batch of ["big", ...Array.from({ length: SMALL }, (_, i) => `small-${i}`)]) {
      pipe.hset(keys.batch(batch), {
        batchId: batch,
        total: batch === "big" ? BIG : (RECORDS - BIG) / SMALL,
        invalid: 0,
        createdAt: new Date(NOW - 3_600_000).toISOString(),
        complete: "1",
      });
      pipe.zadd(keys.batches, batch === "big" ? NOW : NOW - 1_000, batch);
    }
    for (let m = minuteOf(NOW) - 1_439; m <= minuteOf(NOW) + 5; m++)
      pipe.hset(keys.seriesMinute(m), { n: 3, c1: 2, f2: 1, "$fake/priced": 0.03, q: 5, a: 2 });
    await pipe.exec();
    dashboard = await startDashboard({ redisUrl: server.url, queue: QUEUE, port: 0 });
  }, 120_000);
  afterAll(async () => {
    await dashboard?.close();
    redis?.disconnect();
    await server?.close();
  });

  it.each([
    ["/", "the overview with a day of charts and the newest batches"],
    ["/batches", "the list of batches (20 a page, counts of each)"],
    ["/batches/small-7", "a batch of 400"],
    ["/batches/big", "a batch of 20,000"],
    ["/api/batches/big", "the JSON a batch page polls"],
    ["/results", "the newest results"],
  ])("%s: %s", async (path) => {
    const scans = await scansSoFar(redis);
    const started = performance.now();
    const response = await fetch(`${dashboard.url}${path}`);
    const body = await response.text();
    const ms = performance.now() - started;
    console.info(`${path}: ${ms.toFixed(0)} ms, ${body.length} bytes`);
    expect(response.status, body.slice(0, 300)).toBe(200);
    expect(await scansSoFar(redis)).toBe(scans);
    expect(ms).toBeLessThan(FAST_MS);
  });

  it("counts a big batch as its records say, and draws a day of series", async () => {
    const json = (await (await fetch(`${dashboard.url}/api/batches/big`)).json()) as {
      status: { counts: Record<string, number> };
    };
    expect(json.status.counts).toEqual({ queued: 0, running: 0, completed: BIG - BIG / 20, failed: BIG / 20 });
    const home = await (await fetch(`${dashboard.url}/`)).text();
    expect(home).toMatch(/data-chart="throughput" data-points="(\d+)"/);
    expect(Number(/data-chart="throughput" data-points="(\d+)"/.exec(home)![1])).toBe(120); // 60 minutes, two series
    expect(Number(/data-chart="cost" data-points="(\d+)"/.exec(home)![1])).toBeGreaterThanOrEqual(24);
  });
});

/**
 * The dashboard cannot be driven from a web page and does not slow down with the number of
 * records: a request with a foreign Host header (DNS rebinding) is refused; actions need a
 * CSRF-safe method, the dashboard's own origin and its token; the results page of a queue with
 * 50,000 records is read from the result index (no SCAN, a handful of commands).
 * On a Redis of its own, so the command counts are this test's alone.
 */
import http from "node:http";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDashboard, type RunningDashboard } from "../../src/dashboard/server";
import { queueKeys } from "../../src/shared/keys";
import { baseRecord } from "../../src/shared/record";
import { startRedisServer, type RedisProcess } from "../support/redis";
import { scansSoFar } from "../support/redis-stats";
import { seedRecords } from "../support/seed-records";

const QUEUE = "hardening";
const RECORDS = 50_000;
const T0 = Date.parse("2026-11-01T00:00:00Z");
const jobId = (n: number) => `job-${String(n).padStart(5, "0")}`;

/** A request with the headers given as they are (fetch will not send a foreign Host). */
function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? "GET", headers: opts.headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

describe("a dashboard that cannot be driven from a web page", () => {
  let server: RedisProcess;
  let redis: Redis;
  let readOnly: RunningDashboard;
  let actions: RunningDashboard;

  beforeAll(async () => {
    server = await startRedisServer();
    redis = new Redis(server.url);
    await seedRecords(
      redis,
      queueKeys(QUEUE),
      RECORDS,
      (n) => ({
        record: {
          ...baseRecord(jobId(n), { prompt: `task ${n}` }, n % 10 === 0 ? "failed" : "completed"),
          finishedAt: new Date(T0 + n * 1_000).toISOString(),
        },
        at: T0 + n * 1_000,
      }),
      { ttlMs: 86_400_000 },
    );
    [readOnly, actions] = await Promise.all([
      startDashboard({ redisUrl: server.url, queue: QUEUE, port: 0, allowedHosts: ["dash.example.org"] }),
      startDashboard({ redisUrl: server.url, queue: QUEUE, port: 0, allowActions: true }),
    ]);
  }, 60_000);
  afterAll(async () => {
    await readOnly?.close();
    await actions?.close();
    redis?.disconnect();
    await server?.close();
  });

  it("refuses a foreign Host header, answers its own names", async () => {
    const { port } = new URL(readOnly.url);
    const foreign = await request(`${readOnly.url}/results`, { headers: { host: `rebound.attacker.example:${port}` } });
    expect(foreign.status).toBe(403);
    expect(foreign.body).toContain("unknown Host");
    expect(
      (await request(`${readOnly.url}/api/results/${jobId(1)}`, { headers: { host: `evil.example` } })).status,
    ).toBe(403);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `dash.example.org`]) {
      expect((await request(`${readOnly.url}/api/results/${jobId(1)}`, { headers: { host } })).status, host).toBe(200);
    }
  });

  it("lists 50,000 records newest first, a page at a time, from the index (no SCAN)", async () => {
    const scansBefore = await scansSoFar(redis);
    const commandsBefore = Number(/total_commands_processed:(\d+)/.exec(await redis.info("stats"))![1]);
    const started = performance.now();
    const first = await fetch(`${readOnly.url}/results`);
    const ms = performance.now() - started;
    const html = await first.text();
    const commands = Number(/total_commands_processed:(\d+)/.exec(await redis.info("stats"))![1]) - commandsBefore - 1;
    expect(first.status).toBe(200);
    const rows = [...html.matchAll(/data-testid="result-row" data-job-id="([^"]+)"/g)].map((m) => m[1]);
    expect(rows).toEqual(Array.from({ length: 50 }, (_, i) => jobId(RECORDS - 1 - i)));
    expect(html).toContain('href="/results?offset=50" rel="next"');
    expect(await scansSoFar(redis)).toBe(scansBefore);
    expect(commands).toBeLessThanOrEqual(4); // ZREVRANGE, MGET (+ INFO of this test)
    console.info(`results page of ${RECORDS} records: ${ms.toFixed(0)} ms, ${commands} Redis commands`);

    const second = await fetch(`${readOnly.url}/api/results?offset=50&limit=3`);
    expect(((await second.json()) as { jobId: string }[]).map((r) => r.jobId)).toEqual([
      jobId(RECORDS - 51),
      jobId(RECORDS - 52),
      jobId(RECORDS - 53),
    ]);
    expect(second.headers.get("x-next-offset")).toBe("53");
    const failed = (await (await fetch(`${readOnly.url}/api/results?state=failed&limit=2`)).json()) as {
      jobId: string;
    }[];
    expect(failed.map((r) => r.jobId)).toEqual([jobId(RECORDS - 10), jobId(RECORDS - 20)]);
  });

  it("drops entries whose record expired or whose job moved on to another state", async () => {
    const keys = queueKeys(QUEUE);
    await redis.del(keys.result(jobId(RECORDS - 1)));
    await redis.zadd(keys.resultsInState("failed"), T0 + RECORDS * 1_000, jobId(RECORDS - 2)); // it completed since
    const all = (await (await fetch(`${readOnly.url}/api/results?limit=1`)).json()) as { jobId: string }[];
    expect(all.map((r) => r.jobId)).toEqual([jobId(RECORDS - 2)]);
    const failed = (await (await fetch(`${readOnly.url}/api/results?state=failed&limit=1`)).json()) as {
      jobId: string;
    }[];
    expect(failed.map((r) => r.jobId)).toEqual([jobId(RECORDS - 10)]);
    expect(await redis.zscore(keys.results, jobId(RECORDS - 1))).toBeNull();
    expect(await redis.zscore(keys.resultsInState("failed"), jobId(RECORDS - 2))).toBeNull();
  });

  it("takes actions only by a CSRF-safe method from its own origin with its token", async () => {
    const pause = `${actions.url}/queues/api/queues/${QUEUE}/pause`;
    const { host } = new URL(actions.url);
    // Read-only: no action at all.
    expect((await request(`${readOnly.url}/queues/api/queues/${QUEUE}/pause`, { method: "PUT" })).status).toBe(405);
    // Without the token, from a form (POST text/plain), from another origin: refused.
    expect((await request(pause, { method: "PUT" })).status).toBe(403);
    const page = await request(`${actions.url}/queues`);
    const cookie = String(page.headers["set-cookie"]?.[0] ?? "").split(";")[0]!;
    expect(page.headers["set-cookie"]?.[0]).toMatch(/^dispatch_token=[\w-]{40,}; Path=\/; HttpOnly; SameSite=Strict$/);
    expect(
      (await request(pause, { method: "POST", headers: { cookie, "content-type": "text/plain" }, body: "{}" })).status,
    ).toBe(405);
    expect(
      (await request(pause, { method: "PUT", headers: { cookie, origin: "http://rebound.attacker.example" } })).status,
    ).toBe(403);
    expect((await request(pause, { method: "PUT", headers: { cookie: "dispatch_token=guessed" } })).status).toBe(403);
    const queue = new Queue(QUEUE, { connection: redis, prefix: queueKeys(QUEUE).bullPrefix });
    try {
      expect(await queue.isPaused()).toBe(false);
      // Its own page's token, from its own origin: done.
      const done = await request(pause, { method: "PUT", headers: { cookie, origin: `http://${host}` } });
      expect(done.status, done.body).toBeLessThan(300);
      expect(await queue.isPaused()).toBe(true);
      const token = cookie.split("=")[1]!;
      expect(
        (
          await request(`${actions.url}/queues/api/queues/${QUEUE}/resume`, {
            method: "PUT",
            headers: { "x-dispatch-token": token },
          })
        ).status,
      ).toBeLessThan(300);
      expect(await queue.isPaused()).toBe(false);

      // The dashboard's own action routes are guarded alike.
      const own = `${actions.url}/api/queue/pause`;
      const json = { "content-type": "application/json" };
      expect(
        (await request(`${readOnly.url}/api/queue/pause`, { method: "POST", headers: json, body: "{}" })).status,
      ).toBe(405);
      expect((await request(own, { method: "POST", headers: json, body: "{}" })).status).toBe(403);
      expect(
        (await request(own, { method: "POST", headers: { cookie, "content-type": "text/plain" }, body: "{}" })).status,
      ).toBe(405);
      expect(
        (
          await request(own, {
            method: "POST",
            headers: { ...json, cookie, origin: "http://rebound.attacker.example" },
            body: "{}",
          })
        ).status,
      ).toBe(403);
      expect(await queue.isPaused()).toBe(false);
      const paused = await request(own, {
        method: "POST",
        headers: { ...json, cookie, origin: `http://${host}` },
        body: "{}",
      });
      expect(paused.status, paused.body).toBe(200);
      expect(JSON.parse(paused.body)).toEqual({ paused: true });
      expect(await queue.isPaused()).toBe(true);
      expect(
        (
          await request(`${actions.url}/api/queue/resume`, {
            method: "POST",
            headers: { ...json, "x-dispatch-token": token },
            body: "{}",
          })
        ).status,
      ).toBe(200);
      expect(await queue.isPaused()).toBe(false);
      // A read-only dashboard shows no action buttons.
      expect((await request(`${readOnly.url}/`)).body).not.toContain("data-action=");
      expect((await request(`${actions.url}/`)).body).toContain('data-action="/api/queue/pause"');
    } finally {
      await queue.close();
    }
  });
});

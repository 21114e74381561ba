/**
 * The real `/healthz` of a CLI worker (`worker --metrics-port`): 200 while its opencode server
 * answers and its Redis connection is ready, 503 when either is gone. Its own redis-server, so the
 * test can kill it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliProcess } from "../support/cli";
import { freePort, startRedisServer, type RedisProcess } from "../support/redis";
import { useStack } from "../support/stack";
import { until } from "../support/until";

interface Health {
  status: number;
  body: { ok: boolean; worker?: string; opencode?: string; redis?: string };
}

describe("the worker's /healthz", () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.close();
  });
  const stack = useStack(() => ({ redisUrl: redis.url }));
  let worker: CliProcess;
  let url: string;

  beforeAll(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}/healthz`;
    worker = await stack.startCliWorker(["--concurrency", "1", "--metrics-port", String(port)], {
      readyLine: /metrics served/,
    });
  });
  // Runs before the stack's close (afterAll hooks run in reverse).
  afterAll(async () => {
    await redis?.start().catch(() => undefined); // so the stack can delete its keys
  });

  const health = async (): Promise<Health> => {
    const response = await fetch(url, { signal: AbortSignal.timeout(8_000) });
    return { status: response.status, body: (await response.json()) as Health["body"] };
  };
  const healthWith = (what: string, status: number) =>
    until(
      what,
      async () => {
        const answer = await health();
        return answer.status === status ? answer : undefined;
      },
      30_000,
    );
  const serverPids = () =>
    [...worker.output().matchAll(/"opencodePid":(\d+)[^\n]*opencode server is ready/g)].map((m) => Number(m[1]));

  it("is 503 naming the opencode server while it is gone, and 200 again once it is replaced", async () => {
    expect(await health()).toEqual({
      status: 200,
      body: { ok: true, worker: expect.any(String), opencode: "ok", redis: "ready" },
    });
    const [pid] = serverPids();
    process.kill(pid!, "SIGKILL");
    const down = await healthWith("a 503", 503);
    expect(down.body).toMatchObject({ ok: false, redis: "ready" });
    expect(down.body.opencode).toEqual(expect.any(String));
    expect(down.body.opencode).not.toBe("ok");
    const up = await healthWith("a 200 from the replacement server", 200);
    expect(up.body).toMatchObject({ ok: true, opencode: "ok", redis: "ready" });
    // The replacement's "ready" line may reach this process a moment after its first 200.
    const replacement = await until(
      "the replacement server's ready line",
      () => serverPids().find((p) => p !== pid),
      10_000,
    );
    expect(replacement).not.toBe(pid);
  });

  it("is 503 naming Redis while it is gone, and 200 again once it is back", async () => {
    expect((await health()).status).toBe(200);
    await redis.kill("SIGKILL");
    const down = await healthWith("a 503", 503);
    expect(down.body).toMatchObject({ ok: false, opencode: "ok" });
    expect(down.body.redis).not.toBe("ready");
    await redis.start();
    expect((await healthWith("a 200 with Redis back", 200)).body).toMatchObject({
      ok: true,
      opencode: "ok",
      redis: "ready",
    });
  });
});

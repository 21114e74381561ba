/**
 * The scheduling core on real Redis and the real opencode server: waiting costs (almost) nothing,
 * chains cannot tie themselves, leases of a dead worker come back, groups share the slots, and a
 * provider's quota holds all workers.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dispatcher } from "../../src/producer/dispatcher";
import { placeInThread } from "../../src/scheduling/placement";
import { queueKeys } from "../../src/shared/keys";
import type { ResultRecord } from "../../src/shared/result";
import { parseTask } from "../../src/shared/task";
import { startCli, type CliProcess } from "../support/cli";
import { startRedisServer, type RedisProcess } from "../support/redis";
import { useStack } from "../support/stack";
import { until } from "../support/until";

const WAIT = 120_000;
const startOf = (r: ResultRecord) => Date.parse(r.startedAt!);
const endOf = (r: ResultRecord) => Date.parse(r.finishedAt!);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function commandsProcessed(redis: Redis): Promise<number> {
  const info = await redis.info("stats");
  return Number(/total_commands_processed:(\d+)/.exec(info)![1]);
}

describe("waiting costs nothing", () => {
  // Its own Redis: every command it counts is this test's.
  let redisServer: RedisProcess;
  let probe: Redis;

  beforeAll(async () => {
    redisServer = await startRedisServer();
  });
  afterAll(async () => {
    await redisServer?.close();
  });
  const stack = useStack(() => ({
    redisUrl: redisServer.url,
    configEnv: { DISPATCH_CONCURRENCY_LIMITS: "fake/priced=1" },
    worker: { concurrency: 4 },
  }));
  beforeAll(() => {
    probe = new Redis(redisServer.url);
  });
  afterAll(() => {
    probe?.disconnect();
  });

  /** Redis commands per job for a batch, with the idle rate (sweeps, BullMQ's own) taken off. */
  async function costPerJob(
    model: string,
    n: number,
    idlePerMs: number,
  ): Promise<{ perJob: number; records: ResultRecord[]; seen: Awaited<ReturnType<Dispatcher["status"]>>[] }> {
    const before = await commandsProcessed(probe);
    const t0 = Date.now();
    const receipts = await stack.dispatcher.enqueueMany(
      Array.from({ length: n }, (_, i) => ({ prompt: `${model} job ${i} [[delay:150]]`, model })),
    );
    // What `status` shows for the last job while the others run (read once: it costs commands too).
    await sleep(400);
    const seen = [await stack.dispatcher.status(receipts.at(-1)!.jobId)];
    const records = await Promise.all(receipts.map((r) => stack.dispatcher.wait(r.jobId, { timeoutMs: WAIT })));
    const elapsed = Date.now() - t0;
    const used = (await commandsProcessed(probe)) - before - idlePerMs * elapsed;
    return { perJob: used / n, records, seen };
  }

  it("a job behind a cap of 1 costs at most twice the Redis commands of an uncapped one, and its attempts stay put", async () => {
    // Warm up (first prompt on a fresh server is slow; scripts get loaded).
    await stack.dispatcher.wait((await stack.dispatcher.enqueue({ prompt: "warm up", model: "fake/echo" })).jobId, {
      timeoutMs: WAIT,
    });
    const idleStart = await commandsProcessed(probe);
    await sleep(3_000);
    const idlePerMs = ((await commandsProcessed(probe)) - idleStart - 1) / 3_000;

    const free = await costPerJob("fake/echo", 20, idlePerMs);
    const capped = await costPerJob("fake/priced", 20, idlePerMs);
    console.log(
      `[scheduling] Redis commands per job: uncapped ${free.perJob.toFixed(1)}, behind a cap of 1 ${capped.perJob.toFixed(1)} (idle ${(idlePerMs * 1000).toFixed(1)}/s)`,
    );

    expect(free.records.every((r) => r.state === "completed" && r.attempts === 1)).toBe(true);
    expect(capped.records.every((r) => r.state === "completed" && r.attempts === 1)).toBe(true);
    // The cap held: one at a time, in the order enqueued.
    const spans = capped.records.map((r) => [startOf(r), endOf(r)] as const);
    if (process.env.SCHED_DEBUG)
      console.log(spans.map(([a, b], i) => `${i}: ${a - spans[0]![0]} → ${b - spans[0]![0]}`).join("\n"));
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
    // While it waited, the last job had run no attempt and said what it waited for.
    expect(capped.seen[0]).toMatchObject({ state: "delayed", attempts: 0 });
    expect(capped.seen[0]!.waitingFor).toMatch(/^waiting for a slot of fake\/priced \(1\/1\)$/);
    expect(capped.perJob).toBeLessThanOrEqual(2 * free.perJob);
  }, 300_000);
});

/** One stack and worker for the chains and fair share below (each spawned server costs seconds). */
describe("on a default stack with one four-slot worker", () => {
  const stack = useStack({ worker: { concurrency: 4 } });

  describe("chains that cannot tie themselves", () => {
    let redis: Redis;

    beforeAll(() => {
      redis = new Redis(stack.redisUrl);
    });
    afterAll(() => {
      redis?.disconnect();
    });

    it("a chain re-submitted after a producer crashed between placing a follow-up and adding it completes in order", async () => {
      const root = await stack.dispatcher.enqueue({ prompt: "crash root [[delay:300]]", id: "crash-root" });
      // The crashed producer had placed crash-f1 in the thread, but never added its job.
      await placeInThread(
        redis,
        queueKeys(stack.queue),
        parseTask({ prompt: "crash f1", continue: "crash-root" }),
        "crash-f1",
        0,
      );
      // Meanwhile another follow-up took its place behind it.
      const f2 = await stack.dispatcher.enqueue({ prompt: "crash f2", continue: "crash-root", id: "crash-f2" });
      await sleep(1_500);
      const waiting = await stack.dispatcher.status(f2.jobId);
      expect(waiting.state).toBe("delayed");
      expect(waiting.waitingFor).toMatch(/^waiting for job crash-f1/);
      // The re-submission finds crash-f1's earlier place (behind the root, not behind crash-f2).
      const f1 = await stack.dispatcher.enqueue({ prompt: "crash f1", continue: "crash-root", id: "crash-f1" });
      const [r0, r1, r2] = await Promise.all(
        [root, f1, f2].map((r) => stack.dispatcher.wait(r.jobId, { timeoutMs: WAIT })),
      );
      expect([r0!.state, r1!.state, r2!.state]).toEqual(["completed", "completed", "completed"]);
      expect(r1!.continues).toBe("crash-root");
      expect(r2!.continues).toBe("crash-f1");
      expect(startOf(r1!)).toBeGreaterThanOrEqual(endOf(r0!));
      expect(startOf(r2!)).toBeGreaterThanOrEqual(endOf(r1!));
      expect(r2!.sessionId).toBe(r0!.sessionId);
    }, 180_000);

    it("two producers racing on one chain run it in order, one at a time", async () => {
      const other = new Dispatcher({ config: stack.config });
      try {
        const root = await stack.dispatcher.enqueue({ prompt: "race root", id: "race-root" });
        const mine = Array.from({ length: 4 }, (_, i) => ({
          prompt: `race mine ${i} [[delay:200]]`,
          continue: "race-root",
          id: `race-a${i}`,
        }));
        const theirs = Array.from({ length: 4 }, (_, i) => ({
          prompt: `race theirs ${i} [[delay:200]]`,
          continue: "race-root",
          id: `race-b${i}`,
        }));
        const receipts = (
          await Promise.all([...mine.map((t) => stack.dispatcher.enqueue(t)), ...theirs.map((t) => other.enqueue(t))])
        ).map((r) => r.jobId);
        const records = await Promise.all(
          [root.jobId, ...receipts].map((id) => stack.dispatcher.wait(id, { timeoutMs: WAIT })),
        );
        expect(records.every((r) => r.state === "completed")).toBe(true);
        // One line: each follow-up continues exactly one other job, starting after it ended.
        const byId = new Map(records.map((r) => [r.jobId, r]));
        const predecessors = records.slice(1).map((r) => r.continues);
        expect(new Set(predecessors).size).toBe(8);
        for (const r of records.slice(1)) {
          const before = byId.get(r.continues!)!;
          expect(startOf(r)).toBeGreaterThanOrEqual(endOf(before));
          expect(r.sessionId).toBe(records[0]!.sessionId);
        }
      } finally {
        await other.close();
      }
    }, 180_000);
  });

  describe("fair share", () => {
    beforeAll(async () => {
      // The first prompts on a fresh server are slow; measure turnovers of a warm one.
      const warm = await stack.dispatcher.enqueueMany(
        Array.from({ length: 4 }, (_, i) => ({ prompt: `fair warm up ${i}` })),
      );
      await Promise.all(warm.map((r) => stack.dispatcher.wait(r.jobId, { timeoutMs: WAIT })));
    });

    it("an app job enqueued behind a large batch starts within a few task turnovers", async () => {
      const batch = await stack.dispatcher.submitBatch(
        Array.from({ length: 60 }, (_, i) => ({ prompt: `bulk ${i} [[delay:400]]` })),
      );
      await until("the batch to be running", async () => (await batch.status()).counts.running > 0);
      const enqueuedAt = Date.now();
      const app = await stack.dispatcher.enqueue({ prompt: "the app's job" });
      const record = await stack.dispatcher.wait(app.jobId, { timeoutMs: WAIT });
      expect(record.state).toBe("completed");
      const waitedMs = startOf(record) - enqueuedAt;
      const members: ResultRecord[] = [];
      batch.on("result", (r) => members.push(r));
      const summary = await batch.wait({ timeoutMs: WAIT });
      expect(summary.completed).toBe(60);
      // Strictly first in, first out it would start after the whole batch (~56 starts later).
      const startedBetween = members.filter((r) => startOf(r) > enqueuedAt && startOf(r) < startOf(record)).length;
      console.log(
        `[scheduling] app job behind a 60-task batch started after ${waitedMs} ms, ${startedBetween} batch tasks started in between`,
      );
      expect(startedBetween).toBeLessThanOrEqual(6);
      expect(waitedMs).toBeLessThan(6_000);
    }, 240_000);

    it("groups given by the producer share the slots round robin", async () => {
      const a = await stack.dispatcher.enqueueMany(
        Array.from({ length: 30 }, (_, i) => ({ prompt: `group a ${i} [[delay:200]]`, group: "a" })),
      );
      const b = await stack.dispatcher.enqueueMany(
        Array.from({ length: 6 }, (_, i) => ({ prompt: `group b ${i} [[delay:200]]`, group: "b" })),
      );
      const records = await Promise.all([...a, ...b].map((r) => stack.dispatcher.wait(r.jobId, { timeoutMs: WAIT })));
      expect(records.every((r) => r.state === "completed")).toBe(true);
      const lastB = Math.max(...records.slice(30).map(startOf));
      const aStartedBefore = records.slice(0, 30).filter((r) => startOf(r) < lastB).length;
      // Round robin: group b's six jobs are done long before group a's thirty.
      expect(aStartedBefore).toBeLessThan(20);
    }, 240_000);
  });
});

describe("leases that cannot leak", () => {
  const stack = useStack({ configEnv: { DISPATCH_LOCK_DURATION: "3s", DISPATCH_STALLED_INTERVAL: "1s" } });
  let dead: CliProcess | undefined;
  afterAll(async () => {
    await dead?.stop("SIGKILL");
  });

  it("a killed worker's concurrency key is free again within the lock duration plus a margin", async () => {
    dead = startCli(["worker", "--concurrency", "2"], { env: { ...stack.childEnv, LOG_LEVEL: "info" } });
    await dead.waitFor(/worker ready/, WAIT);
    await stack.dispatcher.enqueue({
      prompt: "lease holder [[delay:20000]]",
      concurrencyKey: "/srv/lease-repo",
      id: "lease-holder",
    });
    await until("the key holder to run", () => stack.fake.calls("lease holder") >= 1);
    const next = await stack.dispatcher.enqueue({
      prompt: "lease next",
      concurrencyKey: "/srv/lease-repo",
      id: "lease-next",
    });
    await stack.startWorker({ concurrency: 2 });
    await sleep(1_000);
    expect((await stack.dispatcher.status(next.jobId)).waitingFor).toMatch(
      /^waiting for concurrency key \/srv\/lease-repo \(1\/1\)$/,
    );

    dead.child.kill("SIGKILL");
    const killedAt = Date.now();
    const record = await stack.dispatcher.wait(next.jobId, { timeoutMs: WAIT });
    expect(record.state).toBe("completed");
    // Lock 3 s + lease margin 5 s + one sweep beat (≤ 2.7 s), with a little slack.
    expect(startOf(record) - killedAt).toBeLessThan(12_000);
  }, 240_000);
});

describe("a provider's quota holds all workers", () => {
  const stack = useStack({ worker: { concurrency: 8 } });

  it("a 24-task batch against 3 calls per 3 s finishes with no failure and at most 12 rejected calls", async () => {
    // Warm the server first: the quota counts only the batch's calls.
    await stack.dispatcher.wait((await stack.dispatcher.enqueue({ prompt: "quota warm up" })).jobId, {
      timeoutMs: WAIT,
    });
    stack.fake.quota({ calls: 3, perMs: 3_000 });
    const t0 = Date.now();
    const receipts = await stack.dispatcher.enqueueMany(
      Array.from({ length: 24 }, (_, i) => ({ prompt: `quota task ${i}` })),
    );
    const records = await Promise.all(receipts.map((r) => stack.dispatcher.wait(r.jobId, { timeoutMs: 240_000 })));
    const rejected = stack.fake.rejected();
    console.log(`[scheduling] provider quota 3/3 s: 24 tasks in ${Date.now() - t0} ms, ${rejected} rejected calls`);
    expect(records.filter((r) => r.state !== "completed").map((r) => r.error)).toEqual([]);
    expect(stack.fake.calls("quota task")).toBe(24);
    expect(rejected).toBeLessThanOrEqual(12);
    // No task spent an attempt on the quota.
    expect(records.every((r) => r.attempts === 1)).toBe(true);
  }, 300_000);
});

/**
 * Section 5 of `npm run bench`: what a job costs Redis. Counts `total_commands_processed` (commands
 * inside Lua scripts included) around a batch, minus the idle rate of the same setup, per job:
 * raw BullMQ (add + a no-op processor), a plain batch, a batch behind a cap of 1, a chain of
 * follow-ups, and a mix of two groups; then how many jobs a second one Redis carries, from the
 * Redis ops/s measured here (redis-benchmark) and those figures.
 */
import { execFileSync } from "node:child_process";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { Dispatcher } from "../src/producer/dispatcher.js";
import type { Config } from "../src/shared/config.js";
import { queueKeys } from "../src/shared/keys.js";
import type { Logger } from "../src/shared/logger.js";
import { startWorker } from "../src/worker/worker.js";

export interface CostContext {
  redisUrl: string;
  redisPort: number;
  /** A warm opencode server to attach workers to. */
  serverUrl: string;
  configFor(queue: string, env?: Record<string, string>): Config;
  log: Logger;
  tasks: number;
  report(figure: string, value: string, goal?: string): void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function commands(probe: Redis): Promise<number> {
  return Number(/total_commands_processed:(\d+)/.exec(await probe.info("stats"))![1]);
}

/** Commands per job of `run` (which enqueues `jobs` jobs and waits for them), idle traffic taken off. */
async function perJob(probe: Redis, jobs: number, idlePerMs: number, run: () => Promise<void>): Promise<number> {
  const before = await commands(probe);
  const t = Date.now();
  await run();
  const used = (await commands(probe)) - before - 1 - idlePerMs * (Date.now() - t);
  return used / jobs;
}

async function idleRate(probe: Redis, ms = 3_000): Promise<number> {
  const before = await commands(probe);
  await sleep(ms);
  return ((await commands(probe)) - before - 1) / ms;
}

export async function measureRedisCost(ctx: CostContext): Promise<void> {
  const probe = new Redis(ctx.redisUrl);
  const n = ctx.tasks;
  const fmt = (x: number) => x.toFixed(1);
  try {
    // Raw BullMQ: what any BullMQ job costs, the floor for ours.
    const rawName = "bench-cost-raw";
    const connection = new Redis(ctx.redisUrl, { maxRetriesPerRequest: null });
    const rawQueue = new Queue(rawName, { connection, prefix: queueKeys(rawName).bullPrefix });
    let done = 0;
    let allDone: () => void = () => undefined;
    const rawWorker = new Worker(rawName, async () => ((done += 1) === n ? allDone() : undefined), {
      connection,
      prefix: queueKeys(rawName).bullPrefix,
      concurrency: 8,
    });
    await rawWorker.waitUntilReady();
    const rawIdle = await idleRate(probe);
    const raw = await perJob(probe, n, rawIdle, async () => {
      const finished = new Promise<void>((resolve) => (allDone = resolve));
      await rawQueue.addBulk(
        Array.from({ length: n }, (_, i) => ({
          name: "dispatch",
          data: { i },
          opts: { jobId: `raw-${i}`, removeOnComplete: { age: 3600 } },
        })),
      );
      await finished;
    });
    await rawWorker.close();
    await rawQueue.close();
    connection.disconnect();

    const scenario = async (
      name: string,
      env: Record<string, string>,
      run: (d: Dispatcher) => Promise<void>,
    ): Promise<number> => {
      const config = ctx.configFor(name, env);
      const worker = await startWorker({ config, attach: ctx.serverUrl, concurrency: 8, log: ctx.log });
      const dispatcher = new Dispatcher({ config });
      try {
        await dispatcher.wait((await dispatcher.enqueue({ prompt: `${name} warm-up`, model: "fake/echo" })).jobId);
        const idle = await idleRate(probe);
        return await perJob(probe, n, idle, () => run(dispatcher));
      } finally {
        await dispatcher.close();
        await worker.close({ graceMs: 0 });
      }
    };
    const batchOf =
      (tasks: { prompt: string; model: string; id?: string; continue?: string; group?: string }[]) =>
      async (d: Dispatcher) => {
        const summary = await (await d.submitBatch(tasks)).wait();
        if (summary.failed) throw new Error(`${summary.failed} tasks failed: ${JSON.stringify(summary.failures[0])}`);
      };
    const tasks = (tag: string) => Array.from({ length: n }, (_, i) => ({ prompt: `${tag} ${i}`, model: "fake/echo" }));

    const plain = await scenario("bench-cost-plain", {}, batchOf(tasks("cost plain")));
    const capped = await scenario(
      "bench-cost-capped",
      { DISPATCH_CONCURRENCY_LIMITS: "fake=1" },
      batchOf(tasks("cost capped")),
    );
    const chain = await scenario(
      "bench-cost-chain",
      {},
      batchOf(
        tasks("cost chain").map((t, i) => ({ ...t, id: `link-${i}`, ...(i > 0 ? { continue: `link-${i - 1}` } : {}) })),
      ),
    );
    const mixed = await scenario("bench-cost-groups", {}, async (d) => {
      const [a, b] = await Promise.all([
        d.enqueueMany(
          tasks("cost group a")
            .slice(0, n / 2)
            .map((t) => ({ ...t, group: "a" })),
        ),
        d.enqueueMany(
          tasks("cost group b")
            .slice(0, n / 2)
            .map((t) => ({ ...t, group: "b" })),
        ),
      ]);
      await Promise.all([a.wait(), b.wait()]);
    });

    ctx.report(`raw BullMQ: add + no-op processor (${n} jobs)`, `${fmt(raw)} commands/job`);
    ctx.report(`plain batch (${n} tasks)`, `${fmt(plain)} commands/job (${(plain / raw).toFixed(2)} of raw)`);
    ctx.report(
      `batch behind a cap of 1 (fake=1)`,
      `${fmt(capped)} commands/job (${(capped / plain).toFixed(2)} of plain)`,
      "≤ 2 × plain",
    );
    ctx.report(`chain of ${n} follow-ups`, `${fmt(chain)} commands/job (${(chain / plain).toFixed(2)} of plain)`);
    ctx.report(
      `two groups of ${n / 2}, enqueued together`,
      `${fmt(mixed)} commands/job (${(mixed / plain).toFixed(2)} of plain)`,
    );

    // What one Redis carries: its ops/s on this machine over commands per job.
    const out = execFileSync(
      "redis-benchmark",
      ["-p", String(ctx.redisPort), "-q", "-n", "200000", "-c", "50", "-t", "set,get,lpush,lpop,zadd"],
      { encoding: "utf8" },
    );
    const rates = [...out.matchAll(/:\s*([\d.]+) requests per second/g)].map((m) => Number(m[1]));
    const opsPerSec = rates.reduce((a, b) => a + b, 0) / rates.length;
    ctx.report(
      "Redis ops/s here (redis-benchmark SET/GET/LPUSH/LPOP/ZADD, 50 clients, mean)",
      `${Math.round(opsPerSec).toLocaleString("en")}`,
    );
    ctx.report(
      "jobs/s one Redis carries: plain / behind a cap / raw BullMQ",
      `${Math.round(opsPerSec / plain)} / ${Math.round(opsPerSec / capped)} / ${Math.round(opsPerSec / raw)}`,
    );
  } finally {
    probe.disconnect();
  }
}

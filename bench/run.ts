/**
 * `npm run bench` — the queue against the direct alternatives, side by side in one process tree:
 * a local redis-server, the fake model (test/support/fake-model.ts), real `opencode serve`s.
 *
 *   npm run bench                    # the full run (~15 min on 2 cores)
 *   npm run bench -- --quick         # smaller samples (~2-3 min)
 *   npm run bench -- --only 1,3      # some sections: 1 dispatch, 2 batch vs `opencode run`, 3 enqueue, 4 memory,
 *                                    # 5 Redis commands per job (plain, capped, chain, groups)
 *
 * Prints every figure and ratio, then a Markdown table for BENCHMARKS.md.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { Dispatcher } from "../src/producer/dispatcher.js";
import { fileSource } from "../src/producer/batch/source.js";
import { loadConfig, type Config } from "../src/shared/config.js";
import { queueKeys } from "../src/shared/keys.js";
import { createLogger } from "../src/shared/logger.js";
import { BACKOFF, RETENTION } from "../src/shared/queue.js";
import { parseTask, toPayload } from "../src/shared/task.js";
import { startWorker, type RunningWorker } from "../src/worker/worker.js";
import { startFakeModel } from "../test/support/fake-model.js";
import { makeOpencodeEnv, OPENCODE_BIN } from "../test/support/opencode-env.js";
import { startOpencodeServer, type OpencodeServer } from "../test/support/opencode-server.js";
import { startRedisServer } from "../test/support/redis.js";
import { childrenOf, countingProxy, fmt, mib, perSec, percentile, pool, sampleRss } from "./measure.js";
import { measureRedisCost } from "./redis-cost.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string", default: "1,2,3,4,5" },
    tasks: { type: "string" },
    "run-sample": { type: "string" },
    enqueue: { type: "string" },
  },
});
const quick = flags.quick;
const only = new Set(flags.only.split(",").map((s) => s.trim()));
const TASKS = Number(flags.tasks ?? (quick ? 120 : 300)); // per throughput measurement
const RUN_SAMPLE = Number(flags["run-sample"] ?? (quick ? 2 : 5));
const ENQUEUE = Number(flags.enqueue ?? (quick ? 10_000 : 30_000));
const PRODUCER_LINES = 100_000;

const results: { section: string; figure: string; value: string; goal?: string }[] = [];
function report(section: string, figure: string, value: string, goal?: string) {
  results.push({ section, figure, value, goal });
  console.log(`  ${figure}: ${value}${goal ? `   (goal ${goal})` : ""}`);
}

const log = createLogger("warn");
const say = (line: string) => console.log(`\n== ${line}`);

// ---------------------------------------------------------------------------------------------
console.log(`opencode-dispatch bench: ${quick ? "quick" : "full"} run, sections ${[...only].join(",")}`);
try {
  // dist/ for the CLI child processes of section 4 (tsc still emits when it reports type errors)
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit",
  });
} catch {
  console.warn("tsc reported errors (above); dist/ was emitted anyway");
}
const redis = await startRedisServer();
const fake = await startFakeModel();
const oc = await makeOpencodeEnv(fake.url);
const ocEnv = { ...process.env, ...oc.env };
const baseEnv = { REDIS_URL: redis.url, DISPATCH_DATA_DIR: join(oc.root, "workers"), LOG_LEVEL: "warn" };
const configFor = (queue: string, env: Record<string, string> = {}): Config =>
  loadConfig({ ...baseEnv, ...env, DISPATCH_QUEUE: queue });
const cleanups: (() => Promise<unknown>)[] = [];

async function startServer(): Promise<{ server: OpencodeServer; client: OpencodeClient }> {
  const server = await startOpencodeServer({ env: oc.env, cwd: join(oc.root, "project"), timeoutMs: 90_000 });
  cleanups.push(() => server.stop());
  const client = createOpencodeClient({ baseUrl: server.url });
  await pool(4, 4, (i) => directTask(client, `warm-up ${i}`)); // the first prompts on a server are slow
  return { server, client };
}

/**
 * What a knowledgeable SDK user writes for a task: a session with a title (as the worker creates
 * it; without one opencode asks the model for a title), one prompt, the answer read from the
 * prompt's response. `untitled`: the session without a title (an extra title call per task).
 */
async function directTask(client: OpencodeClient, prompt: string, untitled = false): Promise<void> {
  const session = await client.session.create(untitled ? {} : { title: prompt.slice(0, 60) });
  if (!session.data) throw new Error(`session.create failed: ${JSON.stringify(session.error)}`);
  const answer = await client.session.prompt({
    sessionID: session.data.id,
    model: { providerID: "fake", modelID: "echo" },
    parts: [{ type: "text", text: prompt }],
  });
  if (!answer.data || answer.data.info.error)
    throw new Error(`prompt failed: ${JSON.stringify(answer.error ?? answer.data?.info.error)}`);
  if (!answer.data.parts.some((p) => p.type === "text" && p.text)) throw new Error("prompt answered no text");
}

async function direct(
  clients: OpencodeClient[],
  count: number,
  concurrencyPerServer: number,
  tag: string,
  untitled = false,
): Promise<number> {
  const ms = await pool(count, concurrencyPerServer * clients.length, (i) =>
    directTask(clients[i % clients.length]!, `${tag} ${i}`, untitled),
  );
  return perSec(count, ms);
}

async function throughQueue(dispatcher: Dispatcher, count: number, tag: string): Promise<number> {
  const started = performance.now();
  const batch = await dispatcher.submitBatch(
    Array.from({ length: count }, (_, i) => ({ prompt: `${tag} ${i}` })),
    { defaults: { model: "fake/echo" } },
  );
  const summary = await batch.wait();
  if (summary.failed) throw new Error(`${summary.failed} queued tasks failed: ${JSON.stringify(summary.failures[0])}`);
  return perSec(count, performance.now() - started);
}

/** One `opencode run` as a user would type it, timed; fails unless the model was really asked. */
async function timedRun(args: string[]): Promise<number> {
  const asked = fake.calls();
  const t = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(OPENCODE_BIN, args, { cwd: join(oc.root, "project"), env: ocEnv, stdio: "ignore" });
    const timer = setTimeout(() => child.kill("SIGKILL"), 180_000);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`opencode ${args.slice(0, 2).join(" ")} exited ${code ?? signal}`));
    });
  });
  if (fake.calls() <= asked) throw new Error(`opencode ${args.join(" ")} finished without asking the model`);
  return performance.now() - t;
}

let shared:
  | {
      server: OpencodeServer;
      client: OpencodeClient;
      worker: RunningWorker;
      dispatcher: Dispatcher;
      concurrency: number;
    }
  | undefined;
async function sharedStack(concurrency: number) {
  if (shared) return shared;
  const { server, client } = await startServer();
  const config = configFor("bench-dispatch");
  const worker = await startWorker({ config, attach: server.url, concurrency, log });
  const dispatcher = new Dispatcher({ config });
  cleanups.push(
    () => dispatcher.close(),
    () => worker.close({ graceMs: 0 }),
  );
  shared = { server, client, worker, dispatcher, concurrency };
  return shared;
}

try {
  // 1. Dispatch throughput ----------------------------------------------------------------------
  let bestDirect = { rate: 0, label: "" };
  const sameConcurrency = 8; // the best single-server setting seen on 2 cores
  if (only.has("1")) {
    say(`1. dispatch throughput (${TASKS} trivial tasks per measurement)`);
    const sweep: [number, number][] = quick
      ? [
          [1, 4],
          [1, 8],
          [1, 16],
          [2, 8],
        ]
      : [
          [1, 2],
          [1, 4],
          [1, 8],
          [1, 16],
          [2, 4],
          [2, 8],
          [2, 16],
        ];
    for (const servers of [...new Set(sweep.map(([s]) => s))]) {
      const started = await Promise.all(Array.from({ length: servers }, () => startServer()));
      for (const [, c] of sweep.filter(([s]) => s === servers)) {
        const rate = await direct(
          started.map((s) => s.client),
          Math.round(TASKS / 2),
          c,
          `sweep-${servers}x${c}`,
        );
        report("1", `direct SDK, ${servers} server(s) × concurrency ${c}`, `${fmt(rate)} tasks/s`);
        if (rate > bestDirect.rate) bestDirect = { rate, label: `${servers}×${c}` };
      }
      await Promise.all(started.map((s) => s.server.stop()));
    }
    const s = await sharedStack(sameConcurrency);
    // Side by side, alternating, best of two each (the machine is shared; drift hits both).
    const directRates: number[] = [];
    const untitledRates: number[] = [];
    const queueRates: number[] = [];
    for (let round = 0; round < 2; round++) {
      directRates.push(await direct([s.client], TASKS, sameConcurrency, `direct-${round}`));
      queueRates.push(await throughQueue(s.dispatcher, TASKS, `queued-${round}`));
      untitledRates.push(await direct([s.client], TASKS, sameConcurrency, `untitled-${round}`, true));
    }
    const d = Math.max(...directRates);
    const u = Math.max(...untitledRates);
    const q = Math.max(...queueRates);
    if (d > bestDirect.rate) bestDirect = { rate: d, label: `1×${sameConcurrency}` };
    report(
      "1",
      `direct SDK (titled sessions: the fair baseline), same server, concurrency ${sameConcurrency} (runs: ${directRates.map((r) => fmt(r)).join(", ")})`,
      `${fmt(d)} tasks/s`,
    );
    report(
      "1",
      `direct SDK, untitled sessions (a title call per task), concurrency ${sameConcurrency} (runs: ${untitledRates.map((r) => fmt(r)).join(", ")})`,
      `${fmt(u)} tasks/s`,
    );
    report(
      "1",
      `through the queue, worker concurrency ${sameConcurrency}, same server (runs: ${queueRates.map((r) => fmt(r)).join(", ")})`,
      `${fmt(q)} tasks/s`,
    );
    report("1", "queue / fair direct (titled) at the same concurrency", fmt(q / d, 2), "≥ 0.95");
    report("1", "queue / untitled direct", fmt(q / u, 2));
    report("1", `queue / best direct config (${bestDirect.label})`, fmt(q / bestDirect.rate, 2));

    // HTTP calls on the opencode server per task, counted by a proxy in front of it.
    const proxy = await countingProxy(s.server.url);
    cleanups.push(() => proxy.close());
    const counted = await startWorker({
      config: configFor("bench-calls"),
      attach: proxy.url,
      concurrency: sameConcurrency,
      log,
    });
    const countedDispatcher = new Dispatcher({ config: configFor("bench-calls") });
    cleanups.push(
      () => countedDispatcher.close(),
      () => counted.close({ graceMs: 0 }),
    );
    const N = 40;
    await throughQueue(countedDispatcher, 8, "calls-warm-up");
    proxy.reset();
    await throughQueue(countedDispatcher, N, "calls");
    const byRoute = [...proxy.counts.entries()]
      .filter(([k]) => !k.endsWith("/global/event"))
      .map(([k, n]) => `${k} ${fmt(n / N, 2)}`)
      .join("; ");
    report("1", `opencode HTTP calls per queued task (${byRoute})`, fmt(proxy.total() / N, 2));
    proxy.reset();
    const viaProxy = createOpencodeClient({ baseUrl: proxy.url });
    await pool(N, sameConcurrency, (i) => directTask(viaProxy, `direct-calls ${i}`));
    report("1", "opencode HTTP calls per direct SDK task (titled session, one prompt)", fmt(proxy.total() / N, 2));

    // What users run for real: tasks whose agent takes several tool steps (three bash rounds).
    const STEPS = quick ? 40 : 100;
    const stepDirect: number[] = [];
    const stepQueue: number[] = [];
    for (let round = 0; round < 2; round++) {
      stepDirect.push(await direct([s.client], STEPS, sameConcurrency, `steps-direct-${round} [[rounds:3]]`));
      stepQueue.push(await throughQueue(s.dispatcher, STEPS, `steps-queued-${round} [[rounds:3]]`));
    }
    const sd = Math.max(...stepDirect);
    const sq = Math.max(...stepQueue);
    report(
      "1",
      `tasks of three bash rounds (4 model calls each), direct SDK, concurrency ${sameConcurrency} (runs: ${stepDirect.map((r) => fmt(r)).join(", ")})`,
      `${fmt(sd)} tasks/s`,
    );
    report(
      "1",
      `tasks of three bash rounds, through the queue (runs: ${stepQueue.map((r) => fmt(r)).join(", ")})`,
      `${fmt(sq)} tasks/s`,
    );
    report("1", "queue / direct, tasks of three bash rounds", fmt(sq / sd, 2));
  }

  // 2. A 100-task batch vs a loop of `opencode run` ----------------------------------------------
  if (only.has("2")) {
    say(`2. a 100-task batch through the queue vs a loop of \`opencode run\` (sample of ${RUN_SAMPLE}, extrapolated)`);
    const s = await sharedStack(sameConcurrency);
    const started = performance.now();
    await throughQueue(s.dispatcher, 100, "hundred");
    const batchMs = performance.now() - started;
    // Async, never execFileSync: the fake model answers from this very process, so blocking its
    // event loop would leave `opencode run` waiting for a model that cannot answer.
    const runs: number[] = [];
    for (let i = 0; i < RUN_SAMPLE; i++)
      runs.push(await timedRun(["run", "--model", "fake/echo", `opencode run sample ${i}`]));
    const attached: number[] = [];
    for (let i = 0; i < RUN_SAMPLE; i++) {
      attached.push(
        await timedRun(["run", "--attach", s.server.url, "--model", "fake/echo", `opencode run attached ${i}`]),
      );
    }
    const perAttached = attached.reduce((a, b) => a + b, 0) / attached.length;
    const perRun = runs.reduce((a, b) => a + b, 0) / runs.length;
    report("2", "100-task batch through the queue (1 worker, 1 warm server)", `${fmt(batchMs / 1000)} s`);
    report(
      "2",
      `\`opencode run\` per task (mean of ${RUN_SAMPLE}: ${runs.map((r) => fmt(r / 1000)).join(", ")} s)`,
      `${fmt(perRun / 1000, 2)} s`,
    );
    report("2", "loop of 100 `opencode run` (extrapolated)", `${fmt((perRun * 100) / 1000)} s`);
    report("2", "speed-up of the queue", `${fmt((perRun * 100) / batchMs)}×`, "≥ 25×");
    report(
      "2",
      `\`opencode run --attach\` to the same warm server, per task (mean of ${RUN_SAMPLE})`,
      `${fmt(perAttached / 1000, 2)} s`,
    );
    report("2", "speed-up of the queue over a loop of `run --attach`", `${fmt((perAttached * 100) / batchMs)}×`);
  }

  // 3. Enqueue throughput and pickup latency ------------------------------------------------------
  if (only.has("3")) {
    say(`3. enqueue throughput (${ENQUEUE} tasks) and add→start pickup latency`);
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    cleanups.push(async () => connection.disconnect());
    const config = configFor("x");
    const tasks = Array.from({ length: ENQUEUE }, (_, i) => ({
      prompt: `enqueue bench task ${i}`,
      model: "fake/echo",
    }));
    const textFile = join(oc.root, "enqueue.txt");
    writeFileSync(textFile, tasks.map((t) => t.prompt).join("\n") + "\n");
    let round = 0;
    const fresh = () => `bench-enq-${round++}`;
    const obliterate = async (name: string) => {
      const keys = await connection.keys(`dispatch:{${name}}:*`);
      for (let i = 0; i < keys.length; i += 5_000) await connection.del(...keys.slice(i, i + 5_000));
    };
    const measure = async (fn: (queue: string) => Promise<void>): Promise<number> => {
      const name = fresh();
      const t = performance.now();
      await fn(name);
      const rate = perSec(ENQUEUE, performance.now() - t);
      await obliterate(name);
      return rate;
    };
    // The raw baseline gets its payloads ready-made: only addBulk is timed.
    const now = new Date();
    const rawJobs = tasks.map((task, i) => ({
      name: "dispatch",
      data: toPayload(parseTask(task), { timeoutMs: config.jobTimeoutMs }, now),
      opts: {
        jobId: `raw-${i}`,
        attempts: 3,
        backoff: BACKOFF,
        removeOnComplete: RETENTION.completed,
        removeOnFail: RETENTION.failed,
      },
    }));
    // As most code calls it (one chunk at a time), and pipelined like the producer (two in flight).
    const raw = (name: string, window: number) => async () => {
      const queue = new Queue(name, { connection, prefix: queueKeys(name).bullPrefix });
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < ENQUEUE; i += 1_000) {
        if (pending.length >= window) await pending.shift();
        pending.push(queue.addBulk(rawJobs.slice(i, i + 1_000)));
      }
      await Promise.all(pending);
      await queue.close();
    };
    const ours = (name: string, how: "enqueueMany" | "batch-array" | "batch-file") => async () => {
      const dispatcher = new Dispatcher({ config: configFor(name) });
      if (how === "enqueueMany") await dispatcher.enqueueMany(tasks);
      else if (how === "batch-array") await dispatcher.submitBatch(tasks);
      else await dispatcher.submitBatch(await fileSource(textFile), { defaults: { model: "fake/echo" } });
      await dispatcher.close();
    };
    const best: Record<string, number> = { raw: 0, raw2: 0, enqueueMany: 0, "batch-array": 0, "batch-file": 0 };
    for (let r = 0; r < 3; r++) {
      best.raw = Math.max(best.raw!, await measure((n) => raw(n, 1)()));
      best.raw2 = Math.max(best.raw2!, await measure((n) => raw(n, 2)()));
      for (const how of ["enqueueMany", "batch-array", "batch-file"] as const)
        best[how] = Math.max(best[how]!, await measure((n) => ours(n, how)()));
    }
    const ratios = (rate: number) =>
      `${fmt(rate, 0)} tasks/s (${fmt(rate / best.raw!, 2)} of raw; ${fmt(rate / best.raw2!, 2)} of raw with two in flight)`;
    report(
      "3",
      "raw BullMQ addBulk (chunks of 1,000, same payloads, one chunk at a time)",
      `${fmt(best.raw!, 0)} tasks/s`,
    );
    report("3", "raw BullMQ addBulk, two chunks in flight", `${fmt(best.raw2!, 0)} tasks/s`);
    report("3", "Dispatcher.enqueueMany", ratios(best.enqueueMany!), "≥ 0.8");
    report("3", "Dispatcher.submitBatch (array)", ratios(best["batch-array"]!), "≥ 0.8");
    report(
      "3",
      "Dispatcher.submitBatch (text file, validate pass + enqueue pass)",
      ratios(best["batch-file"]!),
      "≥ 0.8",
    );

    const s = await sharedStack(sameConcurrency);
    const latencies: number[] = [];
    for (let i = 0; i < (quick ? 20 : 50); i++) {
      const { jobId } = await s.dispatcher.enqueue({ prompt: `pickup ${i}`, model: "fake/echo" });
      const record = await s.dispatcher.wait(jobId);
      latencies.push(Date.parse(record.startedAt!) - Date.parse(record.enqueuedAt!));
    }
    report(
      "3",
      `add→start pickup latency, idle worker (${latencies.length} jobs, one at a time)`,
      `p50 ${percentile(latencies, 50)} ms, p95 ${percentile(latencies, 95)} ms`,
    );
  }

  // 5. Redis commands per job ------------------------------------------------------------------------
  if (only.has("5")) {
    say("5. Redis commands per job, and the jobs/s one Redis carries");
    const s = await sharedStack(sameConcurrency);
    await measureRedisCost({
      redisUrl: redis.url,
      redisPort: redis.port,
      serverUrl: s.server.url,
      configFor,
      log,
      tasks: quick ? 40 : 100,
      report: (figure, value, goal) => report("5", figure, value, goal),
    });
  }

  // 4. Memory -------------------------------------------------------------------------------------
  if (only.has("4")) {
    say("4. memory: worker at concurrency 32, producer enqueueing 100,000 tasks");
    if (shared) {
      await shared.worker.close({ graceMs: 0 });
      await shared.server.stop();
    }
    const bin = join(root, "bin/opencode-dispatch.js");
    const env = { ...ocEnv, ...baseEnv, LOG_LEVEL: "info" };
    const worker = spawn(process.execPath, [bin, "worker", "--concurrency", "32", "--queue", "bench-rss"], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    cleanups.push(() => stop(worker));
    await new Promise<void>((resolve, reject) => {
      let out = "";
      worker.stderr.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("worker ready")) resolve();
      });
      worker.once("exit", (code) => reject(new Error(`worker exited (${code}): ${out}`)));
    });
    const opencodePid = () => childrenOf(worker.pid!)[0];
    const idle = sampleRss(() => ({ worker: worker.pid, opencode: opencodePid() }));
    const idlePeak = idle.stop();
    const dispatcher = new Dispatcher({ config: configFor("bench-rss") });
    cleanups.push(() => dispatcher.close());
    const sampler = sampleRss(() => ({ worker: worker.pid, opencode: opencodePid() }));
    const count = Math.max(64, TASKS);
    const rate = await throughQueue(dispatcher, count, "rss");
    const peak = sampler.stop();
    report(
      "4",
      "worker process RSS (node), idle → peak at concurrency 32",
      `${mib(idlePeak.worker ?? 0)} → ${mib(peak.worker ?? 0)}`,
    );
    report("4", "its opencode server RSS, idle → peak", `${mib(idlePeak.opencode ?? 0)} → ${mib(peak.opencode ?? 0)}`);
    report("4", `throughput at concurrency 32 (${count} tasks)`, `${fmt(rate)} tasks/s`);
    await stop(worker);

    // --trace-gc prints each full GC's heap "before -> after": the after is what the producer holds.
    for (const lines of quick ? [10_000, PRODUCER_LINES] : [10_000, PRODUCER_LINES, 3 * PRODUCER_LINES]) {
      const file = join(oc.root, `producer-${lines}.txt`);
      writeFileSync(file, Array.from({ length: lines }, (_, i) => `producer memory task ${i}`).join("\n") + "\n");
      const producer = spawn(
        process.execPath,
        ["--trace-gc", bin, "batch", file, "--model", "fake/echo", "--queue", `bench-producer-${lines}`],
        { env: { ...env, LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "inherit"] },
      );
      let trace = "";
      producer.stdout.on("data", (d: Buffer) => (trace += d.toString()));
      const t = performance.now();
      const rss = sampleRss(() => ({ producer: producer.pid }), 50);
      const code = await new Promise<number | null>((resolve) => producer.once("exit", resolve));
      const ms = performance.now() - t;
      const peakProducer = rss.stop().producer ?? 0;
      if (code !== 0) throw new Error(`batch of ${lines} exited ${code}`);
      const live = [...trace.matchAll(/Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \(/g)].map((m) => Number(m[1]));
      report(
        "4",
        `producer \`batch\` CLI, ${lines.toLocaleString("en")} lines: peak RSS, time`,
        `${mib(peakProducer)}, ${fmt(ms / 1000)} s (${fmt(perSec(lines, ms), 0)} tasks/s incl. start-up)`,
      );
      report(
        "4",
        `producer \`batch\` CLI, ${lines.toLocaleString("en")} lines: live heap after full GCs (${live.length} GCs, max)`,
        live.length ? `${fmt(Math.max(...live), 0)} MB` : "no full GC",
      );
      const cleaner = new Redis(redis.url);
      await cleaner.flushall().catch(() => undefined);
      cleaner.disconnect();
    }
  }
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await fake.close();
  await redis.close();
  await oc.cleanup();
}

console.log("\n| # | figure | value | goal |\n|---|---|---|---|");
for (const r of results) console.log(`| ${r.section} | ${r.figure} | ${r.value} | ${r.goal ?? ""} |`);
process.exit(0);

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
  });
}

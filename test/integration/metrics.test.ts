/**
 * Worker metrics: a real worker fed by the fake model, its Prometheus endpoint scraped over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/shared/logger";
import {
  createWorkerMetrics,
  serveMetrics,
  type MetricsServer,
  type WorkerMetrics,
} from "../../src/worker/queue/metrics";
import { startWorker, type RunningWorker } from "../../src/worker/worker";
import { useStack } from "../support/stack";

/** The value of one sample line `name{labels} value`, or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = line.slice(name.length).split("}")[0] ?? "";
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`)))
      return Number(line.split(" ").at(-1));
  }
  return undefined;
}

describe("worker metrics", () => {
  const stack = useStack();
  let metrics: WorkerMetrics;
  let worker: RunningWorker;
  let server: MetricsServer;

  beforeAll(async () => {
    metrics = createWorkerMetrics();
    worker = await startWorker({
      config: stack.config,
      concurrency: 2,
      serverEnv: { ...process.env, ...stack.opencode.env },
      log: createLogger(stack.config.logLevel),
      metrics,
    });
    server = await serveMetrics({
      registry: metrics.registry,
      port: 0,
      host: "127.0.0.1",
      health: async () => ({ ok: metrics.redisStatus() === "ready", redis: metrics.redisStatus() }),
    });
  });
  afterAll(async () => {
    await server?.close();
    await worker?.close({ graceMs: 0 });
  });

  it("counts completed, retried and failed jobs by model, with tokens, cost, durations and queue depth", async () => {
    const q = stack.queue;
    const done = await stack.dispatcher.run({ prompt: "measure me", model: "fake/priced" }, { timeoutMs: 120_000 });
    expect(done.state).toBe("completed");
    const failed = await stack.dispatcher.run(
      { prompt: "denied [[status:401]]", model: "fake/echo", attempts: 3 },
      { timeoutMs: 120_000 },
    );
    expect(failed.state).toBe("failed");
    // First attempt hangs until its timeout (retryable), the second gets the default echo.
    stack.fake.script({ hang: true });
    const retried = await stack.dispatcher.run(
      // Long enough for a second attempt on a loaded machine; the first one hangs until it passes.
      { prompt: "second time lucky", model: "fake/echo", timeout: "8s", attempts: 2 },
      { timeoutMs: 120_000 },
    );
    expect(retried).toMatchObject({ state: "completed", attempts: 2 });
    // A job that waits (delayed) shows up in the queue depth.
    await stack.dispatcher.enqueue({ prompt: "later", delay: 3_600_000 });
    // The counters follow BullMQ's events, handled asynchronously: wait until every job is counted.
    const counted = async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      return [
        sample(text, "dispatch_jobs_completed_total", { queue: q, model: "fake/priced" }),
        sample(text, "dispatch_jobs_completed_total", { queue: q, model: "fake/echo" }),
        sample(text, "dispatch_jobs_failed_total", { queue: q, model: "fake/echo" }),
        sample(text, "dispatch_jobs_retried_total", { queue: q, model: "fake/echo" }),
      ];
    };
    await expect.poll(counted, { timeout: 10_000 }).toEqual([1, 1, 1, 1]);

    const response = await fetch(`${server.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/plain");
    const text = await response.text();
    expect(sample(text, "dispatch_jobs_completed_total", { queue: q, model: "fake/priced" })).toBe(1);
    expect(sample(text, "dispatch_jobs_completed_total", { queue: q, model: "fake/echo" })).toBe(1);
    expect(sample(text, "dispatch_jobs_failed_total", { queue: q, model: "fake/echo" })).toBe(1);
    expect(sample(text, "dispatch_jobs_retried_total", { queue: q, model: "fake/echo" })).toBe(1);
    expect(sample(text, "dispatch_tokens_total", { queue: q, model: "fake/priced", kind: "input" })).toBe(
      done.tokens!.input,
    );
    expect(sample(text, "dispatch_cost_total", { queue: q, model: "fake/priced" })).toBeCloseTo(done.cost!, 6);
    expect(done.cost!).toBeGreaterThan(0);
    expect(
      sample(text, "dispatch_job_duration_seconds_count", { queue: q, model: "fake/priced", outcome: "completed" }),
    ).toBe(1);
    expect(
      sample(text, "dispatch_job_duration_seconds_count", { queue: q, model: "fake/echo", outcome: "retried" }),
    ).toBe(1);
    expect(sample(text, "dispatch_queue_jobs", { queue: q, state: "delayed" })).toBe(1);
    expect(sample(text, "dispatch_queue_jobs", { queue: q, state: "completed" })).toBe(2);
    expect(sample(text, "dispatch_queue_jobs", { queue: q, state: "failed" })).toBe(1);
    expect(sample(text, "dispatch_worker_active_jobs", { queue: q })).toBe(0);
    expect(sample(text, "dispatch_opencode_server_restarts_total")).toBe(0);
    expect(text).toContain("process_cpu_seconds_total");
  });

  it("counts an opencode server restart when the worker replaces a dead server", async () => {
    const pid = worker.server().pid!;
    const before = worker.server();
    process.kill(pid, "SIGKILL");
    const deadline = Date.now() + 60_000;
    while ((worker.server() === before || !worker.server().pid) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(worker.server()).not.toBe(before);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(sample(text, "dispatch_opencode_server_restarts_total")).toBe(1);
  });

  it("answers /healthz with a JSON report, and 404 elsewhere", async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true, redis: "ready" });
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
  });
});

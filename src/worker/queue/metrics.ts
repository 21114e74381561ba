import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Job, Queue, Worker } from "bullmq";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Redis } from "ioredis";
import type { Logger } from "../../shared/logger.js";
import { openQueue } from "../../shared/queue.js";
import type { ResultRecord } from "../../shared/result.js";
import type { ResultStore } from "../../shared/result-store.js";

/** What the worker hands to `attach`: its BullMQ worker, result store and Redis connection. */
export interface MetricsTarget {
  worker: Worker;
  store: ResultStore;
  connection: Redis;
  queue: string;
  /**
   * Jobs in the worker's processor now. (BullMQ emits `active` for every fetch but no event for a
   * job its processor sends back to the queue with DelayedError or WaitingError.)
   */
  running: () => number;
}

/**
 * Prometheus metrics of one worker process. The worker calls `attach` once its BullMQ worker runs
 * (the metrics follow its `completed`/`failed` events and read the result records for model, tokens
 * and cost) and `serverRestarted` whenever it replaces its opencode server.
 */
export interface WorkerMetrics {
  registry: Registry;
  attach(target: MetricsTarget): () => Promise<void>;
  serverRestarted(): void;
  /** The state of the attached worker's Redis connection ("ready" when healthy). */
  redisStatus(): string;
}

const QUEUE_STATES = ["waiting", "prioritized", "delayed", "active", "completed", "failed"] as const;

/** Model label: the job's model, or "default" when the job left it to the server. */
const modelOf = (record: ResultRecord | null, job?: Job): string =>
  record?.model ?? (job?.data as { model?: string } | undefined)?.model ?? "default";

export function createWorkerMetrics(opts: { log?: Logger; defaultMetrics?: boolean } = {}): WorkerMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const labelNames = ["queue", "model"] as const;
  const completed = new Counter({
    name: "dispatch_jobs_completed_total",
    help: "Jobs completed",
    labelNames,
    registers: [registry],
  });
  const failed = new Counter({
    name: "dispatch_jobs_failed_total",
    help: "Jobs failed for good",
    labelNames,
    registers: [registry],
  });
  const retried = new Counter({
    name: "dispatch_jobs_retried_total",
    help: "Attempts that failed and will be retried",
    labelNames,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "dispatch_job_duration_seconds",
    help: "Duration of finished attempts",
    labelNames: ["queue", "model", "outcome"],
    buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    registers: [registry],
  });
  const tokens = new Counter({
    name: "dispatch_tokens_total",
    help: "Tokens used by completed jobs",
    labelNames: ["queue", "model", "kind"],
    registers: [registry],
  });
  const cost = new Counter({
    name: "dispatch_cost_total",
    help: "Cost of completed jobs, as opencode reports it",
    labelNames,
    registers: [registry],
  });
  const targets = new Set<{ queue: Queue; name: string; running: () => number }>();
  new Gauge({
    name: "dispatch_worker_active_jobs",
    help: "Jobs this worker runs now",
    labelNames: ["queue"],
    registers: [registry],
    collect() {
      this.reset();
      const byQueue = new Map<string, number>();
      for (const target of targets) byQueue.set(target.name, (byQueue.get(target.name) ?? 0) + target.running());
      for (const [queue, n] of byQueue) this.set({ queue }, n);
    },
  });
  const restarts = new Counter({
    name: "dispatch_opencode_server_restarts_total",
    help: "Times this worker replaced a dead opencode server",
    registers: [registry],
  });
  let connectionOf: Redis | undefined;
  new Gauge({
    name: "dispatch_queue_jobs",
    help: "Jobs in the queue by state (read from Redis at scrape time)",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const target of targets) {
        const counts = await withTimeout(target.queue.getJobCounts(...QUEUE_STATES), 2_000).catch(() => undefined);
        if (!counts) continue;
        for (const state of QUEUE_STATES) this.set({ queue: target.name, state }, counts[state] ?? 0);
      }
    },
  });

  const readRecord = async (store: ResultStore, job: Job | undefined): Promise<ResultRecord | null> =>
    job?.id ? store.get(job.id).catch(() => null) : null;

  return {
    registry,
    serverRestarted: () => restarts.inc(),
    redisStatus: () => connectionOf?.status ?? "not attached",
    attach({ worker, store, connection, queue, running }) {
      const depth = { queue: openQueue(queue, connection), name: queue, running };
      depth.queue.on("error", () => undefined);
      targets.add(depth);
      connectionOf = connection;
      const onCompleted = async (job: Job) => {
        const record = await readRecord(store, job);
        const model = modelOf(record, job);
        completed.inc({ queue, model });
        if (record?.durationMs != null)
          duration.observe({ queue, model, outcome: "completed" }, record.durationMs / 1_000);
        if (record?.tokens) {
          for (const kind of ["input", "output", "reasoning", "cacheRead", "cacheWrite"] as const) {
            if (record.tokens[kind] > 0) tokens.inc({ queue, model, kind }, record.tokens[kind]);
          }
        }
        if (record?.cost) cost.inc({ queue, model }, record.cost);
      };
      const onFailed = async (job: Job | undefined) => {
        const record = await readRecord(store, job);
        const model = modelOf(record, job);
        // The processor writes the record before it throws: "retrying" or "failed" tells which.
        const final = record ? record.state === "failed" : (job?.attemptsMade ?? 0) >= (job?.opts.attempts ?? 1);
        (final ? failed : retried).inc({ queue, model });
        if (record?.durationMs != null)
          duration.observe({ queue, model, outcome: final ? "failed" : "retried" }, record.durationMs / 1_000);
      };
      const guard =
        <J extends Job | undefined>(fn: (job: J) => Promise<void>) =>
        (job: J) => {
          fn(job).catch((error: unknown) => opts.log?.warn({ err: error }, "metrics: could not record a job"));
        };
      const completedListener = guard(onCompleted);
      const failedListener = guard(onFailed);
      worker.on("completed", completedListener);
      worker.on("failed", failedListener);
      return async () => {
        worker.off("completed", completedListener);
        worker.off("failed", failedListener);
        targets.delete(depth);
        await depth.queue.close().catch(() => undefined);
      };
    },
  };
}

export interface HealthReport {
  ok: boolean;
  [detail: string]: unknown;
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (Prometheus text format) and `GET /healthz` (200 with a JSON report when
 * `health()` says ok, else 503).
 */
export async function serveMetrics(opts: {
  registry: Registry;
  port: number;
  host?: string;
  health: () => Promise<HealthReport>;
}): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain", "method not allowed\n");
    if (path === "/metrics") {
      opts.registry
        .metrics()
        .then((text) => send(200, opts.registry.contentType, text))
        .catch((error: Error) => send(500, "text/plain", `${error.message}\n`));
      return;
    }
    if (path === "/healthz") {
      void withTimeout(opts.health(), 5_000)
        .catch((error: Error) => ({ ok: false, error: error.message }))
        .then((report) => send(report.ok ? 200 : 503, "application/json", `${JSON.stringify(report)}\n`));
      return;
    }
    send(404, "text/plain", "not found: try /metrics or /healthz\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "0.0.0.0", () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${address.port}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

import { resolve } from "node:path";
import { Command } from "commander";
import { parseSize, defaultFrom } from "../../shared/config.js";
import { parseLimits } from "../../shared/flow-limits.js";
import { InputError } from "../../shared/errors.js";
import { createLogger } from "../../shared/logger.js";
import type { MetricsServer } from "../../worker/queue/metrics.js";
import type { RunningWorker } from "../../worker/worker.js";
import type { ApprovalPolicy } from "../../shared/task.js";
import {
  approvalOption,
  configFrom,
  durationOption,
  intOption,
  withConnection,
  exitWith,
  type ConnectionFlags,
} from "../options.js";

export interface WorkerFlags extends ConnectionFlags {
  concurrency?: number;
  attach?: string;
  grace?: number;
  metricsPort?: number;
  recycleJobs?: number;
  recycleRss?: number;
  autoApprove?: boolean;
  approval?: ApprovalPolicy;
  approvalTimeout?: number;
  stallTimeout?: number;
  modelConcurrency?: string;
  rateLimit?: string;
  keyConcurrency?: number;
  sandbox?: boolean;
  sandboxDir?: string[];
  budgetGuard?: boolean;
}

export function withWorkerOptions(command: Command): Command {
  return command
    .option(
      "--concurrency <n>",
      `jobs run at once (default: ${defaultFrom("DISPATCH_CONCURRENCY")})`,
      intOption("--concurrency", 1, 1_000),
    )
    .option("--attach <url>", "use this opencode server instead of spawning one (password: OPENCODE_SERVER_PASSWORD)")
    .option(
      "--approval <policy>",
      `what agents' permission asks get, for jobs that do not say: reject (like \`opencode run\`), approve (once) or manual (the job waits, holding no slot, for \`approve\` / \`reject\`) (default: ${defaultFrom("DISPATCH_APPROVAL")})`,
      approvalOption,
    )
    .option(
      "--approval-timeout <duration>",
      `a manual ask no one answered within this long is rejected, for jobs that do not say (default: ${defaultFrom("DISPATCH_APPROVAL_TIMEOUT")})`,
      durationOption("--approval-timeout"),
    )
    .option("--auto-approve", "the older name of --approval approve")
    .option(
      "--stall-timeout <duration>",
      `abort and retry a job when opencode sends no event for this long (default: ${defaultFrom("DISPATCH_STALL_TIMEOUT")})`,
      durationOption("--stall-timeout"),
    )
    .option(
      "--model-concurrency <limits>",
      `caps on running jobs per provider or model, shared by all workers, e.g. anthropic=4,openai/gpt-4o=2 (default: ${defaultFrom("DISPATCH_CONCURRENCY_LIMITS")})`,
    )
    .option(
      "--rate-limit <limits>",
      `caps on jobs started per period per provider or model, shared by all workers, e.g. anthropic=50/1m (default: ${defaultFrom("DISPATCH_RATE_LIMITS")})`,
    )
    .option(
      "--key-concurrency <n>",
      `running jobs allowed per --concurrency-key (default: ${defaultFrom("DISPATCH_KEY_CONCURRENCY")})`,
      intOption("--key-concurrency", 1, 10_000),
    )
    .option(
      "--grace <duration>",
      `on shutdown, how long running jobs may finish before they are handed back (default: ${defaultFrom("DISPATCH_SHUTDOWN_GRACE")})`,
      durationOption("--grace"),
    )
    .option(
      "--recycle-jobs <n>",
      `replace the spawned opencode server after this many jobs (default: ${defaultFrom("DISPATCH_RECYCLE_JOBS")}; 0: never)`,
      intOption("--recycle-jobs", 0, 1_000_000_000),
    )
    .option(
      "--recycle-rss <size>",
      `replace the spawned opencode server once its memory (RSS) passes this, e.g. 2GB (default: ${defaultFrom("DISPATCH_RECYCLE_RSS")})`,
      sizeOption("--recycle-rss"),
    )
    .option(
      "--sandbox",
      `run the agents' tools under bubblewrap: own PID namespace, read-only system, writable only in --sandbox-dir roots (default: ${defaultFrom("DISPATCH_SANDBOX")})`,
    )
    .option(
      "--budget-guard",
      `exact budgets: no model call after the step that passed a job's --max-cost / --max-tokens (spawned servers load a small plugin; opencode installs its plugin package once per config folder) (default: ${defaultFrom("DISPATCH_BUDGET_GUARD")})`,
    )
    .option(
      "--sandbox-dir <path>",
      `a root where sandboxed jobs may work (repeatable; default: ${defaultFrom("DISPATCH_SANDBOX_DIRS")})`,
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option(
      "--metrics-port <port>",
      `serve Prometheus /metrics and /healthz on this port (default: ${defaultFrom("DISPATCH_METRICS_PORT")}; 0: any free port)`,
      intOption("--metrics-port", 0, 65_535),
    );
}

/**
 * Runs a worker until SIGINT/SIGTERM. The first signal stops taking jobs and lets running ones
 * finish (for the grace period, then hands them back); a second hands them back at once.
 */
export async function runWorkerUntilSignal(flags: WorkerFlags, onStop?: () => Promise<void>): Promise<number> {
  const config = configFrom(flags);
  if (flags.grace !== undefined) config.shutdownGraceMs = flags.grace;
  if (flags.autoApprove) config.approval = "approve";
  if (flags.approval) config.approval = flags.approval;
  if (flags.approvalTimeout !== undefined) config.approvalTimeoutMs = flags.approvalTimeout;
  if (flags.stallTimeout !== undefined) config.stallMs = flags.stallTimeout;
  if (flags.modelConcurrency !== undefined)
    config.flow.concurrency = parseLimits(flags.modelConcurrency, "concurrency", "--model-concurrency");
  if (flags.rateLimit !== undefined) config.flow.rate = parseLimits(flags.rateLimit, "rate", "--rate-limit");
  if (flags.keyConcurrency !== undefined) config.flow.keyConcurrency = flags.keyConcurrency;
  if (flags.recycleJobs !== undefined) config.recycle = { ...config.recycle, jobs: flags.recycleJobs };
  if (flags.recycleRss !== undefined) config.recycle = { ...config.recycle, rssBytes: flags.recycleRss };
  if (flags.sandbox) config.sandbox = { ...config.sandbox, enabled: true };
  if (flags.budgetGuard) config.budgetGuard = true;
  if (flags.sandboxDir?.length)
    config.sandbox = { ...config.sandbox, dirs: flags.sandboxDir.map((dir) => resolve(dir)) };
  const log = createLogger(config.logLevel);
  // Loaded here, not at the top: producer commands (enqueue, batch, …) start without the worker's modules.
  const [{ createWorkerMetrics, serveMetrics }, { checkHealth }, { startWorker }] = await Promise.all([
    import("../../worker/queue/metrics.js"),
    import("../../worker/server/opencode-server.js"),
    import("../../worker/worker.js"),
  ]);
  let worker: RunningWorker | undefined;
  let metricsServer: MetricsServer | undefined;
  const metricsPort = flags.metricsPort ?? config.metricsPort;
  const metrics = metricsPort !== undefined ? createWorkerMetrics({ log }) : undefined;
  let signals = 0;
  let stopped: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) {
      log.info(
        { signal },
        "stopping: no new jobs; running jobs may finish (send the signal again to hand them back now)",
      );
      stopped();
    } else if (signals === 2) {
      log.warn({ signal }, "stopping now: handing running jobs back to the queue");
      void worker?.close({ graceMs: 0 });
      setTimeout(() => process.exit(130), 10_000).unref();
    } else {
      process.exit(130);
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    worker = await startWorker({ config, concurrency: flags.concurrency, attach: flags.attach, log, metrics });
    if (metrics) {
      const running = worker;
      metricsServer = await serveMetrics({
        registry: metrics.registry,
        port: metricsPort!,
        health: async () => {
          const opencode = await checkHealth(running.server(), AbortSignal.timeout(2_000));
          const redis = metrics.redisStatus();
          return {
            ok: opencode.ok && redis === "ready",
            worker: running.id,
            opencode: opencode.ok ? "ok" : opencode.reason,
            redis,
          };
        },
      }).catch(async (error: unknown) => {
        await running.close({ graceMs: 0 });
        throw error;
      });
      log.info({ metrics: `${metricsServer.url}/metrics` }, "metrics served");
    }
    // A signal, or the worker stopping by itself (its opencode server could not be restarted).
    const fatal = await Promise.race([done.then(() => false), worker.stopped]);
    await worker.close();
    if (fatal) {
      log.fatal("the worker stopped: its opencode server could not be restarted");
      return 1;
    }
  } finally {
    await metricsServer?.close();
    await onStop?.();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return 0;
}

export function workerCommand(): Command {
  const command = new Command("worker").description(
    "run a worker: a warm opencode server (spawned, or --attach URL) that takes jobs from the queue",
  );
  withWorkerOptions(command);
  return withConnection(command).action(exitWith((flags: WorkerFlags) => runWorkerUntilSignal(flags)));
}

function sizeOption(name: string) {
  return (value: string): number => {
    try {
      return parseSize(value);
    } catch (error) {
      throw new InputError(`${name}: ${(error as Error).message}`);
    }
  };
}

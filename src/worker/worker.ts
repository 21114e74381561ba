import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import { Worker } from "bullmq";
import { checkQueueName, type Config } from "../shared/config.js";
import { queueKeys } from "../shared/keys.js";
import { traceAttempts } from "../shared/tracing.js";
import { Teardown } from "../shared/teardown.js";
import { setLongTimeout } from "../shared/timers.js";
import { bubblewrap, hasBubblewrap, refuseOutsideSandbox } from "./server/sandbox.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { closeRedis, connectRedis } from "../shared/redis.js";
import { ResultStore } from "../shared/result-store.js";
import { openQueue } from "../shared/queue.js";
import { resolveOpencodeBinary } from "./server/opencode-binary.js";
import { BatchBudgets } from "./queue/batch-budget.js";
import { startControl, refuseCancelled } from "./queue/control.js";
import { recordDeferredFailures } from "./queue/deferred-failure.js";
import { attachOpencodeServer, once, spawnOpencodeServer, type OpencodeServer } from "./server/opencode-server.js";
import { sweepOrphans } from "./server/orphans.js";
import { ServerKeeper } from "./server/server-keeper.js";
import { HubPerServer } from "./server/hub-per-server.js";
import { SessionTransfer } from "./session/session-transfer.js";
import { Scheduler } from "../scheduling/scheduler.js";
import { LeaseKeeper } from "../scheduling/leases.js";
import type { WorkerMetrics } from "./queue/metrics.js";
import { createProcessor, type DecidedError } from "./queue/processor.js";
import { startWebhookDelivery } from "./queue/webhooks.js";
import { backoffDelay } from "./queue/retry-policy.js";

/** How much longer than the lock a flow-control lease lasts without renewal. */
const LEASE_MARGIN_MS = 5_000;

export interface WorkerOptions {
  config: Config;
  /** @defaultValue config.queue */
  queue?: string;
  /** @defaultValue config.redisUrl */
  redisUrl?: string;
  /** @defaultValue config.concurrency */
  concurrency?: number;
  /** Attach to this opencode server instead of spawning one. @defaultValue config.opencode.url */
  attach?: string;
  /** The environment a spawned opencode server inherits. @defaultValue process.env */
  serverEnv?: NodeJS.ProcessEnv;
  log?: Logger;
  /** Prometheus metrics to feed (see metrics.ts). */
  metrics?: WorkerMetrics;
  /** Server recycling thresholds. @defaultValue config.recycle */
  recycle?: { jobs?: number; rssBytes?: number };
}

export interface RunningWorker {
  id: string;
  queue: string;
  /** The opencode server the worker currently uses. */
  server(): OpencodeServer;
  /**
   * Stops taking jobs, lets running ones finish for `graceMs` (then hands them back to the
   * queue), stops the spawned server, closes connections. Idempotent.
   */
  close(opts?: { graceMs?: number }): Promise<void>;
  /** Settles when the worker has stopped, whoever stopped it (true: it stopped on a fatal error). */
  stopped: Promise<boolean>;
}

/** Starts a worker: a warm opencode server (spawned or attached), then a BullMQ worker on the queue. */
/** Health checks of a spawned opencode server (see KeeperOptions.health). */
const HEALTH = { intervalMs: 30_000, timeoutMs: 5_000, failures: 2 };

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const { config } = opts;
  const queue = checkQueueName(opts.queue ?? config.queue);
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const log = (opts.log ?? createLogger(config.logLevel)).child({ worker: id, queue });
  const attach = opts.attach ?? config.opencode.url;

  const startServer = (): Promise<OpencodeServer> =>
    attach
      ? attachOpencodeServer(attach, config.opencode)
      : spawnOpencodeServer({
          bin: resolveOpencodeBinary(config.opencode.bin),
          dataDir: join(config.dataDir, `worker-${id}-${randomBytes(3).toString("hex")}`),
          env: opts.serverEnv ?? process.env,
          userDataHome: config.userDataHome,
          snapshots: config.snapshots,
          budgetGuard: config.budgetGuard,
          ...(config.sandbox.enabled ? { sandbox: { dirs: config.sandbox.dirs } } : {}),
          log,
        });

  if (!attach) await sweepOrphans(config.dataDir, log);
  if (!attach && config.sandbox.enabled)
    bubblewrap(); // a clear error now if it is missing
  else if (!attach)
    log.warn(
      { bubblewrap: hasBubblewrap() },
      "the agent's tools run unsandboxed, as the worker's user (DISPATCH_SANDBOX=true runs them under bubblewrap)",
    );
  let bull: Worker | undefined;
  let fatal = false;
  let runningRef: RunningWorker | undefined;
  let markStopped: (fatal: boolean) => void = () => undefined;
  const stopped = new Promise<boolean>((resolve) => (markStopped = resolve));
  const keeper = await ServerKeeper.start({
    start: startServer,
    spawned: !attach,
    recycle: { ...config.recycle, ...opts.recycle },
    health: HEALTH,
    log,
    onReplaced: () => opts.metrics?.serverRestarted(),
    onFatal: () => {
      fatal = true;
      void runningRef?.close({ graceMs: 0 }); // before start-up finished: closed right after it
    },
  });
  // Every resource joins the list as it is acquired: a failed start and close() both run it.
  const teardown = new Teardown((what, error) => log.error({ err: error }, `error while closing ${what}`));
  teardown.push("opencode", () => keeper.close());
  const hubs = new HubPerServer(log);
  teardown.push("event hubs", () => hubs.close());
  let closing = false;
  try {
    const redisUrl = opts.redisUrl ?? config.redisUrl;
    const connection = await connectRedis(redisUrl, "worker", { timeoutMs: 10_000 });
    teardown.push("redis", () => closeRedis(connection));
    const states = openQueue(queue, connection);
    teardown.push("queue handle", () => states.close());
    const scheduler = new Scheduler(connection, queueKeys(queue), states, config.fairWindow, log);
    const store = new ResultStore(connection, queue, config.resultTtlMs, (jobId) => scheduler.finished(jobId));
    teardown.push("result store", () => store.close());
    await store.publishTtl();
    const transfer = new SessionTransfer(connection, queueKeys(queue), config.resultTtlMs, log);
    // A lease outlives the lock BullMQ would take back from a dead worker by a small margin.
    const leases = new LeaseKeeper(scheduler, config.lockDurationMs + LEASE_MARGIN_MS, log);
    teardown.push("leases", () => leases.close());
    await scheduler.publishCaps(config.flow);
    const budgets = new BatchBudgets(connection, queueKeys(queue), log);
    const processor = createProcessor({
      store,
      connection,
      transfer,
      config,
      scheduler,
      leases,
      budgets,
      flow: config.flow,
      current: () => hubs.current(keeper),
      workerId: id,
      log,
    });
    const guarded =
      config.sandbox.enabled && !attach
        ? refuseOutsideSandbox(processor, { settings: config.sandbox, store, log })
        : processor;
    const intake = new Worker(
      queue,
      traceAttempts(queue, keeper.wrap(refuseCancelled(guarded, { connection, store, log }))),
      {
        connection,
        prefix: queueKeys(queue).bullPrefix,
        concurrency: opts.concurrency ?? config.concurrency,
        lockDuration: config.lockDurationMs,
        stalledInterval: config.stalledIntervalMs,
        settings: {
          backoffStrategy: (attemptsMade, _type, error?: DecidedError) => backoffDelay(attemptsMade, error?.decision),
        },
      },
    );
    bull = intake;
    // close() first closes it gracefully; this is the forced close of a failed start (and a no-op after).
    teardown.push("queue worker", () => intake.close(true));
    intake.on("error", (error) => log.error({ err: error }, "queue error"));
    // A job whose lock could not be renewed may already run elsewhere: stop its session now.
    intake.on("lockRenewalFailed", (jobIds: string[]) =>
      jobIds.forEach((jobId) => intake.cancelJob(jobId, "lock-lost")),
    );
    recordDeferredFailures(intake, store, log);
    keeper.attach({
      pause: () => intake.pause(true),
      resume: () => void intake.resume().catch((error: unknown) => log.warn({ err: error }, "resuming intake failed")),
      cancelJob: (jobId, reason) => void intake.cancelJob(jobId, reason),
    });
    const control = await startControl({
      redisUrl,
      keys: queueKeys(queue),
      worker: intake,
      log,
      onBatchBudget: (message) => budgets.stop(message),
      onReconnect: () => void budgets.recheck(),
    });
    teardown.push("control channel", () => control.close());
    const webhooks = startWebhookDelivery({ connection, queue, config, log });
    teardown.push("webhook worker", () => webhooks.close());
    const detachMetrics = opts.metrics?.attach({
      worker: intake,
      store,
      connection,
      queue,
      running: () => keeper.runningJobs(),
    });
    if (detachMetrics) teardown.push("metrics", detachMetrics);
  } catch (error) {
    await teardown.run();
    throw error;
  }
  const worker = bull;
  log.info({ opencode: keeper.server().url, concurrency: opts.concurrency ?? config.concurrency }, "worker ready");

  const running: RunningWorker = {
    id,
    queue,
    stopped,
    server: () => keeper.server(),
    close: (() => {
      let graceMs = config.shutdownGraceMs;
      const closeOnce = once(async () => {
        closing = true;
        keeper.stopWatching();
        log.info({ graceMs }, "worker stopping");
        const handBack = setLongTimeout(() => worker.cancelAllJobs("shutdown"), graceMs);
        try {
          await worker.close();
        } catch (error) {
          log.error({ err: error }, "error while closing the queue worker");
        } finally {
          handBack.clear();
        }
        await teardown.run();
        log.info("worker stopped");
        markStopped(fatal);
      });
      return (closeOpts?: { graceMs?: number }) => {
        if (closeOpts?.graceMs !== undefined) {
          graceMs = closeOpts.graceMs;
          if (closing) worker.cancelAllJobs("shutdown"); // a second, more urgent close
        }
        return closeOnce();
      };
    })(),
  };
  runningRef = running;
  if (fatal) void running.close({ graceMs: 0 });
  return running;
}

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import { Worker } from "bullmq";
import type { Redis } from "ioredis";
import { checkQueueName, type Config } from "../shared/config.js";
import { queueKeys } from "../shared/keys.js";
import { createLogger, type Logger } from "../shared/logger.js";
import { closeRedis, connectRedis } from "../shared/redis.js";
import { ResultStore } from "../shared/result-store.js";
import { resolveOpencodeBinary } from "./opencode-binary.js";
import { createClient, type OpencodeClient } from "./opencode-client.js";
import { attachOpencodeServer, once, spawnOpencodeServer, type OpencodeServer } from "./opencode-server.js";
import type { WorkerMetrics } from "./metrics.js";
import { createProcessor, type DecidedError } from "./processor.js";
import { backoffDelay } from "./retry-policy.js";

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
}

/** Starts a worker: a warm opencode server (spawned or attached), then a BullMQ worker on the queue. */
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
          log,
        });

  let server = await startServer();
  let client: OpencodeClient = createClient(server);
  let connection: Redis | undefined;
  let bull: Worker | undefined;
  let closing = false;
  let detachMetrics: (() => Promise<void>) | undefined;
  try {
    connection = await connectRedis(opts.redisUrl ?? config.redisUrl, "worker", { timeoutMs: 10_000 });
    const store = new ResultStore(connection, queue, config.resultTtlMs);
    const processor = createProcessor({ store, client: () => client, workerId: id, log });
    bull = new Worker(queue, processor, {
      connection,
      prefix: queueKeys(queue).bullPrefix,
      concurrency: opts.concurrency ?? config.concurrency,
      settings: {
        backoffStrategy: (attemptsMade, _type, error) => backoffDelay(attemptsMade, (error as DecidedError | undefined)?.decision),
      },
    });
    bull.on("error", (error) => log.error({ err: error }, "queue error"));
    detachMetrics = opts.metrics?.attach({ worker: bull, store, connection, queue });
  } catch (error) {
    await server.close();
    await closeRedis(connection);
    throw error;
  }
  const worker = bull;

  // A spawned server that dies is replaced; the jobs it was running are retried.
  const watch = (current: OpencodeServer) => {
    void current.exited.then(async (exit) => {
      if (closing || current !== server) return;
      log.error({ ...exit }, "opencode server died; restarting it");
      opts.metrics?.serverRestarted();
      worker.cancelAllJobs("server-died");
      await current.close();
      try {
        server = await startServer();
        client = createClient(server);
        watch(server);
      } catch (error) {
        log.fatal({ err: error }, "could not restart the opencode server; stopping the worker");
        void running.close({ graceMs: 0 });
      }
    });
  };
  if (!attach) watch(server);
  log.info({ opencode: server.url, concurrency: opts.concurrency ?? config.concurrency }, "worker ready");

  const running: RunningWorker = {
    id,
    queue,
    server: () => server,
    close: (() => {
      let graceMs = config.shutdownGraceMs;
      const closeOnce = once(async () => {
        closing = true;
        log.info({ graceMs }, "worker stopping");
        const handBack = setTimeout(() => worker.cancelAllJobs("shutdown"), graceMs);
        try {
          await worker.close();
        } catch (error) {
          log.error({ err: error }, "error while closing the queue worker");
        } finally {
          clearTimeout(handBack);
        }
        await server.close().catch((error: unknown) => log.error({ err: error }, "error while stopping opencode"));
        await detachMetrics?.();
        await closeRedis(connection);
        log.info("worker stopped");
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
  return running;
}

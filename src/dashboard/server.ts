import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import type { Queue } from "bullmq";
import { InputError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { openQueue } from "../shared/queue.js";
import { closeRedis, connectRedis } from "../shared/redis.js";
import { loadConfig, type Config } from "../shared/config.js";
import { Dispatcher } from "../producer/dispatcher.js";
import { isLoopback } from "./auth.js";
import { buildApp } from "./routes.js";

export interface DashboardOptions {
  redisUrl: string;
  queue: string;
  /** @defaultValue 127.0.0.1 */
  host?: string;
  /** 0 picks a free port. @defaultValue 3000 */
  port?: number;
  /**
   * Let the dashboard cancel and retry jobs and batches, approve or reject a job's ask, and pause
   * and resume the queue (its own buttons), and bull-board retry, promote, clean and remove jobs.
   * @defaultValue false (read-only)
   */
  allowActions?: boolean;
  /** Settings for the producer the dashboard acts and streams through. @defaultValue the defaults, with `redisUrl` and `queue` */
  config?: Config;
  /** Basic auth; required unless `host` is a loopback address. */
  auth?: { user: string; password?: string };
  /** Host names it is served under besides loopback names and `host` (a proxy's name; DASHBOARD_HOSTS). */
  allowedHosts?: readonly string[];
  log?: Logger;
}

export interface RunningDashboard {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves bull-board for the queue under `/queues` and our own pages: the overview with charts
 * (`/`), result records (`/results`, `/results/:jobId`), batches (`/batches`, `/batches/:id`),
 * session transcripts (`/sessions/:sessionId`), JSON under `/api/…`, a job's live answer
 * (`/api/live/:jobId`, server-sent events), and with `allowActions` the action routes (actions.ts).
 */
export async function startDashboard(opts: DashboardOptions): Promise<RunningDashboard> {
  const host = opts.host ?? "127.0.0.1";
  const password = opts.auth?.password;
  if (!isLoopback(host) && !password) {
    throw new InputError(
      `the dashboard binds ${host}, beyond loopback: set DASHBOARD_PASSWORD (and DASHBOARD_USER) to protect it`,
    );
  }
  const redis = await connectRedis(opts.redisUrl, "producer");
  let queue: Queue | undefined;
  let server: Server | undefined;
  const dispatcher = new Dispatcher({
    redisUrl: opts.redisUrl,
    queue: opts.queue,
    config: opts.config ?? loadConfig({ REDIS_URL: opts.redisUrl, DISPATCH_QUEUE: opts.queue }),
  });
  const streams = new Set<AbortController>();
  try {
    queue = openQueue(opts.queue, redis);
    queue.on("error", (error) => opts.log?.warn({ err: error }, "dashboard: queue error"));
    const app = buildApp({ redis, queue, dispatcher, streams }, opts, password);
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(opts.port ?? 3000, host, (error?: Error) => (error ? reject(error) : resolve(s)));
      s.once("error", reject);
    });
  } catch (error) {
    await queue?.close().catch(() => undefined);
    await dispatcher.close();
    await closeRedis(redis);
    throw error;
  }
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const listening = server;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${address.port}`,
    close: () =>
      (closing ??= (async () => {
        for (const stream of streams) stream.abort();
        await new Promise<void>((resolve) => {
          listening.close(() => resolve());
          listening.closeAllConnections();
        });
        await queue.close().catch(() => undefined);
        await dispatcher.close().catch(() => undefined);
        await closeRedis(redis);
      })()),
  };
}

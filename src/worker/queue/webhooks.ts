import { UnrecoverableError, Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";
import type { Config } from "../../shared/config.js";
import { queueKeys } from "../../shared/keys.js";
import { abortAfter } from "../../shared/timers.js";
import type { Logger } from "../../shared/logger.js";
import { signBody, WEBHOOK_HEADERS, webhookQueueName, type WebhookDelivery } from "../../shared/webhook.js";

/** Longest wait between two delivery attempts. */
const BACKOFF_CAP_MS = 3_600_000;

/** Deliveries one worker process sends at once. */
const DELIVERY_CONCURRENCY = 8;

/** Where a webhook points, safe to log (no path, query or credentials: they may hold tokens). */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(invalid URL)";
  }
}

/** Wait before delivery attempt `attemptsMade + 1`: exponential from `baseMs`, capped at an hour. */
export function webhookBackoff(attemptsMade: number, baseMs: number): number {
  return Math.min(baseMs * 2 ** Math.max(0, attemptsMade - 1), BACKOFF_CAP_MS);
}

/** POSTs one notification; throws when the receiver did not answer 2xx in time. */
export async function deliver(
  delivery: WebhookDelivery,
  opts: { deliveryId: string; secret?: string; timeoutMs: number },
): Promise<void> {
  const body = JSON.stringify(delivery.record);
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "user-agent": "opencode-dispatch-webhook",
    [WEBHOOK_HEADERS.timestamp]: String(Math.floor(Date.now() / 1000)),
    [WEBHOOK_HEADERS.delivery]: opts.deliveryId,
    [WEBHOOK_HEADERS.event]: delivery.event ?? delivery.record.state,
  };
  if (opts.secret) headers[WEBHOOK_HEADERS.signature] = signBody(opts.secret, body);
  let response: Response;
  const deadline = abortAfter(opts.timeoutMs);
  try {
    response = await fetch(delivery.url, {
      method: "POST",
      headers,
      body,
      redirect: "manual",
      signal: deadline.signal,
    });
    await response.body?.cancel().catch(() => undefined);
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const why =
      (error as Error).name === "TimeoutError"
        ? `no answer within ${opts.timeoutMs} ms`
        : (cause?.code ?? cause?.message ?? (error as Error).message);
    throw new Error(`webhook ${origin(delivery.url)}: ${why}`);
  } finally {
    deadline.clear();
  }
  if (response.status < 200 || response.status >= 300)
    throw new Error(`webhook ${origin(delivery.url)} answered ${response.status}`);
}

/**
 * The small BullMQ worker every dispatch worker process runs on `<queue>-webhooks`: it POSTs each
 * final record to its webhook, signed, retrying with exponential backoff until it is answered 2xx
 * or `attempts` run out.
 */
export function startWebhookDelivery(opts: {
  connection: Redis;
  queue: string;
  config: Pick<Config, "webhook">;
  log: Logger;
}): { close(): Promise<void> } {
  const { attempts, backoffMs, timeoutMs, secret } = opts.config.webhook;
  const log = opts.log.child({ component: "webhooks" });
  let warnedUnsigned = false;
  const worker = new Worker<WebhookDelivery>(
    webhookQueueName(opts.queue),
    async (job: Job<WebhookDelivery>) => {
      const attempt = job.attemptsMade + 1;
      const where = { jobId: job.data.record.jobId, webhook: origin(job.data.url), attempt };
      if (!secret && !warnedUnsigned) {
        warnedUnsigned = true;
        log.warn("DISPATCH_WEBHOOK_SECRET is not set: webhook deliveries go out unsigned");
      }
      try {
        await deliver(job.data, { deliveryId: job.id!, secret, timeoutMs });
        log.info(where, "webhook delivered");
      } catch (error) {
        const last = attempt >= attempts;
        log.warn(
          { ...where, err: (error as Error).message, final: last },
          last ? "webhook delivery given up" : "webhook delivery failed; will retry",
        );
        throw last ? new UnrecoverableError((error as Error).message) : error;
      }
    },
    {
      connection: opts.connection,
      prefix: queueKeys(opts.queue).bullPrefix,
      concurrency: DELIVERY_CONCURRENCY,
      settings: { backoffStrategy: (attemptsMade: number) => webhookBackoff(attemptsMade, backoffMs) },
    },
  );
  worker.on("error", (error) => log.error({ err: error }, "webhook queue error"));
  return { close: () => worker.close() };
}

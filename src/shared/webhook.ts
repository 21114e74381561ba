import { createHmac, timingSafeEqual } from "node:crypto";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { queueKeys } from "./keys.js";
import type { ResultRecord } from "./result.js";

/**
 * Webhook notifications travel through a queue of their own, `<queue>-webhooks`, under the same
 * `dispatch:{queue}` prefix (so the same Redis Cluster slot). Every worker process also runs a
 * small delivery worker on it (worker/queue/webhooks.ts): a receiver that is down delays its own
 * notifications, never a dispatch slot, and loses none.
 */
export function webhookQueueName(queue: string): string {
  return `${queue}-webhooks`;
}

/** What a delivery job holds: where to POST, and the record to POST (final, or parked on an ask). */
export interface WebhookDelivery {
  url: string;
  record: ResultRecord;
  /** The `X-Dispatch-Event` header: the record's final state, or `ask` for a job parked on a permission ask. */
  event?: string;
}

export const WEBHOOK_HEADERS = {
  /** `sha256=<hex HMAC-SHA256 of the raw body, keyed with DISPATCH_WEBHOOK_SECRET>` */
  signature: "x-dispatch-signature",
  /** Unix seconds when this delivery attempt was sent. */
  timestamp: "x-dispatch-timestamp",
  /** The delivery's ID: the same for every retry of one notification. */
  delivery: "x-dispatch-delivery",
  /** `completed` or `failed`; `ask` when the job is parked on a permission ask (state `awaiting-approval`). */
  event: "x-dispatch-event",
} as const;

/** The signature header's value for a body. */
export function signBody(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Checks a received signature header against the raw body (constant time). */
export function verifySignature(secret: string, body: string | Buffer, header: string | undefined | null): boolean {
  if (!header) return false;
  const expected = Buffer.from(signBody(secret, body));
  const given = Buffer.from(header);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** How often `retry` re-queued a job (a new run: its end notifies again). */
export const retriesKey = (queue: string, jobId: string) => `${queueKeys(queue).sched}retries:${jobId}`;

/** Delivery attempts are capped by the delivery worker's own setting (DISPATCH_WEBHOOK_ATTEMPTS). */
const JOB_ATTEMPTS = 100;

/**
 * Adds delivery jobs for final records that name a webhook. One delivery per job, final state and
 * run: its ID is the job ID, the state, the attempt and how often `retry` re-queued the job, so a
 * final record written twice (a crash, a stale worker that lost the job) notifies once, with one
 * delivery ID, while BullMQ remembers the delivery (a day).
 */
export class WebhookOutbox {
  private queue: Queue | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly queueName: string,
  ) {}

  async add(record: ResultRecord): Promise<void> {
    if (!record.webhook) return;
    if (!this.queue) {
      this.queue = new Queue(webhookQueueName(this.queueName), {
        connection: this.redis,
        prefix: queueKeys(this.queueName).bullPrefix,
      });
      this.queue.on("error", () => undefined); // surfaced on add itself
    }
    const runs = Number((await this.redis.get(retriesKey(this.queueName, record.jobId))) ?? 0);
    // One notification per ask (an ask's ID is opencode's), else per final state and run.
    const ask = record.state === "awaiting-approval" ? record.approval?.id : undefined;
    const data: WebhookDelivery = { url: record.webhook, record, ...(ask ? { event: "ask" } : {}) };
    await this.queue.add("deliver", data, {
      jobId: ask ? `wh-${record.jobId}-ask-${ask}` : `wh-${record.jobId}-${record.state}-a${record.attempts}-r${runs}`,
      attempts: JOB_ATTEMPTS,
      backoff: { type: "webhook" },
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
    });
  }

  async close(): Promise<void> {
    await this.queue?.close().catch(() => undefined);
    this.queue = undefined;
  }
}

import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { queueKeys } from "./keys.js";

/** How long BullMQ keeps finished jobs; result records outlive this (see ResultStore). */
export const RETENTION = {
  completed: { age: 24 * 3600, count: 10_000 },
  failed: { age: 7 * 24 * 3600, count: 10_000 },
} as const;

/**
 * Backoff between attempts: the worker's own strategy (worker/queue/retry-policy.ts backoffDelay)
 * honours a provider's Retry-After (capped), else grows exponentially from `delay`.
 */
export const BACKOFF = { type: "dispatch", delay: 2_000 } as const;

export function openQueue(name: string, connection: Redis): Queue {
  return new Queue(name, { connection, prefix: queueKeys(name).bullPrefix });
}

/**
 * BullMQ's view of a test's queue, for checks the Dispatcher does not offer: `withQueue` opens a
 * handle on its own producer connection and closes both, whatever `fn` does; `jobCount` counts
 * the jobs BullMQ holds.
 */
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { openQueue } from "../../src/shared/queue";
import { closeRedis, connectRedis } from "../../src/shared/redis";

/** What names a test's queue: a Stack, or any `{ redisUrl, queue }`. */
export interface QueueTarget {
  redisUrl: string;
  queue: string;
}

export async function withQueue<T>(target: QueueTarget, fn: (queue: Queue, redis: Redis) => Promise<T>): Promise<T> {
  const redis = await connectRedis(target.redisUrl, "producer");
  const queue = openQueue(target.queue, redis);
  try {
    return await fn(queue, redis);
  } finally {
    await queue.close();
    await closeRedis(redis);
  }
}

/** Every state a job of ours can be in at BullMQ. */
export const ALL_STATES = ["waiting", "delayed", "prioritized", "active", "completed", "failed"] as const;

/** How many jobs BullMQ holds in `states` (all of them by default). */
export async function jobCount(
  target: QueueTarget,
  states: readonly (typeof ALL_STATES)[number][] = ALL_STATES,
): Promise<number> {
  return withQueue(target, async (queue) => {
    const counts = await queue.getJobCounts(...states);
    return Object.values(counts).reduce((sum, n) => sum + (n ?? 0), 0);
  });
}

/**
 * Every Redis key and channel of a queue. All of them share the hash tag `{queue}`, so a queue
 * lives in one Redis Cluster slot and BullMQ's multi-key scripts keep working on a cluster.
 */
export interface QueueKeys {
  /** BullMQ's `prefix` option; BullMQ appends `:<queue>:…`. */
  bullPrefix: string;
  result(jobId: string): string;
  /** Channel on which workers announce state changes: JSON `{ jobId, state }`. */
  events: string;
  /** A batch's description (hash: total, invalid, createdAt, …). */
  batch(batchId: string): string;
  /** A batch's members (sorted set: job ID scored by its line number). */
  batchJobs(batchId: string): string;
}

export function queueKeys(queue: string): QueueKeys {
  const base = `dispatch:{${queue}}`;
  return {
    bullPrefix: base,
    result: (jobId) => `${base}:result:${jobId}`,
    events: `${base}:events`,
    batch: (batchId) => `${base}:batch:${batchId}`,
    batchJobs: (batchId) => `${base}:batch:${batchId}:jobs`,
  };
}

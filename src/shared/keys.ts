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
  /** Channel every worker of the queue listens on for commands (see ControlMessage in cancel.ts). */
  control: string;
  /** Set while a cancel of the job is pending: a worker that picks the job up refuses it. */
  cancelRequest(jobId: string): string;
  /** The thread (chain of jobs sharing one session) a continuing job belongs to. */
  threadOf(jobId: string): string;
  /** The last job enqueued in a thread: the next follow-up runs after it. */
  threadTail(thread: string): string;
  /** The thread an opencode session belongs to (set by the worker that first ran it). */
  sessionThread(sessionId: string): string;
  /** A session's exported transcript (gzipped JSON), so any worker can continue it. */
  sessionExport(sessionId: string): string;
  /** Running jobs holding a flow-control slot (sorted set: job ID scored by lease expiry). */
  flowSlots(name: string): string;
  /** Jobs started in one rate-limit window. */
  flowRate(name: string, window: number): string;
  /** A batch's description (hash: total, invalid, createdAt, …). */
  batch(batchId: string): string;
  /** A batch's members (sorted set: job ID scored by its line number). */
  batchJobs(batchId: string): string;
  /** What a job with a budget has spent over all its attempts (hash: tokens, cost, attempts). */
  spent(jobId: string): string;
  /** A failed or cancelled job's whole task (BullMQ name, data, options), kept with its record for `retry`. */
  taskCopy(jobId: string): string;
  /**
   * The scheduling core's keys (see src/scheduling): `${sched}seq`, `${sched}w:<gate>`, … The
   * `#` cannot appear in a queue name, so they never meet BullMQ's `dispatch:{q}:<q>:…` keys.
   */
  sched: string;
}

/** The thread a job begins when it does not continue another (see scheduling/placement.ts). */
export const rootThread = (jobId: string) => `job:${jobId}`;
/** The job that began a thread, for threads begun by a job (not by a given session). */
export const rootOfThread = (thread: string) => (thread.startsWith("job:") ? thread.slice("job:".length) : undefined);
/** The thread of jobs given `session: S` for a session no job of the queue opened. */
export const givenSessionThread = (sessionId: string) => `ses:${sessionId}`;
/** The session a thread from givenSessionThread runs in. */
export const sessionOfThread = (thread: string) => (thread.startsWith("ses:") ? thread.slice("ses:".length) : undefined);

export function queueKeys(queue: string): QueueKeys {
  const base = `dispatch:{${queue}}`;
  return {
    bullPrefix: base,
    result: (jobId) => `${base}:result:${jobId}`,
    events: `${base}:events`,
    control: `${base}:control`,
    cancelRequest: (jobId) => `${base}:cancel:${jobId}`,
    flowSlots: (name) => `${base}:flow:slots:${name}`,
    flowRate: (name, window) => `${base}:flow:rate:${name}:${window}`,
    threadOf: (jobId) => `${base}:thread-of:${jobId}`,
    threadTail: (thread) => `${base}:thread-tail:${thread}`,
    sessionThread: (sessionId) => `${base}:session-thread:${sessionId}`,
    sessionExport: (sessionId) => `${base}:session:${sessionId}`,
    batch: (batchId) => `${base}:batch:${batchId}`,
    batchJobs: (batchId) => `${base}:batch:${batchId}:jobs`,
    sched: `${base}:#s:`,
    taskCopy: (jobId) => `${base}:#task:${jobId}`,
    spent: (jobId) => `${base}:#spent:${jobId}`,
  };
}

/**
 * Every Redis key and channel of a queue: the one place key names are made. All of them share the
 * hash tag `{queue}`, so a queue lives in one Redis Cluster slot and BullMQ's multi-key scripts
 * keep working on a cluster.
 *
 * Two namespaces share `dispatch:{q}:`. BullMQ's keys are `dispatch:{q}:<queue>:…` (the queue
 * and its webhook queue `<queue>-webhooks`); the project's own keys are `dispatch:{q}:#…`. A
 * queue name begins with a letter or digit (QueueName in config.ts), so `<queue>:` is never `#…`
 * and any valid queue name (`result`, `cancel`, `thread-of`, …) works. The two pub/sub channels
 * (`events`, `control`) are not keys: Redis keeps channels apart from the keyspace.
 */
export interface QueueKeys {
  /** BullMQ's `prefix` option; BullMQ appends `:<queue>:…`. */
  bullPrefix: string;
  /** BullMQ's own keys of the queue: `${bull}<jobId>` (a job's hash), `${bull}delayed`, … */
  bull: string;
  /** BullMQ's lock on a job: it holds the lock token of the attempt that owns the job. */
  bullLock(jobId: string): string;
  result(jobId: string): string;
  /**
   * The index of result records (sorted set: job ID scored by the time of its record's last write,
   * ms), written with every record; the dashboard pages through it newest first. Members whose
   * record expired are trimmed as records are written (and dropped by readers that meet them).
   */
  results: string;
  /** The same index for the records last written in one state (a reader drops a job that has moved on). */
  resultsInState(state: string): string;
  /** The same index for the records of one opencode session. */
  resultsOfSession(sessionId: string): string;
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
  /** A batch's description (hash: total, invalid, createdAt, …). */
  batch(batchId: string): string;
  /** A batch's members (sorted set: job ID scored by its line number). */
  batchJobs(batchId: string): string;
  /** What a job with a budget has spent over all its attempts (hash: tokens, cost, attempts). */
  spent(jobId: string): string;
  /** A failed or cancelled job's whole task (BullMQ name, data, options), kept with its record for `retry`. */
  taskCopy(jobId: string): string;
  /** Settings the queue's workers publish for producers (hash: resultTtlMs). */
  settings: string;
  /** A job's live events (stream: its states, answer text as written, tools, asks; see shared/live.ts). */
  live(jobId: string): string;
  /**
   * The answer to one manual permission ask of a parked job (JSON, see shared/approval.ts), set once:
   * by `approve` / `reject`, or by the worker that finds the ask timed out.
   */
  approval(jobId: string, askId: string): string;
  /** One minute of the queue's time series (hash, see shared/series.ts), written with final records. */
  seriesMinute(minute: number): string;
  /** Every batch (sorted set: batch ID scored by its creation, ms), for the dashboard's list. */
  batches: string;
  /**
   * The scheduling core's keys (see src/scheduling): `${sched}seq`, `${sched}w:<gate>`, `${sched}done:<jobId>`, …
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
export const sessionOfThread = (thread: string) =>
  thread.startsWith("ses:") ? thread.slice("ses:".length) : undefined;

export function queueKeys(queue: string): QueueKeys {
  const base = `dispatch:{${queue}}`;
  const bull = `${base}:${queue}:`;
  /** The project's own keys (see QueueKeys). */
  const own = `${base}:#`;
  return {
    bullPrefix: base,
    bull,
    bullLock: (jobId) => `${bull}${jobId}:lock`,
    result: (jobId) => `${own}result:${jobId}`,
    results: `${own}results`,
    resultsInState: (state) => `${own}results:state:${state}`,
    resultsOfSession: (sessionId) => `${own}results:session:${sessionId}`,
    events: `${base}:events`,
    control: `${base}:control`,
    cancelRequest: (jobId) => `${own}cancel:${jobId}`,
    threadOf: (jobId) => `${own}thread-of:${jobId}`,
    threadTail: (thread) => `${own}thread-tail:${thread}`,
    sessionThread: (sessionId) => `${own}session-thread:${sessionId}`,
    sessionExport: (sessionId) => `${own}session:${sessionId}`,
    batch: (batchId) => `${own}batch:${batchId}`,
    batchJobs: (batchId) => `${own}batch:${batchId}:jobs`,
    sched: `${own}s:`,
    taskCopy: (jobId) => `${own}task:${jobId}`,
    spent: (jobId) => `${own}spent:${jobId}`,
    live: (jobId) => `${own}live:${jobId}`,
    approval: (jobId, askId) => `${own}approval:${jobId}:${askId}`,
    seriesMinute: (minute) => `${own}ts:${minute}`,
    batches: `${own}batches`,
    settings: `${own}settings`,
  };
}

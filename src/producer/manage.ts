/**
 * Managing jobs after they were enqueued: cancel, retry, list. The Dispatcher exposes these as
 * `cancel(id)`, `retry(id)` and `list(opts)`.
 */
import { retriesKey } from "../shared/webhook.js";
import type { Job, JobType, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { CANCEL_REQUEST_TTL_MS, CANCELLED, cancelledRecord, type ControlMessage } from "../shared/cancel.js";
import { InputError, JobStateError, NotFinishedError, NotFoundError } from "../shared/errors.js";
import { DEFAULT_RESULT_TTL_MS } from "../shared/config.js";
import type { QueueKeys } from "../shared/keys.js";
import { failedFromJob } from "../shared/record.js";
import { fromBull, isFinal, resolveState } from "../shared/job-state.js";
import { JobState, type ResultRecord } from "../shared/result.js";
import type { KeptTask, ResultStore } from "../shared/result-store.js";
import { REOPEN } from "../scheduling/scripts.js";
import { readStatus } from "./job-status.js";

/** How long cancel waits, unless told, for the worker running a job to confirm it aborted it. */
export const CANCEL_TIMEOUT_MS = 15_000;

export interface ManageDeps {
  redis: Redis;
  queue: Queue;
  store: ResultStore;
  keys: QueueKeys;
  /** Waits for the job's final record; rejects with NotFinishedError when `timeoutMs` passes. */
  waitFinal(jobId: string, timeoutMs: number): Promise<ResultRecord>;
  /** The producer's own DISPATCH_RESULT_TTL, used when no worker of the queue published one (see recordTtl). */
  ttlMs?: number;
}

/**
 * How long what a producer writes (records, kept tasks, retry counts) is kept: as long as the
 * queue's workers keep records (each publishes its DISPATCH_RESULT_TTL when it starts), else the
 * producer's own setting, else the default. So nothing a producer writes outlives the records.
 */
async function recordTtl(deps: ManageDeps): Promise<number> {
  return (await deps.store.queueTtl()) ?? deps.ttlMs ?? DEFAULT_RESULT_TTL_MS;
}

/** Counts a new run of the job (webhook delivery IDs carry it), kept as long as its record. */
async function countRun(deps: ManageDeps, jobId: string, ttlMs: number): Promise<void> {
  const key = retriesKey(deps.queue.name, jobId);
  const multi = deps.redis.multi().incr(key);
  if (ttlMs > 0) multi.pexpire(key, ttlMs);
  await multi.exec();
}

export interface CancelOutcome {
  jobId: string;
  /**
   * `removed`: it was waiting (or delayed, or between attempts) and is gone from the queue;
   * `cancelled`: it was running and its worker aborted it;
   * `pending`: it is running but no worker confirmed the abort in time (a worker that picks it
   * up later refuses it);
   * `finished`: it finished on its own before the cancel took effect.
   */
  outcome: "removed" | "cancelled" | "pending" | "finished";
  /** The final record, unless pending. */
  record: ResultRecord | null;
}

/** Cancels a job that has not finished. JobStateError for a finished one, NotFoundError for an unknown ID. */
export async function cancelJob(
  deps: ManageDeps,
  jobId: string,
  opts: { timeoutMs?: number } = {},
): Promise<CancelOutcome> {
  const { redis, queue, store, keys } = deps;
  const status = await readStatus(queue, store, jobId);
  if (isFinal(status.state)) {
    throw new JobStateError(`job ${jobId} has already ${status.state}; there is nothing to cancel`);
  }
  // Remembered first, so that a worker picking the job up from here on refuses it.
  await redis.set(keys.cancelRequest(jobId), "1", "PX", CANCEL_REQUEST_TTL_MS);
  const job = (await queue.getJob(jobId)) as Job | undefined;
  if (!job || status.state !== "active") {
    // BullMQ refuses to remove a job a worker has locked: then it has just started, and is aborted below.
    // Its whole task stays with its record, so `retry` can re-queue exactly it.
    const ttlMs = await recordTtl(deps);
    if (job) await store.keepTask(job, ttlMs);
    const removed = job
      ? await job.remove().then(
          () => true,
          () => false,
        )
      : true;
    if (removed) {
      const message =
        status.state === "retrying"
          ? "cancelled while waiting for a retry"
          : status.state === "awaiting-approval"
            ? "cancelled while awaiting approval"
            : "cancelled before it ran";
      const record = cancelledRecord(jobId, job?.data, status.result, message);
      await store.put(record, ttlMs);
      await redis.del(keys.cancelRequest(jobId));
      return { jobId, outcome: "removed", record };
    }
  }
  // Running: ask every worker; the one running it aborts it. Asked again until it ends, in case a
  // worker was reconnecting when the first message went out.
  const message: ControlMessage = { type: "cancel", jobId };
  const deadline = Date.now() + (opts.timeoutMs ?? CANCEL_TIMEOUT_MS);
  for (;;) {
    await redis.publish(keys.control, JSON.stringify(message));
    const left = deadline - Date.now();
    if (left <= 0) return { jobId, outcome: "pending", record: null };
    try {
      const record = await deps.waitFinal(jobId, Math.min(left, 2_000));
      const cancelled = record.state === "failed" && record.error?.name === CANCELLED;
      if (cancelled) await redis.del(keys.cancelRequest(jobId));
      return { jobId, outcome: cancelled ? "cancelled" : "finished", record };
    } catch (error) {
      if (!(error instanceof NotFinishedError)) throw error;
    }
  }
}

export interface RetryOutcome {
  jobId: string;
  /** `retried`: BullMQ still had the failed job and moved it back to waiting; `requeued`: it was enqueued again from the task kept with its record. */
  how: "retried" | "requeued";
}

export interface RequeueDeps extends ManageDeps {
  /** Enqueues a kept task again under its job ID, with a fresh set of attempts. */
  add(kept: KeptTask, jobId: string): Promise<void>;
}

/**
 * Re-queues a failed job with a fresh set of attempts. While BullMQ still keeps the job, its own
 * retry is used (the payload and options are kept as they were). Once BullMQ has removed it (it
 * was cancelled while waiting, or is past BullMQ's retention), it is enqueued again under the
 * same ID from the whole task kept with its record (ResultStore.keepTask); a job whose task was
 * not kept is refused, naming what a rebuild from its record would lose.
 */
/** A retried member of a gathered batch has not ended any more (see REOPEN). */
const reopenMember = (redis: Redis, keys: QueueKeys, jobId: string) =>
  redis.eval(REOPEN, 1, `${keys.sched}gather:${jobId}`, keys.sched, jobId);

export async function retryJob(deps: RequeueDeps, jobId: string): Promise<RetryOutcome> {
  const { redis, queue, store, keys } = deps;
  const [job, record, ttlMs] = await Promise.all([
    queue.getJob(jobId) as Promise<Job | undefined>,
    store.get(jobId),
    recordTtl(deps),
  ]);
  if (!job && !record) throw new NotFoundError(`no job with ID "${jobId}" in queue "${queue.name}"`);
  if (job) {
    const state = await job.getState();
    if (state !== "failed") throw new JobStateError(`job ${jobId} is ${state}; only a failed job can be retried`);
    const previous = record ?? failedFromJob(job, null);
    await redis.del(keys.cancelRequest(jobId));
    await countRun(deps, jobId, ttlMs);
    await reopenMember(redis, keys, jobId);
    await store.put(requeuedRecord(previous), ttlMs);
    try {
      await job.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
    } catch (error) {
      await store.put(previous, ttlMs);
      throw error;
    }
    return { jobId, how: "retried" };
  }
  if (record!.state !== "failed")
    throw new JobStateError(`job ${jobId} is ${record!.state}; only a failed job can be retried`);
  const kept = await store.keptTask(jobId);
  if (!kept) {
    throw new JobStateError(
      `job ${jobId} cannot be retried: the queue no longer holds it and its task was not kept with its record; ` +
        "re-queued from the record alone it would lose its system prompt, files, schema, webhook, worktree, budgets, " +
        "concurrency key, session and queue options, so enqueue it again instead",
    );
  }
  await redis.del(keys.cancelRequest(jobId));
  await countRun(deps, jobId, ttlMs);
  await reopenMember(redis, keys, jobId);
  await store.put(requeuedRecord(record!), ttlMs);
  try {
    await deps.add(kept, jobId);
  } catch (error) {
    await store.put(record!, ttlMs);
    throw error;
  }
  return { jobId, how: "requeued" };
}

function requeuedRecord(previous: ResultRecord): ResultRecord {
  return { ...previous, state: "waiting", error: null, finishedAt: null, durationMs: null };
}

export interface JobSummary {
  jobId: string;
  state: JobState;
  attempts: number;
  model: string | null;
  /** The first 200 characters of the prompt. */
  prompt: string;
  enqueuedAt: string | null;
  finishedAt: string | null;
  sessionId: string | null;
  error: ResultRecord["error"];
}

export interface ListOptions {
  /** Only jobs in these states. @defaultValue every state */
  state?: JobState | readonly JobState[];
  /** At most this many, newest first. @defaultValue 50 */
  limit?: number;
}

const BULL_TYPES: Record<JobState, JobType[]> = {
  waiting: ["wait", "waiting-children"],
  prioritized: ["prioritized"],
  delayed: ["delayed"],
  retrying: ["delayed"],
  active: ["active"],
  "awaiting-approval": ["delayed"],
  completed: ["completed"],
  failed: ["failed"],
};

/**
 * The newest jobs BullMQ still keeps (finished jobs stay for its retention: a day when completed,
 * a week when failed), with their states merged with the result records like `status`.
 */
export async function listJobs(
  deps: Pick<ManageDeps, "queue" | "store">,
  opts: ListOptions = {},
): Promise<JobSummary[]> {
  const wanted = new Set<JobState>(
    opts.state === undefined ? JobState.options : typeof opts.state === "string" ? [opts.state] : opts.state,
  );
  for (const state of wanted)
    if (!JobState.options.includes(state))
      throw new InputError(`state: "${state}" is not one of ${JobState.options.join(", ")}`);
  const limit = opts.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1) throw new InputError(`limit: must be a whole number of at least 1`);
  const types = [...new Set([...wanted].flatMap((state) => BULL_TYPES[state]))];
  const perType = await Promise.all(
    types.map(async (type) =>
      ((await deps.queue.getJobs([type], 0, limit - 1, false)) as (Job | undefined)[]).map((job) => ({ job, type })),
    ),
  );
  const seen = new Set<string>();
  const found = perType
    .flat()
    .filter(
      (entry): entry is { job: Job; type: JobType } =>
        !!entry.job?.id && !seen.has(entry.job.id) && !!seen.add(entry.job.id),
    )
    .sort((a, b) => b.job.timestamp - a.job.timestamp);
  const records = await deps.store.getMany(found.map(({ job }) => job.id!));
  const summaries: JobSummary[] = [];
  found.forEach(({ job, type }, i) => {
    const record = records[i] ?? null;
    const state = resolveState(record, fromBull(type) ?? "waiting");
    if (!wanted.has(state)) return;
    const merged = state === "failed" && record?.state !== "failed" ? failedFromJob(job, record) : record;
    summaries.push({
      jobId: job.id!,
      state,
      attempts: merged?.attempts ?? job.attemptsMade,
      model: merged?.model ?? (job.data as { model?: string } | null)?.model ?? null,
      prompt: (merged?.prompt ?? promptOf(job.data)).slice(0, 200),
      enqueuedAt: merged?.enqueuedAt ?? new Date(job.timestamp).toISOString(),
      finishedAt: merged?.finishedAt ?? (job.finishedOn ? new Date(job.finishedOn).toISOString() : null),
      sessionId: merged?.sessionId ?? null,
      error: merged?.error ?? null,
    });
  });
  return summaries.slice(0, limit);
}

function promptOf(data: unknown): string {
  const prompt = (data as { prompt?: unknown } | null)?.prompt;
  return typeof prompt === "string" ? prompt : "";
}

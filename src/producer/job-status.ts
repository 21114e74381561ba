import type { Job, Queue } from "bullmq";
import { NotFoundError } from "../shared/errors.js";
import { failedFromJob } from "../shared/record.js";
import { fromBull, isFinal, resolveState } from "../shared/job-state.js";
import type { JobState, ResultRecord } from "../shared/result.js";
import type { ResultStore } from "../shared/result-store.js";
import type { Scheduler } from "../scheduling/scheduler.js";

export interface JobStatus {
  jobId: string;
  state: JobState;
  /** Attempts started so far. */
  attempts: number;
  /** The latest progress a worker reported, if any. */
  progress: unknown;
  /** The result record, once a worker has started the job. */
  result: ResultRecord | null;
  /**
   * What a job that may not start yet waits for, in words: `waiting for job X`, `waiting for a
   * slot of anthropic (4/4)`, `provider anthropic held until …` (see src/scheduling/gates.ts).
   */
  waitingFor?: string;
  /** A batch's parent (`batch --then`): its batch, and how its members stand (see Dispatcher.status). */
  children?: {
    batchId: string;
    total: number;
    counts: { queued: number; running: number; completed: number; failed: number };
  };
}

/** The batch a parent (`then`) gathers, from its job or its record. */
function gatheredBatch(job: Job | undefined, record: ResultRecord | null): string | undefined {
  return record?.children?.batch ?? (job?.data as { gather?: { batch?: string } } | undefined)?.gather?.batch;
}

/**
 * The state of a job, merged from BullMQ (while it keeps the job) and our result record (which
 * outlives it). A final record wins; a job BullMQ failed on its own (stalled too often) is failed.
 */
export async function readStatus(
  queue: Queue,
  store: ResultStore,
  jobId: string,
  scheduler?: Scheduler,
  /** For a batch's parent: how its children stand (read only for a parent, from the job already read). */
  children?: (batchId: string) => Promise<JobStatus["children"]>,
): Promise<JobStatus> {
  const [job, record] = await Promise.all([queue.getJob(jobId) as Promise<Job | undefined>, store.get(jobId)]);
  if (!job && !record) throw new NotFoundError(`no job with ID "${jobId}" in queue "${queue.name}"`);
  const status = await statusOf(jobId, job, record, scheduler);
  const batchId = children ? gatheredBatch(job, record) : undefined;
  return batchId ? { ...status, children: await children!(batchId) } : status;
}

async function statusOf(
  jobId: string,
  job: Job | undefined,
  record: ResultRecord | null,
  scheduler: Scheduler | undefined,
): Promise<JobStatus> {
  if (record && isFinal(record.state)) {
    return { jobId, state: record.state, attempts: record.attempts, progress: job?.progress ?? null, result: record };
  }
  if (!job) {
    // The record says unfinished but BullMQ no longer has the job: it was removed mid-flight.
    return { jobId, state: record!.state, attempts: record!.attempts, progress: null, result: record };
  }
  const bullState = fromBull(await job.getState()) ?? "waiting";
  if (bullState === "failed") {
    const failed = failedFromJob(job, record);
    return { jobId, state: "failed", attempts: failed.attempts, progress: job.progress ?? null, result: failed };
  }
  const waiting = bullState === "delayed" ? await scheduler?.waitingFor(jobId, job.delay) : null;
  return {
    jobId,
    // Parked for a person (see shared/approval.ts) until approve / reject promote it or its timeout
    // passes; once answered, it may wait for a slot like any job (its record says so once it starts).
    state: resolveState(record, bullState, { atGate: !!waiting }),
    // Attempts that ran, not BullMQ's fetches (a job that waits is fetched and parked again).
    attempts: record?.attempts ?? job.attemptsMade,
    progress: job.progress ?? null,
    result: record,
    ...(waiting ? { waitingFor: waiting.waitingFor } : {}),
  };
}

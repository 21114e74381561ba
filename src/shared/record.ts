import type { Job } from "bullmq";
import { JobPayload } from "./task.js";
import { firingDueAt } from "./schedule.js";
import type { JobError, JobState, ResultRecord } from "./result.js";

/** A fresh record for a job, filled from its payload where that payload is readable. */
export function baseRecord(jobId: string, data: unknown, state: JobState): ResultRecord {
  const payload = JobPayload.safeParse(data);
  const p = payload.success ? payload.data : undefined;
  const rawPrompt = (data as { prompt?: unknown } | null)?.prompt;
  return {
    jobId,
    state,
    prompt: p?.prompt ?? (typeof rawPrompt === "string" ? rawPrompt : ""),
    title: p?.title ?? null,
    sessionId: null,
    text: null,
    model: p?.model ?? null,
    agent: p?.agent ?? null,
    directory: p?.directory ?? null,
    tokens: null,
    cost: null,
    attempts: 0,
    enqueuedAt: firingDueAt(jobId, p?.schedule) ?? p?.enqueuedAt ?? null,
    startedAt: null,
    finishedAt: null,
    durationMs: null,
    worker: null,
    metadata: p?.metadata ?? null,
    error: null,
    asks: [],
    continues: null,
    forkedFrom: null,
    children: null,
    worktree: null,
    structured: null,
    webhook: p?.webhook ?? null,
    messageId: null,
    schedule: p?.schedule ?? null,
    sessionStored: null,
    approval: null,
  };
}

/**
 * A failed record for a job that BullMQ failed without a worker writing the outcome (for example
 * a job that stalled more often than allowed).
 */
export function failedFromJob(job: Job, previous: ResultRecord | null): ResultRecord {
  const error: JobError = previous?.error ?? {
    name: "JobFailed",
    message: job.failedReason || "failed",
    retryable: false,
  };
  return {
    ...(previous ?? baseRecord(job.id ?? "", job.data, "failed")),
    state: "failed",
    attempts: Math.max(job.attemptsMade, previous?.attempts ?? 0),
    finishedAt: previous?.finishedAt ?? (job.finishedOn ? new Date(job.finishedOn).toISOString() : null),
    error: job.failedReason && previous?.state !== "failed" ? { ...error, message: job.failedReason } : error,
  };
}

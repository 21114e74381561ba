/**
 * Answering the permission ask a parked job waits on (see shared/approval.ts): `approve` and
 * `reject`, exposed by the Dispatcher, the CLI and the HTTP API.
 */
import type { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { decide, type Decision } from "../shared/approval.js";
import { JobStateError } from "../shared/errors.js";
import type { QueueKeys } from "../shared/keys.js";
import type { PendingApproval } from "../shared/result.js";
import type { ResultStore } from "../shared/result-store.js";
import { readStatus } from "./job-status.js";

export interface ApproveOptions {
  /** Approve what opencode suggests for it (e.g. the whole directory) for the rest of the job, not just this ask. */
  always?: boolean;
  /** Who approves (kept in the record's `asks`). @defaultValue "library" */
  by?: string;
}

export interface RejectOptions {
  /** Told to the agent (and kept in the record's `asks`). */
  message?: string;
  /** Who rejects (kept in the record's `asks`). @defaultValue "library" */
  by?: string;
}

export interface ApprovalOutcome {
  jobId: string;
  /** The ask that was answered. */
  ask: PendingApproval;
  decision: Decision;
}

export interface ApprovalDeps {
  redis: Redis;
  queue: Queue;
  store: ResultStore;
  keys: QueueKeys;
}

/**
 * Answers the ask a job in state `awaiting-approval` waits on, and wakes the job (any worker
 * resumes it). NotFoundError for an unknown job; JobStateError for a job that does not wait on an
 * ask, or whose ask was answered first (by someone else, or by its timeout).
 */
export async function answerAsk(
  deps: ApprovalDeps,
  jobId: string,
  answer: Decision["answer"],
  opts: { by?: string; message?: string } = {},
): Promise<ApprovalOutcome> {
  const status = await readStatus(deps.queue, deps.store, jobId);
  const ask = status.result?.approval;
  if (status.result?.state !== "awaiting-approval" || !ask) {
    throw new JobStateError(
      `job ${jobId} is not awaiting approval (it is ${status.state}); there is no ask to ${answer === "reject" ? "reject" : "approve"}`,
    );
  }
  const decision: Decision = {
    answer,
    by: opts.by?.trim() || "library",
    at: new Date().toISOString(),
    ...(opts.message ? { message: opts.message } : {}),
  };
  const holds = await decide(deps.redis, deps.keys, jobId, ask, decision, true);
  if (!holds) throw new JobStateError(`job ${jobId} is no longer awaiting approval`);
  if (JSON.stringify(holds) !== JSON.stringify(decision)) {
    const how =
      holds.by === "timeout" ? "it timed out and was rejected" : `it was answered ${holds.answer} by ${holds.by}`;
    throw new JobStateError(`the ask of job ${jobId} was answered before: ${how} at ${holds.at}`);
  }
  // A job its worker is still parking is not in the delayed set yet: that worker promotes it.
  const job = (await deps.queue.getJob(jobId)) as Job | undefined;
  await job?.promote().catch(() => undefined);
  return { jobId, ask, decision };
}

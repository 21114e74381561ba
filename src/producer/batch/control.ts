import { JobStateError } from "../../shared/errors.js";
import type { CancelOutcome, RetryOutcome } from "../manage.js";
import type { BatchStore, MemberState } from "./store.js";

/** Members handled at once by a batch cancel or retry. */
const AT_ONCE = 16;

export interface BatchCancelOutcome {
  batchId: string;
  /** Waiting, delayed or between attempts: removed from the queue, their records `Cancelled`. */
  removed: number;
  /** Running: aborted by their workers. */
  cancelled: number;
  /** Running, and no worker confirmed the abort in time (a worker that picks one up refuses it). */
  pending: number;
  /** Already finished (or finished before the cancel took effect): left as they are. */
  finished: number;
}

export interface BatchRetryOutcome {
  batchId: string;
  /** Failed members re-queued with a fresh set of attempts. */
  retried: number;
  /** Failed members that could not be (their task was not kept, say), with the reason. */
  refused: { jobId: string; reason: string }[];
}

/**
 * Cancels every member of a batch that has not finished: waiting ones are removed, running ones
 * aborted (each confirmed within `timeoutMs`, default 15 s, else counted pending).
 */
export async function cancelBatch(
  batches: BatchStore,
  batchId: string,
  cancel: (jobId: string, opts: { timeoutMs: number }) => Promise<CancelOutcome>,
  opts: { timeoutMs?: number } = {},
): Promise<BatchCancelOutcome> {
  const outcome: BatchCancelOutcome = { batchId, removed: 0, cancelled: 0, pending: 0, finished: 0 };
  await eachMember(
    batches,
    batchId,
    (state) => state !== "completed" && state !== "failed" && state !== "missing",
    async (jobId) => {
      try {
        outcome[(await cancel(jobId, { timeoutMs: opts.timeoutMs ?? 15_000 })).outcome] += 1;
      } catch (error) {
        if (!(error instanceof JobStateError)) throw error;
        outcome.finished += 1; // it finished between the read of its state and the cancel
      }
    },
    () => (outcome.finished += 1),
  );
  return outcome;
}

/** Re-queues every failed member of a batch (completed members are never run again). */
export async function retryBatch(
  batches: BatchStore,
  batchId: string,
  retry: (jobId: string) => Promise<RetryOutcome>,
): Promise<BatchRetryOutcome> {
  const outcome: BatchRetryOutcome = { batchId, retried: 0, refused: [] };
  await eachMember(
    batches,
    batchId,
    (state) => state === "failed",
    async (jobId) => {
      try {
        await retry(jobId);
        outcome.retried += 1;
      } catch (error) {
        if (!(error instanceof JobStateError)) throw error;
        if (outcome.refused.length < 1_000) outcome.refused.push({ jobId, reason: error.message });
      }
    },
  );
  return outcome;
}

/** Runs `act` on the members whose state `wanted` picks, AT_ONCE at a time; `other` for the rest. */
async function eachMember(
  batches: BatchStore,
  batchId: string,
  wanted: (state: MemberState) => boolean,
  act: (jobId: string) => Promise<void>,
  other: () => void = () => undefined,
): Promise<void> {
  for await (const chunk of batches.memberChunks(batchId, 500)) {
    const ids = chunk.map((m) => m.jobId);
    const states = await batches.states(ids);
    const todo = ids.filter((_, i) => {
      if (wanted(states[i]!)) return true;
      other();
      return false;
    });
    for (let i = 0; i < todo.length; i += AT_ONCE) await Promise.all(todo.slice(i, i + AT_ONCE).map(act));
  }
}

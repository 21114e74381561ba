import { z } from "zod";
import { baseRecord } from "./record.js";
import type { ResultRecord } from "./result.js";

/**
 * Messages on a queue's control channel (`QueueKeys.control`), which every worker listens to: a
 * job to cancel, or a batch whose members passed its budget (see worker/queue/batch-budget.ts).
 */
export const ControlMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("cancel"), jobId: z.string().min(1) }),
  z.object({ type: z.literal("batch-budget"), batchId: z.string().min(1), message: z.string() }),
]);
export type ControlMessage = z.infer<typeof ControlMessage>;

/** The reason handed to BullMQ's `worker.cancelJob`; the processor maps it to a non-retryable stop. */
export const CANCEL_REASON = "cancelled";

/** The error name a cancelled job's record carries (the same name the processor gives a cancel). */
export const CANCELLED = "Cancelled";

/** How long a pending cancel request is remembered for a job that no worker is running yet. */
export const CANCEL_REQUEST_TTL_MS = 7 * 86_400_000;

/** The final record of a job cancelled before a worker ran it (or between two attempts). */
export function cancelledRecord(
  jobId: string,
  data: unknown,
  previous: ResultRecord | null,
  message: string,
  now = new Date(),
): ResultRecord {
  return {
    ...(previous ?? baseRecord(jobId, data, "failed")),
    state: "failed",
    finishedAt: now.toISOString(),
    error: { name: CANCELLED, message, retryable: false },
    approval: null, // a parked job's ask is answered by no one now
  };
}

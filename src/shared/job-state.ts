/**
 * A job's state in one vocabulary (JobState, result.ts), resolved from its two sources: our result
 * record, which outlives the job, and BullMQ's state of the job while BullMQ keeps it. `status`
 * and `list` ask here, so the two never tell one job's state differently.
 */
import { FINAL_STATES, type JobState, type ResultRecord } from "./result.js";

/** Completed or failed: nothing more happens to the job unless someone retries it. */
export function isFinal(state: string): state is "completed" | "failed" {
  return FINAL_STATES.has(state as JobState);
}

/**
 * BullMQ's name of a job's state (`Job.getState()`, or a `Queue.getJobs` type) in ours;
 * undefined for one it does not know (`unknown`: the job is gone).
 */
export function fromBull(state: string): JobState | undefined {
  switch (state) {
    case "wait":
    case "waiting":
    case "waiting-children":
      return "waiting";
    case "prioritized":
    case "delayed":
    case "active":
    case "completed":
    case "failed":
      return state;
    default:
      return undefined;
  }
}

/**
 * The state to tell of a job BullMQ still keeps. A final record wins. BullMQ's own finished and
 * running states win over a record that lags behind (BullMQ fails a job that stalled too often
 * without any worker writing a record). A job waiting to run again after a failed attempt is
 * retrying while its record says so; a delayed job whose record awaits approval is awaiting it,
 * unless it is answered and waits at a gate for a slot (`atGate`: the scheduler says what it waits for).
 */
export function resolveState(
  record: Pick<ResultRecord, "state"> | null,
  bull: JobState,
  opts: { atGate?: boolean } = {},
): JobState {
  if (record && isFinal(record.state)) return record.state;
  if (bull === "completed" || bull === "failed" || bull === "active") return bull;
  if (record?.state === "retrying") return "retrying";
  if (bull === "delayed" && record?.state === "awaiting-approval" && !opts.atGate) return "awaiting-approval";
  return bull;
}

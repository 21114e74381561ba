/**
 * What producer and worker share about schedules (see producer/schedules.ts): the name rule, the
 * IDs BullMQ gives firings, and the project's own key of a schedule.
 */
import { z } from "zod";
import type { QueueKeys } from "./keys.js";

/** A schedule's name: also BullMQ's job scheduler ID, so it holds no ":" (firings are `repeat:<name>:<ms>`). */
export const ScheduleName = z
  .string()
  .min(1, "must not be empty")
  .max(100, "must be at most 100 characters")
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
    "may hold only letters, digits, '_', '.', '-' (and begins with a letter or digit)",
  );

/** The ID BullMQ gives a schedule's firing: `repeat:<schedule>:<ms when due>`. */
export const FiringId = z.string().regex(/^repeat:[A-Za-z0-9][A-Za-z0-9_.-]*:\d+$/, "is not a job ID");

/**
 * When a firing of `schedule` was due, from the ID BullMQ gives it (`repeat:<schedule>:<ms>`): its
 * enqueue time (the payload it carries is the schedule's template, written when it was added).
 * Undefined for any other job (a `run` of the schedule carries its own fresh time).
 */
export function firingDueAt(jobId: string, schedule: string | undefined): string | undefined {
  if (!schedule || !jobId.startsWith(`repeat:${schedule}:`)) return undefined;
  const ms = Number(jobId.slice(`repeat:${schedule}:`.length));
  return Number.isSafeInteger(ms) && ms > 0 ? new Date(ms).toISOString() : undefined;
}

/**
 * The project's own keys of a schedule, beside the scheduling core's (`QueueKeys.sched`):
 * - `${sched}schedule:<name>`: hash; `last` = the job ID of the firing that started last,
 *   `session` = the session its firings run in (`sameSession`);
 * - `${sched}schedule-after:<jobId>`: the firing that started before this one (`sameSession`).
 */
export const scheduleKeys = (keys: Pick<QueueKeys, "sched">, name: string) => ({
  schedule: `${keys.sched}schedule:${name}`,
  after: (jobId: string) => `${keys.sched}schedule-after:${jobId}`,
});

import { z } from "zod";

export const JobState = z.enum([
  "waiting",
  "delayed",
  "prioritized",
  "active",
  "awaiting-approval",
  "retrying",
  "completed",
  "failed",
]);
export type JobState = z.infer<typeof JobState>;

export const FINAL_STATES: ReadonlySet<JobState> = new Set(["completed", "failed"]);

export const Tokens = z.object({
  input: z.number(),
  output: z.number(),
  reasoning: z.number(),
  cacheRead: z.number(),
  cacheWrite: z.number(),
  total: z.number(),
});
export type Tokens = z.infer<typeof Tokens>;

export const JobError = z.object({
  name: z.string(),
  message: z.string(),
  retryable: z.boolean(),
  statusCode: z.number().optional(),
});
export type JobError = z.infer<typeof JobError>;

/** A permission ask or question the agent made, and what the worker answered. */
export const Ask = z.object({
  kind: z.enum(["permission", "question"]),
  what: z.string(),
  patterns: z.array(z.string()),
  /** `always`: approved for the rest of the job (a person's `approve --always`). */
  answer: z.enum(["once", "always", "reject"]),
  /** When it was asked. */
  at: z.string(),
  /**
   * Who answered: `policy` (the job's approval policy, at once), `timeout` (a manual ask no one
   * answered in time), or the person who approved or rejected it (see `approve` / `reject`).
   */
  by: z.string().optional(),
  /** When it was answered, for an ask that waited for a person. */
  answeredAt: z.string().optional(),
  /** What the person said with a reject (given to the agent). */
  message: z.string().optional(),
  /** The agent's own words before the ask (its latest text), for an ask that waited for a person. */
  words: z.string().nullable().optional(),
});
export type Ask = z.infer<typeof Ask>;

/** A permission ask that waits for a person (approval policy `manual`): the job is parked meanwhile. */
export const PendingApproval = z.object({
  /** opencode's ID of the permission request (approve / reject answer this one). */
  id: z.string(),
  /** The permission asked for, e.g. `external_directory`, `bash`, `edit`. */
  permission: z.string(),
  /** What it is asked for: paths, commands. */
  patterns: z.array(z.string()),
  /** What `approve --always` approves for the rest of the job (opencode's suggestion, e.g. `/etc/*`). */
  always: z.array(z.string()),
  /** The tool whose call asked, if known. */
  tool: z.string().nullable(),
  /** The agent's latest text before the ask (its own words on why), if any. */
  words: z.string().nullable(),
  askedAt: z.string(),
  /** When an unanswered ask is rejected (the job's approval timeout after it was asked). */
  timeoutAt: z.string(),
});
export type PendingApproval = z.infer<typeof PendingApproval>;

/** What a running job has done so far (also BullMQ's job progress). */
export const Progress = z.object({
  steps: z.number(),
  toolCalls: z.number(),
  tokens: z.number(),
  cost: z.number(),
  lastTool: z.string().nullable(),
  status: z.string(),
});
export type Progress = z.infer<typeof Progress>;

/**
 * The record kept for every job that a worker has started, in Redis under its own key so that it
 * outlives BullMQ's job retention. Written when an attempt starts and when it ends.
 */
export const ResultRecord = z.object({
  jobId: z.string(),
  state: JobState,
  prompt: z.string(),
  title: z.string().nullable(),
  sessionId: z.string().nullable(),
  text: z.string().nullable(),
  model: z.string().nullable(),
  agent: z.string().nullable(),
  directory: z.string().nullable(),
  tokens: Tokens.nullable(),
  cost: z.number().nullable(),
  attempts: z.number().int(),
  enqueuedAt: z.string().nullable(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  durationMs: z.number().nullable(),
  worker: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()).nullable(),
  error: JobError.nullable(),
  /** Permission asks and questions, with the answers given. */
  asks: z.array(Ask).default([]),
  /** The job whose session this one continued, if any. */
  continues: z.string().nullable().default(null),
  /** The job whose session this one's session was copied from (a task with `fork`), if any. */
  forkedFrom: z.string().nullable().default(null),
  /**
   * A batch's parent (`then`): its batch and how its members ended (`removed`: taken out of the
   * queue before they ran), once it starts; null for other jobs.
   */
  children: z
    .object({
      batch: z.string(),
      total: z.number().int(),
      completed: z.number().int(),
      failed: z.number().int(),
      removed: z.number().int(),
    })
    .nullable()
    .default(null),
  /** Where a `worktree` job ran: the worktree path, its branch, and the files it changed. */
  worktree: z
    .object({ path: z.string(), branch: z.string(), base: z.string(), changedFiles: z.array(z.string()) })
    .nullable()
    .default(null),
  /** The structured answer (a task with a `schema`): the object the model gave, checked against the schema. */
  structured: z.unknown().default(null),
  /** Where the final record is POSTed (a task with a `webhook`). */
  webhook: z.string().nullable().default(null),
  /**
   * The assistant message that ended this job's turn in its session. A follow-up runs only on a
   * transcript that holds it, never on an older copy.
   */
  messageId: z.string().nullable().default(null),
  /** The schedule whose firing this job is (see `schedule add`), if any. */
  schedule: z.string().nullable().default(null),
  /**
   * Whether the job's session is stored in the queue with its turn: false while an answer is kept
   * whose session has not been stored yet (the next attempt stores it and asks nothing), or on a
   * completed job whose session only its worker's server holds; null before the turn's end.
   */
  sessionStored: z.boolean().nullable().default(null),
  /** The permission ask a job in state `awaiting-approval` waits on; null otherwise. */
  approval: PendingApproval.nullable().default(null),
});
export type ResultRecord = z.infer<typeof ResultRecord>;

export function emptyTokens(): Tokens {
  return { input: 0, output: 0, reasoning: 0, cacheRead: 0, cacheWrite: 0, total: 0 };
}

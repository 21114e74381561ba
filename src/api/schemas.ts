/**
 * The shapes the HTTP API answers with, as zod schemas: the OpenAPI document is generated from
 * them (and from the task and record schemas the library itself validates with).
 */
import { z } from "zod";
import { Decision } from "../shared/approval.js";
import { JobState, PendingApproval, ResultRecord } from "../shared/result.js";
import { TaskInput } from "../shared/task.js";

export const ErrorBody = z.object({
  error: z.object({
    name: z.string().describe("InputError, Unauthorized, Forbidden, NotFoundError, JobStateError, TooManyRequests, …"),
    message: z.string(),
    field: z.string().optional().describe("the field (or query parameter, header, body) at fault, for a 400"),
  }),
});

export const EnqueueReceipt = z.object({
  jobId: z.string(),
  duplicate: z.boolean().describe("true when a job with this ID (Idempotency-Key) already existed: nothing was added"),
});

export const JobStatus = z.object({
  jobId: z.string(),
  state: JobState,
  attempts: z.number().int(),
  progress: z.unknown().describe("the latest progress a worker reported, if any"),
  result: ResultRecord.nullable(),
  waitingFor: z.string().optional().describe("what a job that may not start yet waits for, in words"),
});

export const NotFinished = z.object({ jobId: z.string(), state: JobState });

export const CancelOutcome = z.object({
  jobId: z.string(),
  outcome: z.enum(["removed", "cancelled", "pending", "finished"]),
  record: ResultRecord.nullable(),
});

export const RetryOutcome = z.object({ jobId: z.string(), how: z.enum(["retried", "requeued"]) });

export const ApproveBody = z.strictObject({
  always: z
    .boolean()
    .optional()
    .describe(
      "approve what opencode suggests for the ask (`approval.always`, e.g. its whole directory) for the rest of the job",
    ),
  by: z.string().min(1).max(200).optional().describe('who approves, kept in the record\'s `asks` (default "api")'),
});

export const RejectBody = z.strictObject({
  message: z.string().min(1).max(10_000).optional().describe("why: told to the agent, kept in the record's `asks`"),
  by: z.string().min(1).max(200).optional().describe('who rejects, kept in the record\'s `asks` (default "api")'),
});

export const ApprovalOutcome = z.object({
  jobId: z.string(),
  ask: PendingApproval.describe("the ask that was answered"),
  decision: Decision,
});

export const BatchReceipt = z.object({
  batchId: z.string(),
  total: z.number().int(),
  enqueued: z.number().int(),
  duplicates: z.number().int(),
  invalid: z.number().int(),
  invalidLines: z.array(z.object({ line: z.number().int(), error: z.string() })),
  /** The batch's parent (`then`), if it has one. */
  thenJobId: z.string().optional(),
});

export const BatchBudget = z.object({
  maxCost: z.number().nullable(),
  maxTokens: z.number().nullable(),
  spent: z.object({ tokens: z.number(), cost: z.number() }),
  exceeded: z.string().nullable(),
});

export const BatchStatus = z.object({
  batchId: z.string(),
  total: z.number().int(),
  members: z.number().int(),
  complete: z.boolean(),
  invalid: z.number().int(),
  createdAt: z.string(),
  counts: z.object({
    queued: z.number().int(),
    running: z.number().int(),
    completed: z.number().int(),
    failed: z.number().int(),
  }),
  budget: BatchBudget.nullable(),
});

export const BatchCancelOutcome = z.object({
  batchId: z.string(),
  removed: z.number().int(),
  cancelled: z.number().int(),
  pending: z.number().int(),
  finished: z.number().int(),
});

export const BatchRetryOutcome = z.object({
  batchId: z.string(),
  retried: z.number().int(),
  refused: z.array(z.object({ jobId: z.string(), reason: z.string() })),
});

export const QueueState = z.object({ queue: z.string(), paused: z.boolean() });

export const LiveEvent = z.object({
  id: z.string().describe("the SSE event id: send it back as Last-Event-ID to resume after it"),
  type: z.enum(["state", "text", "tool", "ask", "progress", "final"]),
  data: z.record(z.string(), z.unknown()),
});

export const ScheduleSpec = z.object({
  name: z.string().describe("letters, digits, _ . - (at most 100); a schedule of a name that exists is replaced"),
  cron: z.string().optional().describe('a cron pattern, e.g. "0 2 * * *" (give this or every)'),
  tz: z.string().optional().describe("the IANA time zone cron is read in (default UTC)"),
  every: z.union([z.number(), z.string()]).optional().describe("fire every this long: ms, or 15m, 1h (at least 1s)"),
  sameSession: z.boolean().optional().describe("run each firing in the previous firing's session, one at a time"),
  task: TaskInput,
});

export const ScheduleInfo = z.object({
  name: z.string(),
  cron: z.string().nullable(),
  tz: z.string().nullable(),
  every: z.number().nullable(),
  sameSession: z.boolean(),
  next: z.string().nullable(),
  firings: z.number().int(),
  sessionId: z.string().nullable(),
  task: z.record(z.string(), z.unknown()),
  replaced: z.boolean().optional(),
});

export const ScheduleList = z.object({ schedules: z.array(ScheduleInfo) });

export const ScheduleRemoved = z.object({ name: z.string(), removed: z.literal(true) });

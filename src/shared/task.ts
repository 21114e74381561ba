import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { MAX_DURATION_MS, parseDuration } from "./duration.js";
import { InputError } from "./errors.js";
import { FilePart, FilesInput } from "./files.js";
import { schemaProblem } from "./json-schema.js";
import { FiringId } from "./schedule.js";

/** What a permission ask gets (see the task's `approval`). */
export const ApprovalPolicy = z.enum(["reject", "approve", "manual"]);
export type ApprovalPolicy = z.infer<typeof ApprovalPolicy>;

/** Limits that keep one job from bloating Redis. */
export const LIMITS = {
  promptChars: 1_000_000,
  systemChars: 100_000,
  titleChars: 200,
  metadataBytes: 16_384,
  attempts: 100,
  /** BullMQ's highest priority number (lower runs first; 0 means none). */
  priority: 2_097_152,
  schemaBytes: 65_536,
  /** Repair prompts after a structured answer that misses the schema. */
  schemaRetries: 10,
} as const;

/** `provider/model`; the model part may itself hold slashes (e.g. `openrouter/anthropic/x`). */
export const ModelRef = z
  .string()
  .regex(/^[^/\s]+\/\S+$/, 'must be of the form "provider/model", e.g. "anthropic/claude-sonnet-4"');

export function splitModel(model: string): { providerID: string; modelID: string } {
  const slash = model.indexOf("/");
  return { providerID: model.slice(0, slash), modelID: model.slice(slash + 1) };
}

/** Job IDs (also idempotency keys): BullMQ forbids ":" and pure integers in custom IDs. */
export const JobId = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "may hold only letters, digits, '_', '.', '-'")
  .refine((id) => !/^\d+$/.test(id), "must not be a plain number");

const Duration = z.union([z.number(), z.string()]).transform((value, ctx) => {
  try {
    const ms = parseDuration(value);
    if (ms <= 0) throw new Error("must be greater than zero");
    return ms;
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});

const Metadata = z
  .record(z.string(), z.json())
  .refine(
    (value) => Buffer.byteLength(JSON.stringify(value)) <= LIMITS.metadataBytes,
    `must be at most ${LIMITS.metadataBytes} bytes as JSON`,
  );

/** An output schema: a JSON Schema object whose root is an object (checked with ajv). */
const OutputSchema = z
  .record(z.string(), z.json())
  .refine(
    (value) => Buffer.byteLength(JSON.stringify(value)) <= LIMITS.schemaBytes,
    `must be at most ${LIMITS.schemaBytes} bytes as JSON`,
  )
  .superRefine((value, ctx) => {
    const problem = schemaProblem(value);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

/** Where a finished job's record is POSTed. */
const WebhookUrl = z
  .string()
  .max(2_000)
  .refine((url) => URL.canParse(url) && /^https?:$/.test(new URL(url).protocol), "must be an http:// or https:// URL");

/** What the model is asked to do: the part of a task that travels to the worker. */
const WorkFields = {
  prompt: z
    .string()
    .refine((p) => p.trim().length > 0, "must not be empty")
    .refine((p) => p.length <= LIMITS.promptChars, `must be at most ${LIMITS.promptChars} characters`),
  model: ModelRef.optional(),
  agent: z.string().min(1).max(100).optional(),
  directory: z
    .string()
    .min(1)
    .refine((d) => isAbsolute(d), "must be an absolute path")
    .optional(),
  title: z.string().min(1).max(LIMITS.titleChars).optional(),
  system: z.string().min(1).max(LIMITS.systemChars).optional(),
  metadata: Metadata.optional(),
  /** Approve permission asks once instead of rejecting them: `approval: "approve"` (`false`: `"reject"`). */
  autoApprove: z.boolean().optional(),
  /**
   * What a permission ask gets: `reject` it (as `opencode run` does), `approve` it once, or
   * `manual`: the job is parked in state `awaiting-approval` until a person approves or rejects
   * it. @defaultValue the worker's (DISPATCH_APPROVAL)
   */
  approval: ApprovalPolicy.optional(),
  /** A manual ask no one answered within this long is rejected. @defaultValue 24h (DISPATCH_APPROVAL_TIMEOUT) */
  approvalTimeout: Duration.optional(),
  /** Abort and fail (not retried) once the session's running cost passes this many USD. */
  maxCost: z.number().positive().optional(),
  /** Abort and fail (not retried) once the session's running token count passes this. */
  maxTokens: z.number().int().positive().optional(),
  /** Run in a fresh git worktree (its own branch) of `directory`. */
  worktree: z.boolean().optional(),
  /** Ask for a structured answer matching this JSON Schema (validated by the worker). */
  schema: OutputSchema.optional(),
  /** Repair prompts when the structured answer misses the schema. @defaultValue 2 */
  schemaRetries: z.number().int().min(0).max(LIMITS.schemaRetries).optional(),
  /** POST the result record here when the job completes or fails for good. */
  webhook: WebhookUrl.optional(),
  /** Jobs sharing this key run at most `DISPATCH_KEY_CONCURRENCY` (1) at a time, across all workers. */
  concurrencyKey: z.string().min(1).max(500).optional(),
};

/** Which session a task runs in: a new one, the session of an earlier job, or a given session. */
const SessionFields = {
  continue: JobId.optional(),
  session: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[A-Za-z0-9_-]+$/, "is not a session ID")
    .optional(),
  /**
   * Run in a new session copied from that earlier job's session as it was when the job ended (its
   * turns, in its directory): many tasks start from one shared context and run in parallel.
   */
  fork: JobId.optional(),
};

/** Queue options: how BullMQ treats the job. */
const QueueFields = {
  id: JobId.optional(),
  /**
   * Fair share: free slots go round robin across the groups that have work. @defaultValue the
   * batch ID for a batch's tasks, else one group shared by all single enqueues ("default")
   */
  group: z.string().min(1).max(200).optional(),
  priority: z.number().int().min(0).max(LIMITS.priority).optional(),
  delay: z.number().int().min(0).max(MAX_DURATION_MS, "must be at most 365 days (in ms)").optional(),
  attempts: z.number().int().min(1).max(LIMITS.attempts).optional(),
  /** Per attempt; a number of ms or a duration string ("10m"). */
  timeout: Duration.optional(),
};

const TaskShape = {
  ...WorkFields,
  /** Files attached to the prompt: paths (read at enqueue time) or data URLs. */
  files: FilesInput.optional(),
  ...SessionFields,
  ...QueueFields,
};

/** The rules across fields, on the full schema and on every per-fields one (see schemaFor). */
function withTaskRules<T extends z.ZodObject>(schema: T): T {
  return schema
    .refine((t) => !(t.continue && t.session), {
      message: "give either continue or session, not both",
      path: ["continue"],
    })
    .refine((t) => !(t.fork && (t.continue || t.session)), {
      message: "a fork starts its own session: give fork, or continue / session, not both",
      path: ["fork"],
    })
    .refine((t) => !(t.fork && t.worktree), {
      message: "a fork runs in the directory of the session it copies: worktree does not apply",
      path: ["worktree"],
    })
    .refine((t) => t.autoApprove === undefined || t.approval === undefined, {
      message: "give either approval or autoApprove (its older name), not both",
      path: ["autoApprove"],
    })
    .refine((t) => !t.worktree || t.directory || t.continue || t.session, {
      message: "needs a directory (the git repository to make the worktree from)",
      path: ["worktree"],
    });
}

/** A task as a producer gives it (library or CLI). Unknown fields are an error. */
export const TaskInput = withTaskRules(z.strictObject(TaskShape));
export type TaskInput = z.input<typeof TaskInput>;
export type Task = z.output<typeof TaskInput>;

/**
 * zod's object parser runs every field's schema whether the field is there or not, so a task of
 * two fields paid for all of them (~4 µs, the largest share of enqueueing a batch). Tasks are
 * parsed by a schema of just the fields they have (plus `prompt`, which is required), built once
 * per set of field names; a task with an unknown field gets the full schema and its error.
 */
const schemaByFields = new Map<string, typeof TaskInput>();
const MAX_FIELD_SETS = 256;

function schemaFor(input: unknown): typeof TaskInput {
  if (typeof input !== "object" || input === null) return TaskInput;
  // Plain objects only, every property own and enumerable: what Object.keys sees is what zod reads.
  const proto = Object.getPrototypeOf(input) as unknown;
  if (proto !== Object.prototype && proto !== null) return TaskInput;
  const fields = Object.keys(input);
  if (Object.getOwnPropertyNames(input).length !== fields.length) return TaskInput;
  const id = fields.join(",");
  let schema = schemaByFields.get(id);
  if (!schema) {
    if (schemaByFields.size >= MAX_FIELD_SETS || !fields.every((f) => Object.hasOwn(TaskShape, f))) return TaskInput;
    const shape: Record<string, z.ZodType> = { prompt: TaskShape.prompt };
    for (const f of fields) shape[f] = TaskShape[f as keyof typeof TaskShape];
    schema = withTaskRules(z.strictObject(shape)) as unknown as typeof TaskInput;
    schemaByFields.set(id, schema);
  }
  return schema;
}

/** What is stored in the BullMQ job: the work, plus the resolved timeout and enqueue time. */
export const JobPayload = z.strictObject({
  ...WorkFields,
  /** Attached files, as data URLs. */
  files: z.array(FilePart).optional(),
  /** An explicit session to continue (`session` on the task). */
  session: SessionFields.session,
  /** The job this one continues: it runs after that job has finished, in its session (a schedule's firing, too). */
  after: z.union([JobId, FiringId]).optional(),
  /** The job whose session this one copies (`fork` on the task): it runs once that job has ended. */
  fork: SessionFields.fork,
  /**
   * A parent of a batch (`then` of a batch): it runs once every member has ended, and its prompt
   * gets their results. `on: "completed"`: it fails instead when a member did not complete.
   */
  gather: z.strictObject({ batch: z.string(), on: z.enum(["all", "completed"]) }).optional(),
  /** The chain of jobs sharing one session (see scheduling/placement.ts). */
  thread: z.string().optional(),
  /** The batch whose budget this job spends from (a batch submitted with maxCost / maxTokens). */
  batchBudget: z.string().optional(),
  /** The schedule this job is a firing of (see producer/schedules.ts). */
  schedule: z.string().optional(),
  /** A schedule's `sameSession`: each firing runs in the session of the firing before it. */
  sameSession: z.boolean().optional(),
  /** The W3C trace context of the producer's `enqueue` span, when it was traced (see shared/tracing.ts). */
  traceparent: z
    .string()
    .regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/)
    .optional(),
  timeoutMs: z.number().int().positive(),
  enqueuedAt: z.iso.datetime(),
  v: z.literal(1),
});
export type JobPayload = z.infer<typeof JobPayload>;

/** Formats zod issues as `field: problem; field: problem`. */
export function describeIssues(error: z.ZodError, prefix = ""): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.join(".");
      const where = prefix + path;
      if (issue.code === "unrecognized_keys") {
        return `${where ? where + ": " : ""}unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
      }
      return `${where || "task"}: ${issue.message}`;
    })
    .join("; ");
}

/** Parses a task, throwing an InputError that names every bad field. */
export function parseTask(input: unknown, where = ""): Task {
  const parsed = schemaFor(input).safeParse(input);
  if (!parsed.success) throw new InputError(describeIssues(parsed.error, where));
  const task = parsed.data;
  if (task.directory) task.directory = resolve(task.directory);
  return task;
}

/** Task fields that become job options or placement rather than payload. */
const NOT_PAYLOAD = new Set<string>(["id", "group", "priority", "delay", "attempts", "timeout", "continue"]);

/**
 * The job's data for a task. A plain loop rather than `{ a, b, ...rest }`: object rest with
 * excluded keys takes V8's slow path (~3 µs a task, a tenth of the enqueue cost).
 */
export function toPayload(task: Task, defaults: { timeoutMs: number }, now: Date | string = new Date()): JobPayload {
  const payload: Record<string, unknown> = {};
  for (const key in task) {
    const value = task[key as keyof Task];
    if (value !== undefined && !NOT_PAYLOAD.has(key)) payload[key] = value;
  }
  payload.timeoutMs = task.timeout ?? defaults.timeoutMs;
  payload.enqueuedAt = typeof now === "string" ? now : now.toISOString();
  payload.v = 1;
  return payload as JobPayload;
}

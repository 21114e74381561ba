/**
 * Submitting a batch in two streaming passes (validate, then enqueue in chunks), idempotent per
 * line, with its budget and its parent (`then`). One file because both passes share the line
 * numbering, the derived job IDs and the follow-up checks.
 */
import { createHash } from "node:crypto";
import type { JobsOptions } from "bullmq";
import { InputError } from "../../shared/errors.js";
import { JobId, parseTask, toPayload, type Task, type TaskInput } from "../../shared/task.js";
import type { Placement } from "../../scheduling/placement.js";
import type { NewJob } from "../add-jobs.js";
import { ChunkWriter, type ChunkItem } from "../chunk-writer.js";
import { BatchFollowUps } from "../follow-ups.js";
import type { BatchEntry, BatchSource } from "./source.js";
import type { BatchStore } from "./store.js";

export interface BatchOptions {
  /**
   * The batch ID (letters, digits, `_ . -`; at most 150 characters). Tasks without their own `id`
   * get the job ID `<batchId>-<line>`.
   * @defaultValue `batch-` and a hash of the tasks and `defaults`, so the same input gets the same ID
   */
  id?: string;
  /** Fields every task gets unless it sets them itself (like the CLI's task options). */
  defaults?: Partial<TaskInput>;
  /** Leave invalid tasks out instead of rejecting the whole batch. @defaultValue false */
  skipInvalid?: boolean;
  /**
   * A budget for the whole batch, in the cost unit opencode reports (USD): once what its members
   * spent together passes it, no member starts any more, the running ones are stopped, and every
   * member left ends `BudgetExceeded`. (A task's own `maxCost` still caps that task.)
   */
  maxCost?: number;
  /** A budget of tokens for the whole batch, enforced like `maxCost`. */
  maxTokens?: number;
  /**
   * A parent task that runs once every member has ended, with their results (each member's line,
   * job ID, state, and answer or error) after its prompt — inline, or as an attached JSON Lines file
   * when large. A prompt, or a task (its own `model`, `id`, …; the batch's `defaults` apply too).
   * Its job ID is `<batchId>-then` unless the task gives an `id`.
   */
  then?: string | TaskInput;
  /**
   * `all`: the parent runs whatever its members' outcomes; `completed`: it runs only if every
   * member completed, else fails `UpstreamFailed` naming those that did not. @defaultValue "all"
   */
  thenOn?: "all" | "completed";
  /** Tasks per round trip to Redis. @defaultValue 1000 */
  chunkSize?: number;
  /** Called after each chunk is enqueued. */
  onEnqueued?(progress: { processed: number; total: number; enqueued: number; duplicates: number }): void;
}

export interface InvalidLine {
  line: number;
  error: string;
}

export interface BatchReceipt {
  batchId: string;
  /** Valid tasks: the batch's members. */
  total: number;
  /** Jobs added now. */
  enqueued: number;
  /** Tasks already enqueued earlier (by an earlier submission, or a job with the same `id`). */
  duplicates: number;
  /** Invalid tasks left out (only with skipInvalid). */
  invalid: number;
  /** The first 100 invalid tasks with their reasons. */
  invalidLines: InvalidLine[];
  /** The job ID of the batch's parent (`then`), if it has one. */
  thenJobId?: string;
}

/** A batch rejected because of invalid lines; nothing was enqueued. */
export class BatchInputError extends InputError {
  constructor(
    readonly invalidLines: InvalidLine[],
    readonly invalidCount: number,
  ) {
    const shown = invalidLines.slice(0, 20).map((p) => `line ${p.line}: ${p.error}`);
    const more = invalidCount > shown.length ? [`… and ${invalidCount - shown.length} more`] : [];
    super(
      [
        ...shown,
        ...more,
        `${invalidCount} invalid line${invalidCount > 1 ? "s" : ""}: nothing was enqueued (skipInvalid / --skip-invalid enqueues the valid ones)`,
      ].join("\n"),
    );
  }
}

export interface SubmitContext {
  /** Adds jobs to the queue (see add-jobs.ts). */
  add(jobs: NewJob[]): Promise<void>;
  batches: BatchStore;
  jobName: string;
  jobTimeoutMs: number;
  jobOptions(task: Task, jobId: string): JobsOptions & { jobId: string };
  /** Puts a task with `continue` or `session` at the end of its thread (see placeInThread). */
  place(task: Task, jobId: string): Promise<Placement>;
  /** Wakes a gathered batch's parent if every member has ended (see Scheduler.ended). */
  wakeGather(batchId: string): Promise<void>;
}

/** The parent task of a batch (`then`): the batch's defaults, then its own fields. */
function parentTask(then: string | TaskInput, defaults: Partial<TaskInput>): Task {
  const own: Partial<TaskInput> = typeof then === "string" ? { prompt: then } : then;
  for (const field of ["continue", "session", "fork"] as const) {
    if (own[field] !== undefined)
      throw new InputError(`then: a batch's parent starts its own session (${field} does not apply)`);
  }
  const { id: _id, continue: _c, session: _s, fork: _f, ...shared } = defaults;
  try {
    return parseTask({ ...shared, ...own });
  } catch (error) {
    if (error instanceof InputError) throw new InputError(`then: ${error.message}`);
    throw error;
  }
}

const MAX_BATCH_ID = 150;

/** A batch budget must be a positive cost, or a positive whole number of tokens. */
function checkBudget(opts: Pick<BatchOptions, "maxCost" | "maxTokens">): void {
  if (opts.maxCost !== undefined && !(Number.isFinite(opts.maxCost) && opts.maxCost > 0)) {
    throw new InputError(`maxCost: the batch budget must be a positive number (got ${String(opts.maxCost)})`);
  }
  if (opts.maxTokens !== undefined && !(Number.isSafeInteger(opts.maxTokens) && opts.maxTokens > 0)) {
    throw new InputError(`maxTokens: the batch budget must be a positive whole number (got ${String(opts.maxTokens)})`);
  }
}

export function checkBatchId(id: string): string {
  const parsed = JobId.safeParse(id);
  if (!parsed.success) throw new InputError(`batch id "${id}": ${parsed.error.issues[0]?.message}`);
  if (id.length > MAX_BATCH_ID) throw new InputError(`batch id: must be at most ${MAX_BATCH_ID} characters`);
  return id;
}

/** A task from an entry merged over the defaults, or the reason it is invalid. */
function validate(entry: BatchEntry, defaults: Partial<TaskInput>): { task: Task } | { error: string } {
  if ("error" in entry) return { error: entry.error };
  try {
    return { task: parseTask({ ...defaults, ...entry.input }) };
  } catch (error) {
    if (error instanceof InputError) return { error: error.message };
    throw error;
  }
}

function stableJson(value: unknown): string {
  if (!value || typeof value !== "object") return JSON.stringify(value) ?? "";
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(",")}}`;
}

/**
 * Submits a batch in two streaming passes: the first validates every entry (and hashes them for the
 * default batch ID), the second enqueues them in chunks. A chunk's jobs are added to BullMQ before
 * they are recorded as members, so a re-submission after a crash adds exactly what is missing:
 * members and jobs that BullMQ or the result store already know are skipped.
 */
export async function submitBatch(
  ctx: SubmitContext,
  source: BatchSource,
  opts: BatchOptions = {},
): Promise<BatchReceipt> {
  const defaults = opts.defaults ?? {};
  if (opts.id !== undefined) checkBatchId(opts.id);
  checkBudget(opts);
  const budgeted = opts.maxCost !== undefined || opts.maxTokens !== undefined;
  const parent = opts.then === undefined ? undefined : parentTask(opts.then, defaults);
  if (opts.thenOn !== undefined && !["all", "completed"].includes(opts.thenOn))
    throw new InputError(`thenOn: must be "all" or "completed" (got ${String(opts.thenOn)})`);
  if (opts.thenOn !== undefined && !parent) throw new InputError("thenOn: applies to a batch with a parent (then)");

  // Pass 1: validate, count, hash.
  const hash = createHash("sha256").update(`${stableJson(defaults)}\n`);
  // Another parent makes another batch (a batch without one keeps the ID it always had).
  if (opts.then !== undefined) hash.update(`then\t${stableJson(opts.then)}\t${opts.thenOn ?? "all"}\n`);
  const invalidLines: InvalidLine[] = [];
  let invalid = 0;
  let total = 0;
  const ownIds = new Map<string, number>(); // task `id` → the line that owns it
  const followUps = new BatchFollowUps();
  const reject = (line: number, error: string) => {
    invalid += 1;
    if (invalidLines.length < 100) invalidLines.push({ line, error });
  };
  for await (const entry of source.entries()) {
    hash.update(`${entry.line}\t${entry.raw}\n`);
    const result = validate(entry, defaults);
    if ("error" in result) {
      reject(entry.line, result.error);
      continue;
    }
    const id = result.task.id;
    if (id !== undefined) {
      const owner = ownIds.get(id);
      if (owner !== undefined) {
        reject(entry.line, `id: "${id}" is already the id of line ${owner}`);
        continue;
      }
      ownIds.set(id, entry.line);
    }
    followUps.see(entry.line, result.task);
    total += 1;
  }
  const batchId = opts.id ?? `batch-${hash.digest("hex").slice(0, 20)}`;
  // Follow-ups of a job that is neither in Redis nor an earlier line are invalid lines too.
  const leftOut = await followUps.leftOut(batchId, ownIds, (ids) => ctx.batches.existing(ids));
  for (const [line, why] of leftOut) reject(line, why);
  total -= leftOut.size;
  invalidLines.sort((a, b) => a.line - b.line);
  if (invalid > 0 && !opts.skipInvalid) throw new BatchInputError(invalidLines, invalid);
  if (total === 0)
    throw new InputError(invalid > 0 ? "the batch has no valid tasks: nothing was enqueued" : "the batch is empty");

  // Pass 2: enqueue in chunks, overlapping reading the next chunk with writing the current one.
  const { existed } = await ctx.batches.begin({
    batchId,
    total,
    invalid,
    maxCost: opts.maxCost,
    maxTokens: opts.maxTokens,
  });
  let enqueued = 0;
  let duplicates = 0;
  let processed = 0;
  const jobIds = (chunk: readonly ChunkItem[]) => chunk.map((c) => c.jobId);
  // Reading and validating the next chunk overlaps with two chunks being written.
  const writer = new ChunkWriter({
    batches: ctx.batches,
    batchId,
    chunkSize: Math.max(1, opts.chunkSize ?? 1_000),
    jobName: ctx.jobName,
    jobTimeoutMs: ctx.jobTimeoutMs,
    jobOptions: (task, jobId) => ctx.jobOptions(task, jobId),
    known: async (chunk) => {
      const known = existed ? await ctx.batches.members(batchId, jobIds(chunk)) : new Set<string>();
      const unknown = chunk
        .filter((c) => !known.has(c.jobId) && (existed || c.task.id !== undefined))
        .map((c) => c.jobId);
      for (const id of await ctx.batches.existing(unknown)) known.add(id);
      return known;
    },
    // Before their jobs exist: a member that ends counts itself for the parent.
    beforeAdd: parent ? (chunk) => ctx.batches.markGathered(batchId, jobIds(chunk)) : undefined,
    place: async (task, jobId) => (task.continue || task.session ? ctx.place(task, jobId) : {}),
    extras: budgeted ? { batchBudget: batchId } : {},
    add: (jobs) => ctx.add(jobs),
    written: (chunk) => {
      const fresh = chunk.filter((c) => !c.duplicate).length;
      enqueued += fresh;
      duplicates += chunk.length - fresh;
      processed += chunk.length;
      opts.onEnqueued?.({ processed, total, enqueued, duplicates });
    },
  });
  for await (const entry of source.entries()) {
    const result = validate(entry, defaults);
    if ("error" in result) continue;
    const { task } = result;
    if (task.id !== undefined && ownIds.get(task.id) !== entry.line) continue; // a repeated id
    if (leftOut.has(entry.line)) continue; // continues an unknown job
    await writer.push({ task, jobId: task.id ?? `${batchId}-${entry.line}`, line: entry.line });
  }
  await writer.end();
  await ctx.batches.finish(batchId);
  if (!parent) return { batchId, total, enqueued, duplicates, invalid, invalidLines };
  // The parent: added once every member is, it waits (holding no slot) until they have all ended.
  const thenJobId = parent.id ?? `${batchId}-then`;
  await ctx.batches.gatherTotal(batchId, total);
  if ((await ctx.batches.existing([thenJobId])).size === 0) {
    const gather = { batch: batchId, on: opts.thenOn ?? "all" };
    await ctx.add([
      {
        name: ctx.jobName,
        data: Object.assign(toPayload(parent, { timeoutMs: ctx.jobTimeoutMs }), { gather }),
        opts: ctx.jobOptions(parent, thenJobId),
        group: parent.group ?? batchId,
      },
    ]);
  }
  await ctx.wakeGather(batchId);
  return { batchId, total, enqueued, duplicates, invalid, invalidLines, thenJobId };
}

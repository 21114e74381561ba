/**
 * Single enqueues and `enqueueMany`: validating tasks (a zod schema becomes JSON Schema), checking
 * that what they continue or fork exists, and adding them in chunks. Batches from a file or a
 * stream have their own two-pass submission (batch/submit.ts); both write their chunks with
 * ChunkWriter (chunk-writer.ts), which ends in addJobs.
 */
import { randomUUID } from "node:crypto";
import type { JobsOptions, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";
import type { Config } from "../shared/config.js";
import { InputError, NotFoundError } from "../shared/errors.js";
import type { ResultStore } from "../shared/result-store.js";
import { BACKOFF, RETENTION } from "../shared/queue.js";
import { parseTask, type Task, type TaskInput } from "../shared/task.js";
import { placeInThread } from "../scheduling/placement.js";
import type { Scheduler } from "../scheduling/scheduler.js";
import type { BatchStore } from "./batch/store.js";
import { addJobs } from "./add-jobs.js";
import { ChunkWriter, type ChunkItem } from "./chunk-writer.js";
import { unknownFollowUps, unknownJobMessage, type FollowUp } from "./follow-ups.js";

export const JOB_NAME = "dispatch";

/** A task as the library takes it: its `schema` may be a zod schema. */
export type DispatchTask = Omit<TaskInput, "schema"> & { schema?: TaskInput["schema"] | z.ZodType };

export interface EnqueueReceipt {
  jobId: string;
  /** True when a job with this `id` already existed: nothing was added. */
  duplicate: boolean;
}

export interface EnqueueContext {
  redis: Redis;
  queue: Queue;
  store: ResultStore;
  scheduler: Scheduler;
  config: Config;
}

/** What every job of ours gets: its ID, the backoff strategy, BullMQ's retention. */
export function baseJobOptions(jobId: string): JobsOptions & { jobId: string } {
  return { jobId, backoff: BACKOFF, removeOnComplete: RETENTION.completed, removeOnFail: RETENTION.failed };
}

/** A task's BullMQ options. */
export function jobOptions(
  config: Pick<Config, "attempts">,
  task: Task,
  jobId: string,
): JobsOptions & { jobId: string } {
  return {
    ...baseJobOptions(jobId),
    priority: task.priority || undefined,
    delay: task.delay,
    attempts: task.attempts ?? config.attempts,
  };
}

/** NotFoundError naming every task (up to ten) that continues or forks a job which is nowhere to be found. */
export async function checkFollowUps(tasks: readonly Task[], batches: BatchStore): Promise<void> {
  const earlier = new Set<string>();
  const followUps: FollowUp[] = [];
  tasks.forEach((task, at) => {
    if (task.continue && !earlier.has(task.continue)) followUps.push({ target: task.continue, at });
    if (task.fork && !earlier.has(task.fork)) followUps.push({ target: task.fork, at, field: "fork" });
    if (task.id) earlier.add(task.id);
  });
  if (followUps.length === 0) return;
  const unknown = await unknownFollowUps(followUps, (ids) => batches.existing(ids));
  if (unknown.length === 0) return;
  const where = (at: number) => (tasks.length > 1 ? `tasks[${at}].` : "");
  throw new NotFoundError(
    unknown
      .slice(0, 10)
      .map((f) => where(f.at) + unknownJobMessage(f.target, f.field))
      .join("\n"),
  );
}

/**
 * Enqueues validated tasks whose follow-ups were checked (checkFollowUps), in chunks, two in
 * flight; members of `batch` when one is given.
 */
export async function enqueueTasks(
  ctx: EnqueueContext,
  batches: BatchStore,
  tasks: readonly Task[],
  batch?: { batchId: string },
): Promise<EnqueueReceipt[]> {
  const { redis, queue, store, scheduler, config } = ctx;
  const writer = new ChunkWriter({
    batches,
    batchId: batch?.batchId,
    chunkSize: 1_000,
    jobName: JOB_NAME,
    jobTimeoutMs: config.jobTimeoutMs,
    jobOptions: (task, jobId) => jobOptions(config, task, jobId),
    // An ID given earlier in this call is a duplicate already: only first ones are looked up.
    known: (items) =>
      batches.existing(items.filter((c) => !c.duplicate && c.task.id !== undefined).map((c) => c.jobId)),
    place: (task, jobId) => placeInThread(redis, store.keys, task, jobId, config.resultTtlMs),
    add: (jobs) => addJobs(queue, scheduler, jobs),
  });
  const items: ChunkItem[] = [];
  const given = new Set<string>(); // keys earlier in this call: the first one wins
  for (const [index, task] of tasks.entries()) {
    const jobId = task.id ?? randomUUID();
    const item: ChunkItem = { task, jobId, line: index + 1, duplicate: given.has(jobId) };
    if (task.id) given.add(task.id);
    items.push(item);
    await writer.push(item);
  }
  await writer.end();
  return items.map(({ jobId, duplicate }) => ({ jobId, duplicate: duplicate === true }));
}

export function isZodSchema(schema: unknown): schema is z.ZodType {
  return typeof schema === "object" && schema !== null && "_zod" in schema;
}

/** A task with its zod schema turned into JSON Schema (of the schema's input: what the model writes). */
export function withJsonSchema(input: DispatchTask): TaskInput {
  if (!isZodSchema(input.schema)) return input as TaskInput;
  let schema: Record<string, unknown>;
  try {
    schema = z.toJSONSchema(input.schema, { io: "input" });
  } catch (error) {
    throw new InputError(`schema: cannot be expressed as JSON Schema: ${(error as Error).message}`);
  }
  return { ...input, schema } as TaskInput;
}

/** Parses every task (zod schemas made JSON Schema first); InputError names the first ten bad ones. */
export function validateAll(inputs: readonly DispatchTask[]): Task[] {
  const problems: string[] = [];
  const tasks: Task[] = [];
  inputs.forEach((input, index) => {
    try {
      tasks.push(parseTask(withJsonSchema(input), inputs.length > 1 ? `tasks[${index}].` : ""));
    } catch (error) {
      if (!(error instanceof InputError)) throw error;
      if (problems.length < 10) problems.push(error.message);
    }
  });
  if (problems.length) throw new InputError(problems.join("\n"));
  return tasks;
}

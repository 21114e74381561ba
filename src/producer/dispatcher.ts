/**
 * The producer's facade, `Dispatcher`: one public method per operation (enqueue, batches, flows,
 * status, wait, cancel, retry, approvals, listeners, live answers, pause, schedules), each a few
 * lines that delegate to the module that owns the concept (enqueue.ts, batch/, job-status.ts,
 * manage.ts, approvals.ts, events.ts, waiter.ts, live-stream.ts). Its length is their TSDoc: the
 * library's reference. It holds the lazily opened connections they share.
 */
import { randomUUID } from "node:crypto";
import { QueueEvents, type Queue } from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";
import { checkQueueName, loadConfig, type Config } from "../shared/config.js";
import { NotFinishedError, NotFoundError } from "../shared/errors.js";
import { failedFromJob } from "../shared/record.js";
import { connectRedis, closeRedis } from "../shared/redis.js";
import type { JobState, ResultRecord } from "../shared/result.js";
import { isFinal } from "../shared/job-state.js";
import { ResultStore } from "../shared/result-store.js";
import { openQueue } from "../shared/queue.js";
import type { JobPayload, TaskInput } from "../shared/task.js";
import { BatchHandle, type BatchProgress } from "./batch/handle.js";
import { isBatchSource, taskListSource, type BatchSource, type TaskList } from "./batch/source.js";
import { BatchStore } from "./batch/store.js";
import { checkBatchId, submitBatch, type BatchOptions } from "./batch/submit.js";
import { cancelBatch, retryBatch, type BatchCancelOutcome, type BatchRetryOutcome } from "./batch/control.js";
import { streamJob, type StreamOptions } from "./live-stream.js";
import type { LiveEvent } from "../shared/live.js";
import { placeInThread } from "../scheduling/placement.js";
import { DEFAULT_GROUP, Scheduler } from "../scheduling/scheduler.js";
import { addJobs } from "./add-jobs.js";
import { queueKeys } from "../shared/keys.js";
import {
  baseJobOptions,
  checkFollowUps,
  enqueueTasks,
  isZodSchema,
  jobOptions,
  validateAll,
  JOB_NAME,
  type DispatchTask,
  type EnqueueReceipt,
} from "./enqueue.js";
import { submitFlow, type Flow, type FlowReceipt } from "./flow.js";
import { readStatus, type JobStatus } from "./job-status.js";
import { answerAsk, type ApprovalOutcome, type ApproveOptions, type RejectOptions } from "./approvals.js";
import {
  cancelJob,
  listJobs,
  retryJob,
  type CancelOutcome,
  type JobSummary,
  type ListOptions,
  type ManageDeps,
  type RetryOutcome,
} from "./manage.js";
import {
  EventBus,
  Subscriptions,
  type DispatchEventName,
  type EventHandlers,
  type EventScope,
  type Subscription,
} from "./events.js";
import { VANISHED, Waiter } from "./waiter.js";
import { Schedules } from "./schedules.js";

export { JOB_NAME, type DispatchTask, type EnqueueReceipt } from "./enqueue.js";

export interface DispatcherOptions {
  /** @defaultValue `REDIS_URL`, else redis://127.0.0.1:6379 */
  redisUrl?: string;
  /** @defaultValue `DISPATCH_QUEUE`, else "opencode-dispatch" */
  queue?: string;
  /** Settings otherwise read from the environment. */
  config?: Config;
}

/** What enqueueMany resolves to: the receipts, in the tasks' order, and the batch they form. */
export type EnqueuedMany = EnqueueReceipt[] & {
  batchId: string;
  batch: BatchHandle;
  /** Waits for every task (see BatchHandle.wait): the summary, also when tasks failed. */
  wait: BatchHandle["wait"];
  /** `progress` and `result` events of the wait (see BatchHandle). */
  on(event: "progress", listener: (progress: BatchProgress) => void): BatchHandle;
  on(event: "result", listener: (record: ResultRecord, line: number) => void): BatchHandle;
};

/** A task whose `schema` may also be a zod schema (converted with zod's own `z.toJSONSchema`). */

/**
 * The record of a task with a zod schema: once completed, `structured` is the schema's output type
 * (parsed by the schema); otherwise it is whatever the model last gave, if anything.
 */
export type TypedResultRecord<T> =
  | (Omit<ResultRecord, "state" | "structured"> & { state: "completed"; structured: T })
  | (Omit<ResultRecord, "state"> & { state: Exclude<JobState, "completed"> });

export interface WaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * The producer side: validates tasks, enqueues them, reads their status and results, and waits
 * for them. Connects on first use; `close()` is idempotent.
 */
export class Dispatcher {
  readonly queueName: string;
  private readonly config: Config;
  private readonly redisUrl: string;
  private connected: Promise<{ redis: Redis; queue: Queue; store: ResultStore; scheduler: Scheduler }> | undefined;
  private waiter: Promise<Waiter> | undefined;
  private bus: Promise<EventBus> | undefined;
  private subscriptions: Promise<Subscriptions> | undefined;
  private subscriber: Redis | undefined;
  private closing: Promise<void> | undefined;
  private removals: { close(): Promise<void> } | undefined;

  /** Recurring tasks on BullMQ's job schedulers: `add`, `list`, `get`, `remove`, `run` (see Schedules). */
  readonly schedules = new Schedules(async () => {
    const { queue, redis, scheduler, store } = await this.connect();
    const parse = (input: DispatchTask) => validateAll([input])[0]!;
    return {
      queue,
      redis,
      scheduler,
      keys: store.keys,
      config: this.config,
      jobName: JOB_NAME,
      parse,
      jobOptions: (task, jobId) => jobOptions(this.config, task, jobId),
    };
  });

  constructor(options: DispatcherOptions = {}) {
    this.config = options.config ?? loadConfig();
    this.redisUrl = options.redisUrl ?? this.config.redisUrl;
    this.queueName = checkQueueName(options.queue ?? this.config.queue);
  }

  private connect() {
    if (this.closing) throw new Error("the dispatcher is closed");
    this.connected ??= (async () => {
      const redis = await connectRedis(this.redisUrl, "producer");
      const queue = openQueue(this.queueName, redis);
      queue.on("error", () => undefined); // surfaced on the calls themselves
      const scheduler = new Scheduler(redis, queueKeys(this.queueName), queue, this.config.fairWindow);
      return {
        redis,
        queue,
        scheduler,
        store: new ResultStore(redis, this.queueName, this.config.resultTtlMs, (jobId) => scheduler.finished(jobId)),
      };
    })();
    this.connected.catch(() => (this.connected = undefined));
    return this.connected;
  }

  /** Validates a task (throwing InputError naming the field) and enqueues it. */
  async enqueue(input: DispatchTask): Promise<EnqueueReceipt> {
    const tasks = validateAll([input]);
    const batches = await this.batchStore();
    await checkFollowUps(tasks, batches);
    const [receipt] = await enqueueTasks({ ...(await this.connect()), config: this.config }, batches, tasks);
    return receipt!;
  }

  /**
   * Enqueues a task that runs in a new session copied from job `jobId`'s session as that job left
   * it (`fork: jobId`): it starts once that job has ended, on any worker, and forks of one job run
   * in parallel. NotFoundError when there is no such job.
   */
  async fork(jobId: string, input: Omit<DispatchTask, "fork" | "continue" | "session">): Promise<EnqueueReceipt> {
    return this.enqueue({ ...input, fork: jobId });
  }

  /**
   * Validates every task first (an InputError names the index and field of the first bad ones;
   * NotFoundError a `continue` of a job that is nowhere), then enqueues them all as one batch.
   * Resolves to the receipts in order (tasks whose `id` already exists are skipped and reported
   * duplicate), which also carry the batch: `wait()` for all of them, `on("progress" | "result")`.
   */
  async enqueueMany(inputs: readonly DispatchTask[], opts: { batchId?: string } = {}): Promise<EnqueuedMany> {
    const batchId = opts.batchId === undefined ? `many-${randomUUID()}` : checkBatchId(opts.batchId);
    const tasks = validateAll(inputs);
    const batches = await this.batchStore();
    await checkFollowUps(tasks, batches);
    const ownIds = new Set(tasks.flatMap((t) => (t.id ? [t.id] : [])));
    const total = tasks.filter((t) => !t.id).length + ownIds.size; // a key given twice is one member
    await batches.begin({ batchId, total, invalid: 0 });
    const receipts = await enqueueTasks({ ...(await this.connect()), config: this.config }, batches, tasks, {
      batchId,
    });
    await batches.finish(batchId);
    const duplicates = receipts.filter((r) => r.duplicate).length;
    const batch = await this.batchHandle(batchId, {
      batchId,
      total,
      enqueued: receipts.length - duplicates,
      duplicates,
      invalid: 0,
      invalidLines: [],
    });
    return Object.assign(receipts, {
      batchId,
      batch,
      wait: (waitOpts?: Parameters<BatchHandle["wait"]>[0]) => batch.wait(waitOpts),
      on: <E extends "progress" | "result">(event: E, listener: Parameters<BatchHandle["on"]>[1]) =>
        batch.on(event, listener),
    });
  }

  /**
   * Validates a whole batch (streaming: a BatchSource or a function is read twice, never held
   * whole), then enqueues it in chunks under one batch ID. Throws BatchInputError (every bad line
   * with its number) and enqueues nothing if a task is invalid, unless `skipInvalid`.
   * Re-submitting the same batch adds only what is missing. Returns a handle to wait on.
   */
  async submitBatch(tasks: TaskList | BatchSource, opts: BatchOptions = {}): Promise<BatchHandle> {
    const source = isBatchSource(tasks) ? tasks : taskListSource(tasks);
    const { redis, queue, store, scheduler } = await this.connect();
    const batches = await this.batchStore();
    const receipt = await submitBatch(
      {
        add: (jobs) => addJobs(queue, scheduler, jobs),
        batches,
        jobName: JOB_NAME,
        jobTimeoutMs: this.config.jobTimeoutMs,
        jobOptions: (task, jobId) => jobOptions(this.config, task, jobId),
        place: (task, jobId) => placeInThread(redis, store.keys, task, jobId, this.config.resultTtlMs),
        wakeGather: (batchId) => scheduler.ended(batchId, []),
      },
      source,
      opts,
    );
    return this.batchHandle(receipt.batchId, receipt);
  }

  /**
   * Submits a parent task with children (nestable): every child runs (in parallel, as a batch),
   * then the parent, once, with their results (see BatchOptions.then). A child that is itself a
   * flow gives the outer parent its own parent's answer. Resolves to the parent's job ID.
   */
  async flow(flow: Flow): Promise<FlowReceipt> {
    return submitFlow((tasks, opts) => this.submitBatch(tasks, opts), flow);
  }

  /** The batch with this ID, or null if there is none. */
  async findBatch(batchId: string): Promise<BatchHandle | null> {
    const batches = await this.batchStore();
    const known = (await batches.meta(batchId)) !== null || (await batches.count(batchId)) > 0;
    return known ? this.batchHandle(batchId) : null;
  }

  /** The batch with this ID; NotFoundError if there is none. */
  async batch(batchId: string): Promise<BatchHandle> {
    const handle = await this.findBatch(batchId);
    if (!handle) throw new NotFoundError(`no batch with ID "${batchId}" in queue "${this.queueName}"`);
    return handle;
  }

  private async batchStore(): Promise<BatchStore> {
    const { redis } = await this.connect();
    return new BatchStore(redis, this.queueName, this.config.resultTtlMs);
  }

  private async batchHandle(
    batchId: string,
    receipt: ConstructorParameters<typeof BatchHandle>[2] = null,
  ): Promise<BatchHandle> {
    const { queue, store } = await this.connect();
    return new BatchHandle(
      { redisUrl: this.redisUrl, queue, results: store, batches: await this.batchStore() },
      batchId,
      receipt,
    );
  }

  async status(jobId: string): Promise<JobStatus> {
    const { queue, store, scheduler } = await this.connect();
    return readStatus(queue, store, jobId, scheduler, async (batchId) => {
      const batch = await (await this.batchHandle(batchId)).status();
      return { batchId, total: batch.total, counts: batch.counts };
    });
  }

  /** The final result record; NotFinishedError while the job is still queued or running. */
  async result(jobId: string): Promise<ResultRecord> {
    const { queue, store, scheduler } = await this.connect();
    const status = await readStatus(queue, store, jobId, scheduler); // no children's counts: only the record is wanted
    if (status.result && isFinal(status.state)) return status.result;
    throw new NotFinishedError(`job ${jobId} has not finished (state: ${status.state})`);
  }

  /** Waits until the job is completed or failed and returns its record (it does not throw on failure). */
  async wait(jobId: string, opts: WaitOptions = {}): Promise<ResultRecord> {
    await this.status(jobId); // NotFoundError for an unknown ID, rather than waiting forever
    return (await this.getWaiter()).wait(jobId, opts);
  }

  /**
   * Enqueues a task and waits for its record. With a zod `schema`, the completed record's
   * `structured` is parsed by it and typed by it (an answer the zod schema still rejects, say a
   * refinement JSON Schema cannot express, turns the returned record into a SchemaMismatch failure).
   */
  async run<S extends z.ZodType>(
    input: Omit<TaskInput, "schema"> & { schema: S },
    opts?: WaitOptions,
  ): Promise<TypedResultRecord<z.output<S>>>;
  async run(input: DispatchTask, opts?: WaitOptions): Promise<ResultRecord>;
  async run(input: DispatchTask, opts: WaitOptions = {}): Promise<ResultRecord> {
    const { jobId } = await this.enqueue(input);
    const record = await this.wait(jobId, opts);
    return isZodSchema(input.schema) ? parseStructured(input.schema, record) : record;
  }

  /**
   * Listens for jobs ending (`completed`, `failed`), for their `progress`, and for jobs parked on a
   * permission `ask` (state `awaiting-approval`): of one job
   * (`{ jobId }`), of one batch (`{ batchId }`), or of the whole queue (no scope). Every listener
   * of a dispatcher shares one Redis subscription. Resolves once listening.
   */
  async subscribe(handlers: EventHandlers, scope: EventScope = {}): Promise<Subscription> {
    return (await this.getSubscriptions()).subscribe(handlers, scope);
  }

  /** One listener for one kind of event (see subscribe); resolves to its removal. */
  async on<E extends DispatchEventName>(
    event: E,
    listener: NonNullable<EventHandlers[E]>,
    scope: EventScope = {},
  ): Promise<() => void> {
    const subscription = await this.subscribe({ [event]: listener }, scope);
    return () => subscription.close();
  }

  /**
   * Cancels a job from any machine: a waiting, delayed or retrying job is removed from the queue
   * and its record marked failed "Cancelled"; a running one is aborted by the worker running it
   * (waiting up to `timeoutMs`, default 15 s, for it to confirm). JobStateError if it has finished.
   * A batch's parent (`then`) takes its batch with it: the parent first (so that the members'
   * ends do not start it), then every unfinished member (`children`).
   */
  async cancel(
    jobId: string,
    opts: { timeoutMs?: number } = {},
  ): Promise<CancelOutcome & { children?: BatchCancelOutcome }> {
    const deps = await this.manageDeps();
    const gather = ((await deps.queue.getJob(jobId))?.data as Partial<JobPayload> | undefined)?.gather;
    const outcome = await cancelJob(deps, jobId, opts);
    if (!gather) return outcome;
    return { ...outcome, children: await this.cancelBatch(gather.batch, opts) };
  }

  /**
   * Approves the permission ask a job in state `awaiting-approval` waits on; the job resumes (on
   * any worker) and the approved action runs. `always`: also what opencode suggests for it (e.g.
   * the whole directory), for the rest of the job. JobStateError if the job waits on no ask, or
   * its ask was answered first (by someone else, or by its approval timeout).
   */
  async approve(jobId: string, opts: ApproveOptions = {}): Promise<ApprovalOutcome> {
    return answerAsk(await this.manageDeps(), jobId, opts.always ? "always" : "once", { by: opts.by });
  }

  /**
   * Rejects the permission ask a job in state `awaiting-approval` waits on; the job resumes and
   * its agent, told so (with `message`), ends as it decides. JobStateError as for approve.
   */
  async reject(jobId: string, opts: RejectOptions = {}): Promise<ApprovalOutcome> {
    return answerAsk(await this.manageDeps(), jobId, "reject", { by: opts.by, message: opts.message });
  }

  /** Re-queues a failed job with a fresh set of attempts (see retryJob). JobStateError unless it failed. */
  async retry(jobId: string): Promise<RetryOutcome> {
    const { queue, scheduler } = await this.connect();
    return retryJob(
      {
        ...(await this.manageDeps()),
        add: (kept, id) =>
          addJobs(queue, scheduler, [
            {
              name: kept.name,
              data: kept.data as JobPayload,
              opts: {
                ...baseJobOptions(id),
                attempts: kept.opts.attempts ?? this.config.attempts,
                priority: kept.opts.priority,
              },
              group: DEFAULT_GROUP,
            },
          ]),
      },
      jobId,
    );
  }

  /** Whether a job with this ID exists (in the queue, or as a record). */
  async findJob(jobId: string): Promise<boolean> {
    const { queue, store } = await this.connect();
    return (await store.get(jobId)) !== null || (await queue.getJob(jobId)) !== undefined;
  }

  /**
   * A job's live events as they happen (see shared/live.ts): its states, the answer's text as it
   * is written, tool calls, asks, progress, and last `final` with the record. Resumable: pass the
   * last event's `id` as `after`. NotFoundError for an unknown job (or one removed without a record).
   */
  async *stream(jobId: string, opts: StreamOptions = {}): AsyncGenerator<LiveEvent> {
    await this.status(jobId); // NotFoundError for an unknown ID
    const { queue, store } = await this.connect();
    yield* streamJob(
      { redisUrl: this.redisUrl, store, getJob: async (id) => (await queue.getJob(id)) ?? undefined },
      jobId,
      opts,
    );
  }

  /**
   * Cancels every member of a batch that has not finished: waiting ones are removed, running ones
   * aborted by their workers (each confirmed within `timeoutMs`, default 15 s). NotFoundError for
   * an unknown batch.
   */
  async cancelBatch(batchId: string, opts: { timeoutMs?: number } = {}): Promise<BatchCancelOutcome> {
    await this.batch(batchId);
    const deps = await this.manageDeps();
    return cancelBatch(await this.batchStore(), batchId, (jobId, o) => cancelJob(deps, jobId, o), opts);
  }

  /** Re-queues every failed member of a batch with a fresh set of attempts. NotFoundError for an unknown batch. */
  async retryBatch(batchId: string): Promise<BatchRetryOutcome> {
    await this.batch(batchId);
    return retryBatch(await this.batchStore(), batchId, (jobId) => this.retry(jobId));
  }

  /** Stops every worker of the queue from starting jobs (running ones finish); enqueueing goes on. */
  async pause(): Promise<void> {
    const { queue } = await this.connect();
    await queue.pause();
  }

  /** Lets workers start jobs again after `pause`. */
  async resume(): Promise<void> {
    const { queue } = await this.connect();
    await queue.resume();
  }

  /** Whether the queue is paused. */
  async isPaused(): Promise<boolean> {
    const { queue } = await this.connect();
    return queue.isPaused();
  }

  /** The newest jobs BullMQ keeps, optionally only those in some states. */
  async list(opts: ListOptions = {}): Promise<JobSummary[]> {
    const { queue, store } = await this.connect();
    return listJobs({ queue, store }, opts);
  }

  private async manageDeps(): Promise<ManageDeps> {
    const { redis, queue, store } = await this.connect();
    return {
      redis,
      queue,
      store,
      keys: store.keys,
      waitFinal: async (jobId, timeoutMs) => (await this.getWaiter()).wait(jobId, { timeoutMs }),
    };
  }

  /** The one subscription on the queue's events channel, shared by waits and listeners. */
  private getBus(): Promise<EventBus> {
    this.bus ??= (async () => {
      const { store } = await this.connect();
      if (!this.subscriber) {
        const subscriber = await connectRedis(this.redisUrl, "subscriber");
        if (this.closing) {
          void closeRedis(subscriber); // close() began while it connected
          throw new Error("the dispatcher is closed");
        }
        this.subscriber = subscriber;
      }
      return new EventBus(this.subscriber, store.keys.events);
    })();
    this.bus.catch(() => (this.bus = undefined));
    return this.bus;
  }

  private getSubscriptions(): Promise<Subscriptions> {
    this.subscriptions ??= (async () => {
      const bus = await this.getBus();
      const { redis, store } = await this.connect();
      return new Subscriptions(bus, {
        record: (jobId) => store.get(jobId),
        inBatch: async (batchId, jobId) => (await redis.zscore(store.keys.batchJobs(batchId), jobId)) !== null,
      });
    })();
    this.subscriptions.catch(() => (this.subscriptions = undefined));
    return this.subscriptions;
  }

  private getWaiter(): Promise<Waiter> {
    this.waiter ??= (async () => {
      const { queue, store } = await this.connect();
      const waiter = new Waiter(await this.getBus(), async (jobId) => {
        const [record, job] = await Promise.all([store.get(jobId), queue.getJob(jobId)]);
        if (record && isFinal(record.state)) return record;
        if (job && (await job.isFailed())) return failedFromJob(job, record);
        return job ? null : VANISHED;
      });
      // A job removed from the queue publishes nothing of ours; BullMQ's own event stream says so
      // (a blocking read: nothing is polled).
      const connection = await connectRedis(this.redisUrl, "worker");
      const removals = new QueueEvents(this.queueName, { connection, prefix: queueKeys(this.queueName).bullPrefix });
      removals.on("error", () => undefined);
      removals.on("removed", ({ jobId }) => waiter.recheck(jobId));
      this.removals = {
        close: async () => {
          await removals.close().catch(() => undefined);
          await closeRedis(connection);
        },
      };
      return waiter;
    })();
    this.waiter.catch(() => (this.waiter = undefined));
    return this.waiter;
  }

  /** Stops every wait (they reject with NotFinishedError) and closes the connections. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const waiter = await this.waiter?.catch(() => undefined);
      waiter?.close();
      await this.removals?.close();
      (await this.subscriptions?.catch(() => undefined))?.close();
      const connected = await this.connected?.catch(() => undefined);
      await connected?.queue.close().catch(() => undefined);
      await connected?.store.close();
      await Promise.all([closeRedis(connected?.redis), closeRedis(this.subscriber)]);
    })();
    return this.closing;
  }
}

export function createDispatcher(options: DispatcherOptions = {}): Dispatcher {
  return new Dispatcher(options);
}

/** Parses a completed record's structured answer with the task's zod schema. */
function parseStructured(schema: z.ZodType, record: ResultRecord): ResultRecord {
  if (record.state !== "completed") return record;
  const parsed = schema.safeParse(record.structured);
  if (parsed.success) return { ...record, structured: parsed.data };
  const message = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
  return {
    ...record,
    state: "failed",
    error: {
      name: "SchemaMismatch",
      message: `the structured answer does not match the schema: ${message}`,
      retryable: false,
    },
  };
}

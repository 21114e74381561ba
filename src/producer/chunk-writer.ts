/**
 * The one chunk writer of enqueueTasks (enqueue.ts) and submitBatch (batch/submit.ts): tasks go
 * in in line order and are written a chunk at a time, two chunks in flight. Per chunk: which jobs
 * exist already (duplicates), the follow-ups placed in their threads in line order, the fresh jobs
 * added, and only then the whole chunk recorded as batch members.
 */
import type { JobsOptions } from "bullmq";
import { InFlight } from "../shared/in-flight.js";
import { toPayload, type JobPayload, type Task } from "../shared/task.js";
import type { Placement } from "../scheduling/placement.js";
import { DEFAULT_GROUP } from "../scheduling/scheduler.js";
import type { BatchStore } from "./batch/store.js";
import type { NewJob } from "./add-jobs.js";

/** A task with its job ID and its line (from 1: its score as a batch member). */
export interface ChunkItem {
  task: Task;
  jobId: string;
  line: number;
  /**
   * Already enqueued: nothing is added for it (it is still recorded as a member). The caller may
   * set it beforehand (an ID given earlier in the same call); the writer sets it from `known`.
   */
  duplicate?: boolean;
}

export interface ChunkWriterOptions {
  batches: BatchStore;
  /** The batch whose members the tasks become, once their jobs exist; the group of tasks without one. */
  batchId?: string;
  /** Tasks per chunk. */
  chunkSize: number;
  jobName: string;
  jobTimeoutMs: number;
  jobOptions(task: Task, jobId: string): JobsOptions & { jobId: string };
  /** Which of a chunk's job IDs are already enqueued. */
  known(items: readonly ChunkItem[]): Promise<ReadonlySet<string>>;
  /** Once a chunk's duplicates are known, before any of its jobs exists. */
  beforeAdd?(items: readonly ChunkItem[]): Promise<void>;
  /** A fresh task's place in its thread (see placeInThread). */
  place(task: Task, jobId: string): Promise<Placement>;
  /** Fields every payload gets after the task's own and its placement. */
  extras?: Partial<JobPayload>;
  /** Adds a chunk's fresh jobs (see add-jobs.ts). */
  add(jobs: NewJob[]): Promise<void>;
  /** A chunk was written (its jobs, then its members); every item's `duplicate` is set. */
  written?(items: readonly ChunkItem[]): void;
}

const isFollowUp = (task: Task) => Boolean(task.continue || task.session || task.fork);

export class ChunkWriter {
  private readonly writes = new InFlight(2);
  private chunk: ChunkItem[] = [];

  constructor(private readonly opts: ChunkWriterOptions) {}

  /** Takes the next task (in line order); a full chunk starts being written. */
  async push(item: ChunkItem): Promise<void> {
    this.chunk.push(item);
    if (this.chunk.length >= this.opts.chunkSize) await this.send();
  }

  /** Writes what is left and waits for every chunk to be written (the first failure is thrown). */
  async end(): Promise<void> {
    if (this.chunk.length) await this.send();
    await this.writes.drain();
  }

  private async send(): Promise<void> {
    const chunk = this.chunk;
    this.chunk = [];
    // A follow-up is placed once everything before it is in Redis (the job it continues may be there).
    if (chunk.some((c) => isFollowUp(c.task))) await this.writes.drain();
    await this.writes.add(() => this.write(chunk));
  }

  private async write(chunk: ChunkItem[]): Promise<void> {
    const { opts } = this;
    const known = await opts.known(chunk);
    const now = new Date().toISOString();
    await opts.beforeAdd?.(chunk);
    const fresh: ChunkItem[] = [];
    for (const item of chunk) {
      item.duplicate ||= known.has(item.jobId);
      if (!item.duplicate) fresh.push(item);
    }
    if (fresh.length) {
      // In line order: follow-ups of one session run one at a time, in the order of the lines.
      const placements: Placement[] = [];
      for (const { task, jobId } of fresh) placements.push(await opts.place(task, jobId));
      await opts.add(
        fresh.map(({ task, jobId }, i) => ({
          name: opts.jobName,
          data: Object.assign(toPayload(task, { timeoutMs: opts.jobTimeoutMs }, now), placements[i], opts.extras),
          opts: opts.jobOptions(task, jobId),
          group: task.group ?? opts.batchId ?? DEFAULT_GROUP,
        })),
      );
    }
    // Members only once their jobs exist: a batch never waits on a job that was never added.
    if (opts.batchId !== undefined) await opts.batches.addMembers(opts.batchId, chunk);
    opts.written?.(chunk);
  }
}

/**
 * A batch as its producer sees it: status (counts by state), the records as they land, and wait()
 * with progress events, a summary and the rule for members removed without a record. wait() keeps
 * its event subscription, sweep and timers together so that every way out cleans all of them up.
 */
import { EventEmitter } from "node:events";
import type { Job, Queue } from "bullmq";
import { NotFinishedError } from "../../shared/errors.js";
import { setLongTimeout, type LongTimeout } from "../../shared/timers.js";
import { baseRecord, failedFromJob } from "../../shared/record.js";
import { closeRedis, connectRedis } from "../../shared/redis.js";
import type { ResultRecord } from "../../shared/result.js";
import { isFinal as isFinalState } from "../../shared/job-state.js";
import type { ResultStore, StateEvent } from "../../shared/result-store.js";
import type { BatchBudget, BatchStore, MemberState } from "./store.js";
import type { BatchReceipt } from "./submit.js";
import { SummaryBuilder, type BatchSummary } from "./summary.js";

export interface BatchCounts {
  /** Not started yet (waiting, delayed, prioritized, or handed back). */
  queued: number;
  /** Started and not finished (active, or waiting for a retry). */
  running: number;
  completed: number;
  failed: number;
}

export interface BatchStatus {
  batchId: string;
  /** Valid tasks the submission declared. */
  total: number;
  /** Jobs recorded as members so far (equals `total` once the submission finished). */
  members: number;
  /** False while (or if) the submission has not enqueued every task. */
  complete: boolean;
  /** Lines skipped as invalid. */
  invalid: number;
  createdAt: string;
  counts: BatchCounts;
  /** The batch's budget, what was spent of it, and whether it stopped the batch (null: no budget). */
  budget: BatchBudget | null;
}

export interface BatchProgress extends BatchCounts {
  batchId: string;
  total: number;
  /** completed + failed */
  finished: number;
  elapsedMs: number;
  /** Jobs finished per second since the wait began. */
  rate: number;
  /** Estimated time left at that rate; null until something finished. */
  etaMs: number | null;
}

export interface BatchWaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface BatchContext {
  redisUrl: string;
  queue: Queue;
  results: ResultStore;
  batches: BatchStore;
}

/** A member that will not change any more: final, or removed without a record ("missing"). */
const isFinal = (state: string): boolean => isFinalState(state) || state === "missing";
/** Started and not ended: a job parked for approval is still running (it ends once answered). */
const isRunning = (state: string): boolean =>
  state === "active" || state === "retrying" || state === "awaiting-approval";

/**
 * A batch of jobs: its status, and a wait that reports progress and every result as it lands.
 *
 * Events: `progress` (BatchProgress, at most every `progressMs`), `result` (ResultRecord, line)
 * for each job as it finishes (jobs already finished when the wait starts included).
 */
export class BatchHandle extends EventEmitter<{ progress: [BatchProgress]; result: [ResultRecord, number] }> {
  constructor(
    private readonly ctx: BatchContext,
    readonly id: string,
    /** What the submission did, for a handle returned by `submitBatch`. */
    readonly receipt: BatchReceipt | null = null,
  ) {
    super();
  }

  /** Counts by state, read in one pass over the members (no result texts are read). */
  async status(): Promise<BatchStatus> {
    const meta = await this.ctx.batches.meta(this.id);
    const counts: BatchCounts = { queued: 0, running: 0, completed: 0, failed: 0 };
    let members = 0;
    for await (const chunk of this.ctx.batches.memberChunks(this.id)) {
      members += chunk.length;
      for (const state of await this.ctx.batches.states(chunk.map((m) => m.jobId))) countState(counts, state);
    }
    return {
      batchId: this.id,
      total: meta?.total ?? members,
      members,
      complete: meta?.complete ?? false,
      invalid: meta?.invalid ?? 0,
      createdAt: meta?.createdAt ?? "",
      counts,
      budget: meta?.budget ?? null,
    };
  }

  /** The records of the members that have finished so far, in line order (read 2,000 at a time). */
  async *records(): AsyncGenerator<{ record: ResultRecord; line: number }> {
    for await (const chunk of this.ctx.batches.memberChunks(this.id)) {
      const records = await this.ctx.results.getMany(chunk.map((m) => m.jobId));
      for (let i = 0; i < chunk.length; i++) {
        const record = records[i];
        if (record && isFinalState(record.state)) yield { record, line: chunk[i]!.line };
      }
    }
  }

  /**
   * Waits until every member has finished (completed or failed) and returns the summary; it does
   * not throw when jobs failed. Rejects with NotFinishedError on timeout or abort.
   */
  async wait(opts: BatchWaitOptions & { progressMs?: number } = {}): Promise<BatchSummary> {
    opts.signal?.throwIfAborted();
    const started = Date.now();
    const { batches, results, queue } = this.ctx;
    // early: already finished when the wait began (not counted in the rate)
    const pending = new Map<string, { line: number; state: MemberState; early: boolean }>();
    const toFetch = new Set<string>();
    const summary = new SummaryBuilder();
    let finishedHere = 0;
    let scanning = true;
    let total = 0;
    let fetching: Promise<void> | undefined;
    let lastProgress = 0;
    let progressTimer: NodeJS.Timeout | undefined;
    const progressMs = opts.progressMs ?? 250;

    const progress = (): BatchProgress => {
      const counts: BatchCounts = { queued: 0, running: 0, completed: 0, failed: 0 };
      for (const p of pending.values()) if (isRunning(p.state)) counts.running += 1;
      counts.completed = summary.finished - summary.failedCount;
      counts.failed = summary.failedCount;
      counts.queued = Math.max(0, total - summary.finished - counts.running);
      const elapsedMs = Date.now() - started;
      const rate = elapsedMs > 0 ? (finishedHere * 1000) / elapsedMs : 0;
      const left = total - summary.finished;
      return {
        batchId: this.id,
        total,
        ...counts,
        finished: summary.finished,
        elapsedMs,
        rate,
        etaMs: rate > 0 ? (left / rate) * 1000 : null,
      };
    };
    const emitProgress = (force = false) => {
      if (this.listenerCount("progress") === 0) return;
      const now = Date.now();
      if (force || now - lastProgress >= progressMs) {
        clearTimeout(progressTimer);
        progressTimer = undefined;
        lastProgress = now;
        this.emit("progress", progress());
      } else {
        progressTimer ??= setTimeout(() => emitProgress(true), progressMs - (now - lastProgress));
      }
    };

    return new Promise<BatchSummary>((resolve, reject) => {
      let sub: Awaited<ReturnType<typeof connectRedis>> | undefined;
      let sweepTimer: NodeJS.Timeout | undefined;
      let deadline: LongTimeout | undefined;
      let ended = false;
      const end = (error?: Error) => {
        if (ended) return;
        ended = true;
        clearTimeout(sweepTimer);
        deadline?.clear();
        clearTimeout(progressTimer);
        opts.signal?.removeEventListener("abort", onAbort);
        void closeRedis(sub);
        if (error) reject(error);
        else {
          this.emit("progress", progress());
          const wallMs = Date.now() - started;
          // The budget's final figures (what was spent, whether it stopped the batch).
          void batches.meta(this.id).then(
            (meta) => resolve(summary.build(this.id, total, wallMs, meta?.budget ?? null)),
            () => resolve(summary.build(this.id, total, wallMs, null)),
          );
        }
      };
      const fail = (why: string) =>
        end(new NotFinishedError(`batch ${this.id} did not finish: ${why} (${summary.finished}/${total} finished)`));
      const onAbort = () => fail("the wait was aborted");
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      if (opts.timeoutMs !== undefined)
        deadline = setLongTimeout(() => fail(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);

      const maybeDone = () => {
        if (!scanning && pending.size === 0 && toFetch.size === 0) end();
      };

      // Reads the records of finished jobs, 500 at a time, one fetch at a time.
      const fetchFinished = (): Promise<void> => {
        // Set when a read failed: the loop is not restarted at once (with no offline queue every
        // call would reject at once, a loop of microtasks starving the timers); the sweep retries.
        let stopped = false;
        fetching ??= (async () => {
          while (toFetch.size > 0 && !ended) {
            const ids = [...toFetch].slice(0, 500);
            let records: (ResultRecord | null)[];
            try {
              records = await results.getMany(ids);
            } catch {
              stopped = true;
              break; // Redis away: the next sweep tries again
            }
            for (let i = 0; i < ids.length; i++) {
              const id = ids[i]!;
              toFetch.delete(id);
              let record = records[i] ?? null;
              if (!record || !isFinal(record.state)) {
                const job = (await queue.getJob(id).catch(() => undefined)) as Job | undefined;
                if (job && (await job.isFailed().catch(() => false))) record = failedFromJob(job, record);
                else if (!job && !record) record = missingRecord(id); // removed before it ran
              }
              const member = pending.get(id);
              if (!record || !isFinal(record.state) || !member) continue;
              pending.delete(id);
              if (!member.early) finishedHere += 1;
              summary.add(record, member.line);
              this.emit("result", record, member.line);
            }
            emitProgress();
          }
        })().finally(() => {
          fetching = undefined;
          if (toFetch.size > 0 && !ended && !stopped) void fetchFinished();
          maybeDone();
        });
        return fetching;
      };

      const apply = (id: string, state: MemberState) => {
        const member = pending.get(id);
        if (!member) return;
        if (isFinal(state)) toFetch.add(id);
        else member.state = state;
      };

      const sweep = async () => {
        sweepTimer = undefined;
        const ids = [...pending.keys()].filter((id) => !toFetch.has(id));
        try {
          const states = await batches.states(ids);
          ids.forEach((id, i) => apply(id, states[i]!));
        } catch {
          // Redis away: try again at the next sweep
        }
        void fetchFinished();
        emitProgress();
        if (!ended) sweepTimer = setTimeout(() => void sweep(), Math.max(2_000, pending.size / 10));
      };

      void (async () => {
        try {
          const connection = await connectRedis(this.ctx.redisUrl, "subscriber");
          if (ended) {
            void closeRedis(connection); // the wait ended (timeout, abort) while connecting
            return;
          }
          sub = connection;
          sub.on("message", (channel: string, message: string) => {
            if (channel !== results.keys.events) return;
            let event: StateEvent;
            try {
              event = JSON.parse(message) as StateEvent;
            } catch {
              return;
            }
            if (!pending.has(event.jobId)) return;
            apply(event.jobId, event.state as MemberState);
            if (isFinal(event.state)) void fetchFinished();
            emitProgress();
          });
          await sub.subscribe(results.keys.events);
          if (ended) return;
          const meta = await batches.meta(this.id);
          total = meta?.total ?? 0;
          let members = 0;
          for await (const chunk of batches.memberChunks(this.id)) {
            if (ended) return;
            members += chunk.length;
            const states = await batches.states(chunk.map((m) => m.jobId));
            chunk.forEach((m, i) => {
              pending.set(m.jobId, { line: m.line, state: "", early: isFinal(states[i]!) });
              apply(m.jobId, states[i]!);
            });
            void fetchFinished();
          }
          total = members;
          scanning = false;
          emitProgress(true);
          maybeDone();
          if (!ended) sweepTimer = setTimeout(() => void sweep(), 2_000);
        } catch (error) {
          end(error as Error);
        }
      })();
    });
  }
}

/** The failed record of a member with neither job nor record: it was removed before it ran. */
function missingRecord(jobId: string): ResultRecord {
  return {
    ...baseRecord(jobId, null, "failed"),
    error: {
      name: "Missing",
      message: "the job was removed from the queue before it ran, and left no record",
      retryable: false,
    },
  };
}

function countState(counts: BatchCounts, state: MemberState): void {
  if (state === "completed") counts.completed += 1;
  else if (state === "failed" || state === "missing") counts.failed += 1;
  else if (isRunning(state)) counts.running += 1;
  else counts.queued += 1;
}

import { emptyTokens, type JobError, type ResultRecord, type Tokens } from "../../shared/result.js";
import type { BatchBudget } from "./store.js";

export interface BatchFailure {
  jobId: string;
  line: number;
  error: JobError | null;
}

/** What a finished (or ended) wait on a batch reports. */
export interface BatchSummary {
  batchId: string;
  /** Members of the batch. */
  total: number;
  completed: number;
  failed: number;
  /** Summed over finished jobs. */
  tokens: Tokens;
  cost: number;
  /** Per-job duration of the last attempt (ms) over finished jobs; null when none has one. */
  durationMs: { p50: number; p95: number; max: number } | null;
  /** How long the wait took. */
  wallMs: number;
  /** From the first enqueue to the last finish among finished jobs (the batch's own run time, whenever it was waited for); null when unknown. */
  spanMs: number | null;
  /** The first 1,000 failures, in the order they were seen. */
  failures: BatchFailure[];
  /** The batch's budget, what its tasks spent of it, and whether it stopped the batch (null: no budget). */
  budget: BatchBudget | null;
}

/** Sums finished jobs' records into a BatchSummary, keeping only a few numbers per job. */
export class SummaryBuilder {
  private completed = 0;
  private failed = 0;
  private readonly tokens = emptyTokens();
  private cost = 0;
  private readonly durations: number[] = [];
  private readonly failures: BatchFailure[] = [];
  private firstEnqueued = Infinity;
  private lastFinished = -Infinity;

  add(record: ResultRecord, line: number): void {
    this.firstEnqueued = Math.min(this.firstEnqueued, Date.parse(record.enqueuedAt ?? "") || Infinity);
    this.lastFinished = Math.max(this.lastFinished, Date.parse(record.finishedAt ?? "") || -Infinity);
    if (record.state === "completed") this.completed += 1;
    else {
      this.failed += 1;
      if (this.failures.length < 1_000) this.failures.push({ jobId: record.jobId, line, error: record.error });
    }
    if (record.tokens)
      for (const key of Object.keys(this.tokens) as (keyof Tokens)[]) this.tokens[key] += record.tokens[key] ?? 0;
    this.cost += record.cost ?? 0;
    if (typeof record.durationMs === "number") this.durations.push(record.durationMs);
  }

  get finished(): number {
    return this.completed + this.failed;
  }

  get failedCount(): number {
    return this.failed;
  }

  build(batchId: string, total: number, wallMs: number, budget: BatchBudget | null = null): BatchSummary {
    const sorted = Float64Array.from(this.durations).sort();
    return {
      batchId,
      total,
      completed: this.completed,
      failed: this.failed,
      tokens: { ...this.tokens },
      cost: Math.round(this.cost * 1e9) / 1e9,
      durationMs: sorted.length
        ? { p50: percentile(sorted, 50), p95: percentile(sorted, 95), max: sorted[sorted.length - 1]! }
        : null,
      wallMs,
      spanMs: this.lastFinished >= this.firstEnqueued ? this.lastFinished - this.firstEnqueued : null,
      failures: [...this.failures],
      budget,
    };
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

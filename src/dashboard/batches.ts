/**
 * What the dashboard shows of batches. Counts come from the producer's own batch status
 * (BatchHandle.status, the same as `status <batchId>`); sums, percentiles and failures from its
 * SummaryBuilder over the members' records; the list of batches from the batch index
 * (QueueKeys.batches, written when a batch is submitted).
 */
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { BatchHandle, type BatchStatus } from "../producer/batch/handle.js";
import type { BatchStore, MemberState } from "../producer/batch/store.js";
import { SummaryBuilder, type BatchSummary } from "../producer/batch/summary.js";
import type { ResultRecord } from "../shared/result.js";
import { isFinal } from "../shared/job-state.js";
import type { ResultStore } from "../shared/result-store.js";
import type { SeriesPoint } from "../shared/series.js";
import { binPoints, pointsOfRecords } from "./chart-data.js";

export interface BatchDeps {
  redis: Redis;
  redisUrl: string;
  queue: Queue;
  results: ResultStore;
  batches: BatchStore;
  /** Finished members' records kept between readings (see FinishedRecords); none: read every time. */
  finished?: FinishedRecords;
}

/** Records a dashboard process keeps at most (about 400 bytes each without prompt and answer). */
const MAX_KEPT = 250_000;

/**
 * Finished members' records, without prompt and answer, kept between readings of a batch (its
 * page and the poll of it), so a big batch's sums are not read whole every time. Each is checked
 * against the result index's score, the time of the record's last write: a record written since
 * (a retried member) is read again, and so is one the index no longer holds. All are dropped when
 * more than MAX_KEPT are held.
 */
export class FinishedRecords {
  private readonly kept = new Map<string, { score: string; record: ResultRecord }>();

  async read(deps: BatchDeps, jobIds: readonly string[]): Promise<(ResultRecord | null)[]> {
    if (jobIds.length === 0) return [];
    const scores = await deps.redis.zmscore(deps.results.keys.results, ...jobIds);
    const out: (ResultRecord | null)[] = new Array<ResultRecord | null>(jobIds.length).fill(null);
    const unknown: number[] = [];
    jobIds.forEach((id, i) => {
      const hit = this.kept.get(id);
      if (hit && scores[i] != null && hit.score === scores[i]) out[i] = hit.record;
      else unknown.push(i);
    });
    const fetched = await deps.results.getMany(unknown.map((i) => jobIds[i]!));
    if (this.kept.size + fetched.length > MAX_KEPT) this.kept.clear();
    fetched.forEach((record, k) => {
      const i = unknown[k]!;
      if (!record) return;
      const light = { ...record, prompt: "", text: null, structured: null, metadata: null, asks: [] };
      out[i] = light;
      const score = scores[i];
      if (isFinal(record.state) && score != null) this.kept.set(jobIds[i]!, { score, record: light });
    });
    return out;
  }
}

/** Shares of the members by state, in percent (the progress bar). */
export interface BatchShares {
  done: number;
  failed: number;
  running: number;
  queued: number;
}

export interface FailureGroup {
  name: string;
  count: number;
  /** The first members that failed so, with their lines. */
  members: { jobId: string; line: number; message: string }[];
}

export interface BatchMember {
  jobId: string;
  line: number;
  state: MemberState;
  record: ResultRecord | null;
}

export interface BatchView {
  status: BatchStatus;
  shares: BatchShares;
  summary: BatchSummary;
  /** Members finished per minute, over the batch's run so far (null until one finished). */
  perMinute: number | null;
  /** Time left at that rate (null when unknown or nothing is left). */
  etaMs: number | null;
  failures: FailureGroup[];
  /** Minutes of the batch's run for its charts, `binMinutes` minutes each. */
  points: SeriesPoint[];
  binMinutes: number;
  /** True once every member has finished. */
  done: boolean;
}

export function sharesOf(status: BatchStatus): BatchShares {
  const total = Math.max(1, status.total, status.members);
  const pct = (n: number) => Math.round((n / total) * 1_000) / 10;
  const { completed, failed, running } = status.counts;
  return {
    done: pct(completed),
    failed: pct(failed),
    running: pct(running),
    queued: Math.max(0, Math.round((100 - pct(completed) - pct(failed) - pct(running)) * 10) / 10),
  };
}

export const isDone = (status: BatchStatus) =>
  status.complete && status.counts.queued === 0 && status.counts.running === 0;

/** A batch in full, or null when there is no such batch. */
export async function batchView(deps: BatchDeps, batchId: string): Promise<BatchView | null> {
  const handle = new BatchHandle(deps, batchId);
  const status = await handle.status();
  if (status.members === 0 && !status.createdAt) return null;
  const summary = new SummaryBuilder();
  const records: ResultRecord[] = [];
  for await (const chunk of deps.batches.memberChunks(batchId)) {
    const ids = chunk.map((m) => m.jobId);
    const found = await (deps.finished ? deps.finished.read(deps, ids) : deps.results.getMany(ids));
    found.forEach((record, i) => {
      if (!record) return;
      records.push(record);
      if (isFinal(record.state)) summary.add(record, chunk[i]!.line);
    });
  }
  const built = summary.build(batchId, status.total, 0, status.budget);
  const now = Date.now();
  const created = Date.parse(status.createdAt) || now;
  let firstEnqueued = created;
  let lastFinished = 0;
  for (const r of records) {
    firstEnqueued = Math.min(firstEnqueued, Date.parse(r.enqueuedAt ?? "") || Infinity);
    if (isFinal(r.state)) lastFinished = Math.max(lastFinished, Date.parse(r.finishedAt ?? "") || 0);
  }
  const done = isDone(status);
  const finished = status.counts.completed + status.counts.failed;
  const elapsedMs = (done ? lastFinished : now) - firstEnqueued;
  const perMinute = finished > 0 && elapsedMs > 0 ? (finished * 60_000) / elapsedMs : null;
  const left = Math.max(0, status.total - finished);
  const minutes = pointsOfRecords(
    records,
    Math.max(0, status.total - records.length),
    firstEnqueued,
    done ? Math.max(lastFinished, firstEnqueued) : now,
  );
  const binMinutes = Math.max(1, Math.ceil(minutes.length / 120));
  return {
    status,
    shares: sharesOf(status),
    summary: built,
    perMinute,
    etaMs: perMinute && left > 0 ? (left / perMinute) * 60_000 : null,
    failures: groupFailures(built),
    points: binPoints(minutes, binMinutes),
    binMinutes,
    done,
  };
}

function groupFailures(summary: BatchSummary): FailureGroup[] {
  const groups = new Map<string, FailureGroup>();
  for (const f of summary.failures) {
    const name = f.error?.name ?? "JobFailed";
    const group = groups.get(name) ?? { name, count: 0, members: [] };
    group.count += 1;
    if (group.members.length < 50)
      group.members.push({ jobId: f.jobId, line: f.line, message: f.error?.message ?? "" });
    groups.set(name, group);
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}

/** A page of a batch's members in line order, with their states and records. */
export async function batchMembers(
  deps: BatchDeps,
  batchId: string,
  offset: number,
  limit: number,
): Promise<{ members: BatchMember[]; next: number | null }> {
  const flat = await deps.redis.zrange(deps.results.keys.batchJobs(batchId), offset, offset + limit, "WITHSCORES");
  const page: { jobId: string; line: number }[] = [];
  for (let i = 0; i < flat.length; i += 2) page.push({ jobId: flat[i]!, line: Number(flat[i + 1]) });
  const shown = page.slice(0, limit);
  const [states, records] = await Promise.all([
    deps.batches.states(shown.map((m) => m.jobId)),
    deps.results.getMany(shown.map((m) => m.jobId)),
  ]);
  return {
    members: shown.map((m, i) => ({ ...m, state: states[i]!, record: records[i] ?? null })),
    next: page.length > limit ? offset + limit : null,
  };
}

export interface BatchRow {
  status: BatchStatus;
  shares: BatchShares;
}

/** A page of every batch, newest first (20 a page), each with its counts. */
export async function listBatches(
  deps: BatchDeps,
  offset: number,
  limit = 20,
): Promise<{ rows: BatchRow[]; next: number | null }> {
  const ids = await deps.redis.zrevrange(deps.results.keys.batches, offset, offset + limit);
  const shown = ids.slice(0, limit);
  const statuses = await Promise.all(shown.map((id) => new BatchHandle(deps, id).status()));
  // A batch whose keys expired (its index entry outlived it) is left out.
  const rows = statuses
    .filter((s) => s.members > 0 || s.createdAt)
    .map((status) => ({ status, shares: sharesOf(status) }));
  return { rows, next: ids.length > limit ? offset + limit : null };
}

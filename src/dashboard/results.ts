import type { Redis } from "ioredis";
import { queueKeys } from "../shared/keys.js";
import { ResultRecord } from "../shared/result.js";

/** A result record as the dashboard shows it (the job it continues is its `continues`). */
export type DashboardRecord = ResultRecord;

export interface ResultFilter {
  state?: string;
  sessionId?: string;
  /** Records per page. @defaultValue 50 */
  limit?: number;
  /** Where the page begins in the index (the `next` of the page before). @defaultValue 0 */
  offset?: number;
}

export interface ResultPage {
  records: DashboardRecord[];
  /** The offset of the next (older) page, or null when this is the last. */
  next: number | null;
}

/** Index entries read per round trip. */
const CHUNK = 200;
/** Index entries one page reads at most, so a filter that matches little still answers quickly. */
const MAX_READ = 5_000;

/**
 * A page of a queue's result records, newest first, read from the result index (QueueKeys.results,
 * written with every record; records outlive BullMQ's own job retention): one ZREVRANGE and one
 * MGET per 200 entries, whatever the number of records. Entries whose record expired, or (in a
 * state's index) whose job has moved on to another state, are dropped from the index as they are met.
 */
export async function listResults(redis: Redis, queue: string, filter: ResultFilter = {}): Promise<ResultPage> {
  const keys = queueKeys(queue);
  const index = filter.sessionId
    ? keys.resultsOfSession(filter.sessionId)
    : filter.state
      ? keys.resultsInState(filter.state)
      : keys.results;
  const limit = Math.max(1, filter.limit ?? 50);
  const records: DashboardRecord[] = [];
  let position = Math.max(0, filter.offset ?? 0);
  let read = 0;
  while (records.length < limit && read < MAX_READ) {
    const ids = await redis.zrevrange(index, position, position + CHUNK - 1);
    if (ids.length === 0) return { records, next: null };
    const raws = await redis.mget(ids.map((id) => keys.result(id)));
    const stale: string[] = [];
    let used = 0;
    for (let i = 0; i < ids.length && records.length < limit; i++, used++) {
      const record = raws[i] == null ? null : toDashboardRecord(raws[i]!);
      const moved = record && filter.state && record.state !== filter.state;
      if (!record || (moved && !filter.sessionId)) stale.push(ids[i]!);
      else if (!moved) records.push(record);
    }
    if (stale.length) await redis.zrem(index, ...stale);
    // The entries dropped were before the next position: it moves back by as many.
    position += used - stale.length;
    read += used;
    if (ids.length < CHUNK && used === ids.length) return { records, next: null };
  }
  return { records, next: position };
}

function safeJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

/** One stored record, or null when it is missing or unreadable. */
export async function getResult(redis: Redis, queue: string, jobId: string): Promise<DashboardRecord | null> {
  const raw = await redis.get(queueKeys(queue).result(jobId));
  return raw === null ? null : toDashboardRecord(raw);
}

/** Parses a stored record (null when it is not a record). */
function toDashboardRecord(raw: string): DashboardRecord | null {
  const parsed = ResultRecord.safeParse(safeJson(raw));
  return parsed.success ? parsed.data : null;
}

import type { Redis } from "ioredis";
import { queueKeys } from "../shared/keys.js";
import { ResultRecord } from "../shared/result.js";

/** How many result keys one listing reads at most (newest first after sorting). */
export const SCAN_LIMIT = 10_000;

/** Every key matching `pattern`, on a single Redis or on every master of a Cluster. */
async function scanKeys(redis: Redis, pattern: string, limit: number): Promise<string[]> {
  const cluster = redis as unknown as { isCluster?: boolean; nodes?: (role: "master") => Redis[] };
  const nodes = cluster.isCluster && cluster.nodes ? cluster.nodes("master") : [redis];
  const keys: string[] = [];
  for (const node of nodes) {
    let cursor = "0";
    do {
      const [next, batch] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1_000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== "0" && keys.length < limit);
  }
  return keys.slice(0, limit);
}

const sortTime = (r: ResultRecord) => Date.parse(r.finishedAt ?? r.startedAt ?? r.enqueuedAt ?? "") || 0;

/** A result record plus the job it continues, when the stored record names one. */
export type DashboardRecord = ResultRecord & { continuedFrom: string | null };

export interface ResultFilter {
  state?: string;
  sessionId?: string;
  limit?: number;
}

/**
 * Result records of a queue, read straight from the result store's keys (they outlive BullMQ's
 * own job retention), newest first.
 */
export async function listResults(redis: Redis, queue: string, filter: ResultFilter = {}): Promise<DashboardRecord[]> {
  const keys = queueKeys(queue);
  const prefix = keys.result("");
  const found = await scanKeys(redis, `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`, SCAN_LIMIT);
  const records: DashboardRecord[] = [];
  for (let i = 0; i < found.length; i += 500) {
    const raws = await redis.mget(found.slice(i, i + 500));
    for (const raw of raws) {
      if (raw === null) continue;
      const record = toDashboardRecord(raw);
      if (record) records.push(record);
    }
  }
  return records
    .filter((r) => (!filter.state || r.state === filter.state) && (!filter.sessionId || r.sessionId === filter.sessionId))
    .sort((a, b) => sortTime(b) - sortTime(a))
    .slice(0, filter.limit ?? 200);
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

/**
 * Parses a stored record. The job it continues comes from `continuedFrom` (or `parentJobId`, or
 * `metadata.continuedFrom`) when the record has one; jobs are also linked by their session ID.
 */
function toDashboardRecord(raw: string): DashboardRecord | null {
  const json = safeJson(raw) as Record<string, unknown> | null;
  const parsed = ResultRecord.safeParse(json);
  if (!parsed.success) return null;
  const meta = parsed.data.metadata ?? {};
  const parent = [json?.continuedFrom, json?.parentJobId, meta.continuedFrom].find((v) => typeof v === "string");
  return { ...parsed.data, continuedFrom: (parent as string | undefined) ?? null };
}

import type { Redis } from "ioredis";
import type { QueueKeys } from "./keys.js";

/**
 * A bounded time series of what jobs did, one Redis hash per minute (QueueKeys.seriesMinute),
 * written by the record write that makes a job final (ResultStore, in its script: no extra round
 * trip) and read by the dashboard's charts. Fields of a minute's hash:
 * - `n`: jobs that reached a final record in that minute (counted once per run: a record re-written
 *   final is not counted again, a job retried since is);
 * - `c<b>` / `f<b>`: completed / failed jobs whose last attempt's duration falls in bucket `b`
 *   (an index into DURATION_BUCKETS_MS, `x` when unknown);
 * - `$<model>`: the cost of that minute's jobs of one model (the model as the record names it, or `default`);
 * - `q` and `a`: jobs waiting (wait + prioritized) and running, sampled at the minute's first finish.
 * Each hash expires SERIES_TTL_MS after that first finish, so the series holds about a day.
 */
export const SERIES_TTL_MS = 26 * 3_600_000;

/** Upper bounds (ms) of the duration buckets; the last bucket is everything longer. */
export const DURATION_BUCKETS_MS = [
  1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000,
] as const;

export const minuteOf = (ms: number) => Math.floor(ms / 60_000);

/** The bucket index of a duration ("x" when there is none). */
export function durationBucket(ms: number | null): string {
  if (ms == null || !Number.isFinite(ms)) return "x";
  const i = DURATION_BUCKETS_MS.findIndex((bound) => ms < bound);
  return String(i === -1 ? DURATION_BUCKETS_MS.length : i);
}

/** The buckets' labels, in order (one more than DURATION_BUCKETS_MS: the longer ones). */
export const BUCKET_LABELS = [
  "<1s",
  "1-2.5s",
  "2.5-5s",
  "5-10s",
  "10-30s",
  "30s-1m",
  "1-2m",
  "2-5m",
  "5-10m",
  "10-30m",
  ">30m",
] as const;

/** One minute of the series. */
export interface SeriesPoint {
  /** Minute since the epoch (ms / 60,000). */
  minute: number;
  completed: number;
  failed: number;
  /** Finished jobs by duration bucket (index into DURATION_BUCKETS_MS, plus one for longer). */
  durations: number[];
  /** Cost by model. */
  cost: Record<string, number>;
  /** Waiting and running jobs when the minute's first job finished; null when nothing finished. */
  waiting: number | null;
  running: number | null;
}

/** The series' minutes from `fromMinute` to `toMinute` (inclusive), one pipelined HGETALL per minute. */
export async function readSeries(
  redis: Redis,
  keys: QueueKeys,
  fromMinute: number,
  toMinute: number,
): Promise<SeriesPoint[]> {
  const pipe = redis.pipeline();
  for (let m = fromMinute; m <= toMinute; m++) pipe.hgetall(keys.seriesMinute(m));
  const replies = (await pipe.exec()) ?? [];
  return replies.map(([error, raw], i) => {
    if (error) throw error;
    return toPoint(fromMinute + i, raw as Record<string, string>);
  });
}

/** A minute with nothing counted yet. */
export const emptyPoint = (minute: number): SeriesPoint => ({
  minute,
  completed: 0,
  failed: 0,
  durations: new Array<number>(DURATION_BUCKETS_MS.length + 1).fill(0),
  cost: {},
  waiting: null,
  running: null,
});

function toPoint(minute: number, raw: Record<string, string>): SeriesPoint {
  const point = emptyPoint(minute);
  for (const [field, value] of Object.entries(raw)) {
    const n = Number(value);
    if (!Number.isFinite(n)) continue;
    const head = field[0];
    if ((head === "c" || head === "f") && field.length > 1) {
      if (head === "c") point.completed += n;
      else point.failed += n;
      const bucket = Number(field.slice(1));
      if (Number.isInteger(bucket) && bucket >= 0 && bucket < point.durations.length) point.durations[bucket]! += n;
    } else if (head === "$") point.cost[field.slice(1)] = n;
    else if (field === "q") point.waiting = n;
    else if (field === "a") point.running = n;
  }
  return point;
}

/**
 * Many result records written straight into Redis, indexed as the result store indexes them (the
 * record, the result index and its state's index, scored by `at`), 5,000 a pipeline: a large
 * queue for the dashboard's scale tests in seconds. `batch` also makes the record a member.
 */
import type { Redis } from "ioredis";
import type { QueueKeys } from "../../src/shared/keys";
import type { ResultRecord } from "../../src/shared/result";

export interface SeededRecord {
  record: ResultRecord;
  /** The record's place in the indexes (ms). */
  at: number;
  /** A batch it is a member of, as line `n`. */
  batch?: string;
  /** The JSON stored, when it must differ from `JSON.stringify(record)`. */
  json?: string;
}

export async function seedRecords(
  redis: Redis,
  keys: QueueKeys,
  count: number,
  make: (n: number) => SeededRecord,
  opts: { ttlMs?: number } = {},
): Promise<void> {
  for (let start = 0; start < count; start += 5_000) {
    const pipe = redis.pipeline();
    for (let n = start; n < Math.min(count, start + 5_000); n++) {
      const { record, at, batch, json } = make(n);
      const value = json ?? JSON.stringify(record);
      if (opts.ttlMs) pipe.set(keys.result(record.jobId), value, "PX", opts.ttlMs);
      else pipe.set(keys.result(record.jobId), value);
      pipe.zadd(keys.results, at, record.jobId);
      pipe.zadd(keys.resultsInState(record.state), at, record.jobId);
      if (batch) pipe.zadd(keys.batchJobs(batch), n, record.jobId);
    }
    await pipe.exec();
  }
}

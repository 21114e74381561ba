/**
 * A batch's members as Redis holds them: the sorted set `keys.batchJobs(batch)`, job IDs scored by
 * their line. The one reader of it, for the producer (status, wait, retry, the dashboard) and the
 * worker (a parent gathering its children's results).
 */
import type { Redis } from "ioredis";

export interface BatchMember {
  jobId: string;
  line: number;
}

/** The members of the batch whose member set is `key`, in line order, `size` at a time. */
export async function* batchMemberChunks(redis: Redis, key: string, size: number): AsyncIterable<BatchMember[]> {
  for (let start = 0; ; start += size) {
    const flat = await redis.zrange(key, start, start + size - 1, "WITHSCORES");
    if (flat.length === 0) return;
    const chunk: BatchMember[] = [];
    for (let i = 0; i < flat.length; i += 2) chunk.push({ jobId: flat[i]!, line: Number(flat[i + 1]) });
    yield chunk;
    if (flat.length < size * 2) return;
  }
}

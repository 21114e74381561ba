import type { Redis } from "ioredis";
import { queueKeys, type QueueKeys } from "./keys.js";
import { ResultRecord, type JobState } from "./result.js";

export interface StateEvent {
  jobId: string;
  state: JobState;
}

/**
 * Result records in Redis, one key per job (`dispatch:{queue}:result:<jobId>`), kept for
 * `ttlMs` (0 = forever) whatever BullMQ's own retention does. Every write is announced on the
 * queue's events channel so waiters need not poll.
 */
export class ResultStore {
  readonly keys: QueueKeys;

  constructor(
    private readonly redis: Redis,
    queue: string,
    private readonly ttlMs = 0,
  ) {
    this.keys = queueKeys(queue);
  }

  async get(jobId: string): Promise<ResultRecord | null> {
    const raw = await this.redis.get(this.keys.result(jobId));
    return raw === null ? null : ResultRecord.parse(JSON.parse(raw));
  }

  async getMany(jobIds: readonly string[]): Promise<(ResultRecord | null)[]> {
    if (jobIds.length === 0) return [];
    const raws = await this.redis.mget(jobIds.map((id) => this.keys.result(id)));
    return raws.map((raw) => (raw === null ? null : ResultRecord.parse(JSON.parse(raw))));
  }

  async exists(jobId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.result(jobId))) === 1;
  }

  async put(record: ResultRecord): Promise<void> {
    const key = this.keys.result(record.jobId);
    const value = JSON.stringify(record);
    const event: StateEvent = { jobId: record.jobId, state: record.state };
    const multi = this.redis.multi();
    if (this.ttlMs > 0) multi.set(key, value, "PX", this.ttlMs);
    else multi.set(key, value);
    multi.publish(this.keys.events, JSON.stringify(event));
    await multi.exec();
  }
}

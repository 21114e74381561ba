import type { Redis } from "ioredis";
import { queueKeys, type QueueKeys } from "./keys.js";
import { FINAL_STATES, ResultRecord, type JobState, type Progress } from "./result.js";
import { WebhookOutbox } from "./webhook.js";

/**
 * What the queue's events channel carries: a record's new state, or (state "active" with
 * `progress`) what a running job has done so far.
 */
export interface StateEvent {
  jobId: string;
  state: JobState;
  progress?: Progress;
}

/**
 * Result records in Redis, one key per job (`dispatch:{queue}:result:<jobId>`), kept for
 * `ttlMs` (0 = forever) whatever BullMQ's own retention does. Every write is announced on the
 * queue's events channel so waiters need not poll.
 */
export class ResultStore {
  readonly keys: QueueKeys;
  private readonly outbox: WebhookOutbox;

  constructor(
    private readonly redis: Redis,
    queue: string,
    private readonly ttlMs = 0,
    /** Called after a final record is written (the scheduler wakes the job's follow-ups). */
    private readonly onFinal?: (jobId: string) => Promise<void>,
  ) {
    this.keys = queueKeys(queue);
    this.outbox = new WebhookOutbox(redis, queue);
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

  /**
   * Writes a record and announces it. A final record that names a webhook gets its delivery job
   * first, so a crash in between notifies (at least once) rather than not at all. A final record
   * also marks the job done for the scheduler (its follow-ups may start); a waiting one clears
   * that (a job re-queued by `retry` is not done).
   */
  async put(record: ResultRecord): Promise<void> {
    const final = FINAL_STATES.has(record.state);
    if (final && record.webhook) await this.outbox.add(record);
    const key = this.keys.result(record.jobId);
    const done = `${this.keys.sched}done:${record.jobId}`;
    const value = JSON.stringify(record);
    const event: StateEvent = { jobId: record.jobId, state: record.state };
    const multi = this.redis.multi();
    const px = this.ttlMs > 0 ? (["PX", this.ttlMs] as const) : ([] as const);
    multi.set(key, value, ...(px as ["PX", number]));
    if (final) multi.set(done, "1", ...(px as ["PX", number]));
    else if (record.state === "waiting") multi.del(done); // re-queued (retry) or handed back
    multi.publish(this.keys.events, JSON.stringify(event));
    await multi.exec();
    if (final) await this.onFinal?.(record.jobId);
  }

  /** Announces a running job's progress on the events channel (not stored: BullMQ's job progress holds it). */
  async publishProgress(jobId: string, progress: Progress): Promise<void> {
    const event: StateEvent = { jobId, state: "active", progress };
    await this.redis.publish(this.keys.events, JSON.stringify(event));
  }

  /** Closes the webhook outbox's queue handle (not the Redis connection). */
  async close(): Promise<void> {
    await this.outbox.close();
  }
}

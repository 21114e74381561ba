import type { Redis } from "ioredis";
import { queueKeys, type QueueKeys } from "./keys.js";
import { LIVE_MAXLEN, LIVE_TTL_MS } from "./live.js";
import { SERIES_TTL_MS, durationBucket, minuteOf } from "./series.js";
import { isFinal } from "./job-state.js";
import { ResultRecord, type JobState, type Progress } from "./result.js";
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

/** What a job's attempts have spent so far. */
export interface Spent {
  tokens: number;
  cost: number;
  attempts: number;
}

/** A job's task as BullMQ held it: its name, its data (the payload) and the options that matter. */
export interface KeptTask {
  name: string;
  data: unknown;
  opts: { attempts?: number; priority?: number };
}

/**
 * Writes a record, marks a final one done for the scheduler (a waiting one: not done), announces
 * it on the events channel and in the job's live stream (see shared/live.ts). With a token, only
 * while BullMQ's lock on the job still holds it (the attempt owns the job), in the same script.
 * It also indexes the record (QueueKeys.results: by time, by state and by session), trimming
 * members older than the TTL from the first two.
 * A record that makes the job final (its done mark was not set) also counts in the queue's time
 * series (shared/series.ts): two or three HINCRBYs, and once a minute a sample of the queue's depth.
 * KEYS: record, done mark, lock, live stream, series minute, BullMQ wait, prioritized, active,
 * index, state index, [session index]. ARGV: value, ttl ms (0: none), token ("" for none), final
 * ("1"/"0"), waiting ("1"/"0"), channel, event, live entry type, live entry data, live max length,
 * live ttl ms, now ms, job ID, series outcome field, series cost field, cost, series ttl ms.
 */
const PUT = `
if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[3] then return 0 end
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl) else redis.call('SET', KEYS[1], ARGV[1]) end
if ARGV[4] == '1' then
  -- SET NX rather than SET GET (Redis 6.2): BullMQ runs on Redis 5 too.
  local fresh
  if ttl > 0 then
    fresh = redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl)
    if not fresh then redis.call('PEXPIRE', KEYS[2], ttl) end
  else
    fresh = redis.call('SET', KEYS[2], '1', 'NX')
    if not fresh then redis.call('PERSIST', KEYS[2]) end
  end
  if fresh then
    local n = redis.call('HINCRBY', KEYS[5], 'n', 1)
    redis.call('HINCRBY', KEYS[5], ARGV[14], 1)
    if ARGV[15] ~= '' then redis.call('HINCRBYFLOAT', KEYS[5], ARGV[15], ARGV[16]) end
    if n == 1 then
      redis.call('HSET', KEYS[5], 'q', redis.call('LLEN', KEYS[6]) + redis.call('ZCARD', KEYS[7]), 'a', redis.call('LLEN', KEYS[8]))
      redis.call('PEXPIRE', KEYS[5], ARGV[17])
    end
  end
elseif ARGV[5] == '1' then
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[10], '*', 't', ARGV[8], 'd', ARGV[9])
redis.call('PEXPIRE', KEYS[4], ARGV[11])
local now = tonumber(ARGV[12])
for i = 9, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[13])
  if ttl > 0 then
    if i < 11 then redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. (now - ttl)) end
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 1
`;

/**
 * Result records in Redis, one key per job (QueueKeys.result), kept for
 * `ttlMs` (0 = forever) whatever BullMQ's own retention does. Every write is announced on the
 * queue's events channel so waiters need not poll.
 */
export class ResultStore {
  readonly keys: QueueKeys;
  private readonly outbox: WebhookOutbox;

  constructor(
    private readonly redis: Redis,
    private readonly queue: string,
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

  /**
   * Writes a record and announces it. A final record that names a webhook gets its delivery job
   * first, so a crash in between notifies (at least once) rather than not at all. A final record
   * also marks the job done for the scheduler (its follow-ups may start); a waiting one clears
   * that (a job re-queued by `retry` is not done).
   */
  async put(record: ResultRecord, ttlMs = this.ttlMs): Promise<void> {
    await this.write(record, "", ttlMs);
  }

  /** Tells the queue's producers how long records are kept (workers do, at start; see queueTtl). */
  async publishTtl(): Promise<void> {
    await this.redis.hset(this.keys.settings, "resultTtlMs", this.ttlMs);
  }

  /** How long the queue's workers keep records (ms, 0: for ever), or null when no worker said. */
  async queueTtl(): Promise<number | null> {
    const raw = await this.redis.hget(this.keys.settings, "resultTtlMs");
    return raw === null || !Number.isSafeInteger(Number(raw)) ? null : Number(raw);
  }

  /**
   * Keeps a job's whole task beside its record, for as long as the record, so that `retry` can
   * re-queue exactly it after BullMQ has let the job go (cancelled while waiting, past retention).
   */
  async keepTask(
    job: { id?: string; name: string; data: unknown; opts: { attempts?: number; priority?: number } },
    ttlMs = this.ttlMs,
  ): Promise<void> {
    if (!job.id) return;
    const copy: KeptTask = {
      name: job.name,
      data: job.data,
      opts: { attempts: job.opts.attempts, priority: job.opts.priority },
    };
    const key = this.keys.taskCopy(job.id);
    if (ttlMs > 0) await this.redis.set(key, JSON.stringify(copy), "PX", ttlMs);
    else await this.redis.set(key, JSON.stringify(copy));
  }

  /** The task kept by keepTask, or null. */
  async keptTask(jobId: string): Promise<KeptTask | null> {
    const raw = await this.redis.get(this.keys.taskCopy(jobId));
    return raw === null ? null : (JSON.parse(raw) as KeptTask);
  }

  /** What the job's earlier attempts spent, summed (kept only for jobs with a budget). */
  async spent(jobId: string): Promise<Spent> {
    const [tokens, cost, attempts] = await this.redis.hmget(this.keys.spent(jobId), "tokens", "cost", "attempts");
    return { tokens: Number(tokens ?? 0), cost: Number(cost ?? 0), attempts: Number(attempts ?? 0) };
  }

  /** Adds what one attempt spent to the job's total. */
  async addSpent(jobId: string, tokens: number, cost: number): Promise<void> {
    const key = this.keys.spent(jobId);
    const multi = this.redis
      .multi()
      .hincrby(key, "tokens", Math.round(tokens))
      .hincrbyfloat(key, "cost", cost)
      .hincrby(key, "attempts", 1);
    if (this.ttlMs > 0) multi.pexpire(key, this.ttlMs);
    await multi.exec();
  }

  /** Whether the attempt with this lock token still owns the job. */
  async owns(jobId: string, token: string): Promise<boolean> {
    return (await this.redis.get(this.lockKey(jobId))) === token;
  }

  /** BullMQ's lock on a job: it holds the token of the attempt that owns the job. */
  lockKey(jobId: string): string {
    return this.keys.bullLock(jobId);
  }

  /**
   * Writes a record for an attempt, only while the attempt still owns the job (`token`: its
   * BullMQ lock token). Returns false, having written nothing, when another worker took the job
   * over (the lock expired while this one was cut off or frozen). The webhook of a final record
   * is queued only after the ownership check.
   */
  putFenced(record: ResultRecord, token: string): Promise<boolean> {
    return this.write(record, token, this.ttlMs);
  }

  /** The one write of a record (see PUT); `token` "" writes unfenced. False when the fence refused it. */
  private async write(record: ResultRecord, token: string, ttlMs: number): Promise<boolean> {
    const final = isFinal(record.state);
    // A job parked on a permission ask notifies its webhook too (X-Dispatch-Event: ask).
    if ((final || record.state === "awaiting-approval") && record.webhook) {
      if (token && !(await this.owns(record.jobId, token))) return false;
      await this.outbox.add(record);
    }
    const event: StateEvent = { jobId: record.jobId, state: record.state };
    const indexes = [this.keys.results, this.keys.resultsInState(record.state)];
    if (record.sessionId) indexes.push(this.keys.resultsOfSession(record.sessionId));
    const now = Date.now();
    const written = await this.redis.eval(
      PUT,
      8 + indexes.length,
      this.keys.result(record.jobId),
      `${this.keys.sched}done:${record.jobId}`,
      this.lockKey(record.jobId),
      this.keys.live(record.jobId),
      this.keys.seriesMinute(minuteOf(now)),
      `${this.keys.bull}wait`,
      `${this.keys.bull}prioritized`,
      `${this.keys.bull}active`,
      ...indexes,
      JSON.stringify(record),
      ttlMs,
      token,
      final ? "1" : "0",
      record.state === "waiting" ? "1" : "0",
      this.keys.events,
      JSON.stringify(event),
      final ? "final" : "state",
      JSON.stringify({
        state: record.state,
        attempt: record.attempts,
        ...(record.approval ? { approval: record.approval } : {}),
      }),
      LIVE_MAXLEN,
      LIVE_TTL_MS,
      now,
      record.jobId,
      `${record.state === "completed" ? "c" : "f"}${durationBucket(record.durationMs)}`,
      record.cost ? `$${record.model ?? "default"}` : "",
      record.cost ?? 0,
      SERIES_TTL_MS,
    );
    if (written !== 1) return false;
    if (final) await this.onFinal?.(record.jobId);
    return true;
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

import type { Redis } from "ioredis";
import { batchMemberChunks, type BatchMember } from "../../shared/batch-members.js";
import { queueKeys, type QueueKeys } from "../../shared/keys.js";

/** What Redis keeps about a batch (besides its member list). */
export interface BatchMeta {
  batchId: string;
  /** Valid tasks in the batch (its members once fully enqueued). */
  total: number;
  /** Lines skipped as invalid (with skipInvalid). */
  invalid: number;
  createdAt: string;
  /** Set once every member has been enqueued. */
  complete: boolean;
  /** The batch's budget and what its members have spent of it, for a batch submitted with one. */
  budget: BatchBudget | null;
}

/** A budget for a whole batch (see worker/queue/batch-budget.ts, which counts and enforces it). */
export interface BatchBudget {
  maxCost: number | null;
  maxTokens: number | null;
  spent: { tokens: number; cost: number };
  /** Why the batch stopped, once its members' total passed the budget; else null. */
  exceeded: string | null;
}

/** A member's state as far as Redis knows, cheaply: "" when no worker has started it yet. */
export type MemberState =
  "" | "waiting" | "active" | "awaiting-approval" | "retrying" | "completed" | "failed" | "missing";

/**
 * Returns, for each job ID, the state in its result record ("" if none), or "failed" when BullMQ
 * failed the job without a final record (stalled too often), or "missing" when there is neither a
 * record nor a job (removed before it ran: it will never finish). KEYS: failed set, record keys,
 * job keys; ARGV: job IDs.
 * The record's state is read from its head (records start `{"jobId":…,"state":…`; GETRANGE of its
 * first 512 bytes) with a full JSON decode as fallback, so large answers are not even copied into
 * the script.
 */
const STATES_SCRIPT = `
local out = {}
for i = 2, #ARGV + 1 do
  local head = redis.call('GETRANGE', KEYS[i], 0, 511)
  local state = ''
  if head ~= '' then
    state = string.match(head, '^{"jobId":"[^"]*","state":"([%a-]+)"')
    if not state then
      local ok, record = pcall(cjson.decode, redis.call('GET', KEYS[i]))
      state = (ok and type(record) == 'table' and record.state) or ''
    end
  end
  if state ~= 'completed' and state ~= 'failed' and redis.call('ZSCORE', KEYS[1], ARGV[i - 1]) then
    state = 'failed'
  end
  if state == '' and redis.call('EXISTS', KEYS[i + #ARGV]) == 0 then
    state = 'missing'
  end
  out[i - 1] = state
end
return out
`;

/**
 * A batch in Redis: `dispatch:{queue}:batch:<id>` (hash) and `…:batch:<id>:jobs` (sorted set of
 * job IDs scored by line number). Both expire with the result records (`ttlMs`, 0 = never).
 */
export class BatchStore {
  readonly keys: QueueKeys;

  constructor(
    private readonly redis: Redis,
    private readonly queue: string,
    private readonly ttlMs = 0,
  ) {
    this.keys = queueKeys(queue);
  }

  /** BullMQ's key for a job's hash. */
  jobKey(jobId: string): string {
    return `${this.keys.bullPrefix}:${this.queue}:${jobId}`;
  }

  private get failedKey(): string {
    return `${this.keys.bullPrefix}:${this.queue}:failed`;
  }

  async meta(batchId: string): Promise<BatchMeta | null> {
    const raw = await this.redis.hgetall(this.keys.batch(batchId));
    if (!raw.batchId) return null;
    return {
      batchId: raw.batchId,
      total: Number(raw.total ?? 0),
      invalid: Number(raw.invalid ?? 0),
      createdAt: raw.createdAt ?? "",
      complete: raw.complete === "1",
      budget:
        raw.maxCost || raw.maxTokens
          ? {
              maxCost: raw.maxCost ? Number(raw.maxCost) : null,
              maxTokens: raw.maxTokens ? Number(raw.maxTokens) : null,
              spent: { tokens: Number(raw.spentTokens ?? 0), cost: Math.round(Number(raw.spentCost ?? 0) * 1e9) / 1e9 },
              exceeded: raw.exceeded ?? null,
            }
          : null,
    };
  }

  /**
   * Records the batch before its first job is added (keeps the first createdAt). A budget given
   * again replaces the earlier one; what was spent stays.
   */
  async begin(
    meta: Omit<BatchMeta, "complete" | "createdAt" | "budget"> & { maxCost?: number; maxTokens?: number },
  ): Promise<{ existed: boolean }> {
    const key = this.keys.batch(meta.batchId);
    const multi = this.redis.multi();
    multi.hsetnx(key, "createdAt", new Date().toISOString());
    multi.hset(key, { batchId: meta.batchId, total: meta.total, invalid: meta.invalid });
    if (meta.maxCost !== undefined) multi.hset(key, "maxCost", meta.maxCost);
    if (meta.maxTokens !== undefined) multi.hset(key, "maxTokens", meta.maxTokens);
    // A new budget replaces the old one whole, and is weighed afresh against what was spent (by the next member's spend).
    if (meta.maxCost !== undefined || meta.maxTokens !== undefined) {
      if (meta.maxCost === undefined) multi.hdel(key, "maxCost");
      if (meta.maxTokens === undefined) multi.hdel(key, "maxTokens");
      multi.hdel(key, "exceeded");
    }
    multi.hsetnx(key, "complete", "0");
    this.expire(multi, key);
    // The index of batches (the dashboard's list), trimmed of batches older than the TTL.
    const now = Date.now();
    multi.zadd(this.keys.batches, "NX", now, meta.batchId);
    if (this.ttlMs > 0) multi.zremrangebyscore(this.keys.batches, "-inf", `(${now - this.ttlMs}`);
    const [[, created]] = (await multi.exec()) as [[Error | null, number]];
    return { existed: created === 0 };
  }

  /** Adds members after their jobs were added to BullMQ. */
  async addMembers(batchId: string, members: readonly { jobId: string; line: number }[]): Promise<void> {
    if (members.length === 0) return;
    const key = this.keys.batchJobs(batchId);
    const args: (string | number)[] = [];
    for (const m of members) args.push(m.line, m.jobId);
    const multi = this.redis.multi();
    multi.zadd(key, ...args);
    this.expire(multi, key);
    await multi.exec();
  }

  async finish(batchId: string): Promise<void> {
    const multi = this.redis.multi();
    multi.hset(this.keys.batch(batchId), "complete", "1");
    this.expire(multi, this.keys.batch(batchId));
    this.expire(multi, this.keys.batchJobs(batchId));
    await multi.exec();
  }

  /**
   * Marks these members as gathered by their batch's parent (`then`): each counts itself as ended
   * when its final record is written (see FINISHED in scheduling/scripts.ts). Before their jobs are added.
   */
  async markGathered(batchId: string, jobIds: readonly string[]): Promise<void> {
    if (jobIds.length === 0) return;
    const multi = this.redis.multi();
    for (const id of jobIds) {
      if (this.ttlMs > 0) multi.set(`${this.keys.sched}gather:${id}`, batchId, "PX", this.ttlMs);
      else multi.set(`${this.keys.sched}gather:${id}`, batchId);
    }
    await multi.exec();
  }

  /** Every member of a gathered batch was added: its parent may start once `total` of them have ended. */
  async gatherTotal(batchId: string, total: number): Promise<void> {
    const key = `${this.keys.sched}gtotal:${batchId}`;
    if (this.ttlMs > 0) await this.redis.set(key, total, "PX", this.ttlMs);
    else await this.redis.set(key, total);
  }

  /** Which of these job IDs are already members (a crashed submission got that far). */
  async members(batchId: string, jobIds: readonly string[]): Promise<Set<string>> {
    if (jobIds.length === 0) return new Set();
    const scores = await this.redis.zmscore(this.keys.batchJobs(batchId), ...jobIds);
    return new Set(jobIds.filter((_, i) => scores[i] !== null));
  }

  /** Which of these job IDs BullMQ holds or have a result record (removed from BullMQ since). */
  async existing(jobIds: readonly string[]): Promise<Set<string>> {
    if (jobIds.length === 0) return new Set();
    const pipe = this.redis.pipeline();
    for (const id of jobIds) pipe.exists(this.jobKey(id), this.keys.result(id));
    const replies = (await pipe.exec()) ?? [];
    return new Set(jobIds.filter((_, i) => Number(replies[i]?.[1] ?? 0) > 0));
  }

  async count(batchId: string): Promise<number> {
    return this.redis.zcard(this.keys.batchJobs(batchId));
  }

  /** Members in line order, `size` at a time. */
  memberChunks(batchId: string, size = 2_000): AsyncIterable<BatchMember[]> {
    return batchMemberChunks(this.redis, this.keys.batchJobs(batchId), size);
  }

  /** The states of these jobs (see STATES_SCRIPT), in order. */
  async states(jobIds: readonly string[]): Promise<MemberState[]> {
    const out: MemberState[] = [];
    const STEP = 500;
    for (let i = 0; i < jobIds.length; i += STEP) {
      const ids = jobIds.slice(i, i + STEP);
      const keys = [this.failedKey, ...ids.map((id) => this.keys.result(id)), ...ids.map((id) => this.jobKey(id))];
      const reply = (await this.redis.eval(STATES_SCRIPT, keys.length, ...keys, ...ids)) as string[];
      out.push(...(reply as MemberState[]));
    }
    return out;
  }

  private expire(multi: ReturnType<Redis["multi"]>, key: string): void {
    if (this.ttlMs > 0) multi.pexpire(key, this.ttlMs);
  }
}

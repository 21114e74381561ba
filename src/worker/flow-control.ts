import type { Redis } from "ioredis";
import type { QueueKeys } from "../shared/keys.js";
import { limitsFor, type FlowSettings } from "../shared/flow-limits.js";

export type { FlowSettings };

/**
 * Takes every slot a job needs in one Lua call, or none: concurrency slots are sorted sets of
 * job IDs scored by lease expiry (a crashed worker's slots expire with the job's timeout); rate
 * limits are counters per fixed window. Returns 0 when all were taken, else the ms to wait.
 */
const ACQUIRE = `
local now = tonumber(ARGV[1])
local job = ARGV[2]
local expiry = tonumber(ARGV[3])
local nslots = tonumber(ARGV[4])
local i = 5
for k = 1, nslots do
  local key = KEYS[k]
  local limit = tonumber(ARGV[i]); i = i + 1
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, job) and redis.call('ZCARD', key) >= limit then
    return 250
  end
end
local nrates = tonumber(ARGV[i]); i = i + 1
for r = 1, nrates do
  local key = KEYS[nslots + r]
  local limit = tonumber(ARGV[i]); local ttl = tonumber(ARGV[i + 1]); i = i + 2
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= limit then
    local left = redis.call('PTTL', key)
    if left < 1 then left = ttl end
    return left
  end
end
for k = 1, nslots do redis.call('ZADD', KEYS[k], expiry, job) end
i = 5 + nslots + 1
for r = 1, nrates do
  local key = KEYS[nslots + r]
  local ttl = tonumber(ARGV[i + 1]); i = i + 2
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ttl) end
end
return 0
`;

export interface FlowRequest {
  jobId: string;
  model: string | undefined;
  concurrencyKey: string | undefined;
  /** How long the slots are held at most (the attempt's timeout plus a margin). */
  leaseMs: number;
}

export class FlowControl {
  constructor(
    private readonly redis: Redis,
    private readonly keys: QueueKeys,
    private readonly settings: FlowSettings,
  ) {}

  private slotKeys(req: FlowRequest): { keys: string[]; limits: number[] } {
    const keys: string[] = [];
    const limits: number[] = [];
    for (const l of limitsFor(this.settings.concurrency, req.model)) {
      keys.push(this.keys.flowSlots(`model:${l.pattern}`));
      limits.push(l.limit);
    }
    if (req.concurrencyKey) {
      keys.push(this.keys.flowSlots(`key:${req.concurrencyKey}`));
      limits.push(this.settings.keyConcurrency);
    }
    return { keys, limits };
  }

  /** Takes the job's slots; returns 0, or how long to wait before trying again (nothing is held then). */
  async acquire(req: FlowRequest, now = Date.now()): Promise<number> {
    const slots = this.slotKeys(req);
    const rates = limitsFor(this.settings.rate, req.model);
    if (slots.keys.length === 0 && rates.length === 0) return 0;
    const rateKeys = rates.map((l) => this.keys.flowRate(`model:${l.pattern}`, Math.floor(now / l.periodMs!)));
    const args: (string | number)[] = [now, req.jobId, now + req.leaseMs, slots.keys.length, ...slots.limits, rates.length];
    for (const l of rates) args.push(l.limit, l.periodMs! - (now % l.periodMs!));
    const wait = (await this.redis.eval(ACQUIRE, slots.keys.length + rateKeys.length, ...slots.keys, ...rateKeys, ...args)) as number;
    return wait;
  }

  async release(req: FlowRequest): Promise<void> {
    const { keys } = this.slotKeys(req);
    if (keys.length === 0) return;
    const multi = this.redis.multi();
    for (const key of keys) multi.zrem(key, req.jobId);
    await multi.exec();
  }
}

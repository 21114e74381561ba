import type { Redis } from "ioredis";
import type { ControlMessage } from "../../shared/cancel.js";
import type { QueueKeys } from "../../shared/keys.js";
import type { Logger } from "../../shared/logger.js";
import type { Progress } from "../../shared/result.js";
import { BudgetExceededError } from "../failures.js";

/**
 * Adds what a member spent to its batch's total (fields of the batch hash) and, the first time
 * the total passes the batch's budget, records why and tells every worker on the control channel.
 * KEYS: batch hash. ARGV: tokens, cost, channel, batch ID. Returns why the batch stopped, or false.
 * A batch whose hash has expired is left alone.
 */
const SPEND = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local tokens = redis.call('HINCRBY', KEYS[1], 'spentTokens', ARGV[1])
local cost = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 'spentCost', ARGV[2]))
local over = redis.call('HGET', KEYS[1], 'exceeded')
if over then return over end
local maxCost = redis.call('HGET', KEYS[1], 'maxCost')
local maxTokens = redis.call('HGET', KEYS[1], 'maxTokens')
local why = false
if maxCost and cost > tonumber(maxCost) then
  why = string.format('batch budget exceeded: its tasks spent $%.4f of --max-cost $%s', cost, maxCost)
elseif maxTokens and tokens > tonumber(maxTokens) then
  why = string.format('batch budget exceeded: its tasks used %d tokens of --max-tokens %s', tokens, maxTokens)
end
if why then
  redis.call('HSET', KEYS[1], 'exceeded', why)
  redis.call('PUBLISH', ARGV[3], cjson.encode({ type = 'batch-budget', batchId = ARGV[4], message = why }))
end
return why
`;

/** What an attempt reports of its spend to its batch (see BatchBudgets.meter). */
export interface SpendMeter {
  /** The attempt's running totals so far (from its progress); sends what is new. */
  report(progress: Pick<Progress, "tokens" | "cost">): void;
  /** The attempt's final totals; sends what is new and stops following the batch. */
  settle(totals: { tokens: number; cost: number }): Promise<void>;
}

/**
 * The budgets of batches submitted with `maxCost` / `maxTokens`, as one worker sees them: refuses
 * members of a batch that has passed its budget, counts what running members spend, and stops them
 * all (on every worker) once the batch's total passes it.
 */
export class BatchBudgets {
  /** Running attempts by batch: how to stop each. */
  private readonly running = new Map<string, Set<(why: string) => void>>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: QueueKeys,
    private readonly log: Logger,
  ) {}

  /** Why the batch stopped, when it has passed its budget; else null. */
  exceeded(batchId: string): Promise<string | null> {
    return this.redis.hget(this.keys.batch(batchId), "exceeded");
  }

  /** A control message said the batch passed its budget: stops its members running here. */
  stop(message: Extract<ControlMessage, { type: "batch-budget" }>): void {
    const members = this.running.get(message.batchId);
    if (!members?.size) return;
    this.log.info(
      { batchId: message.batchId, running: members.size },
      "the batch passed its budget; stopping its running tasks",
    );
    for (const stop of members) stop(message.message);
  }

  /**
   * After the control channel was away (its messages missed): stops the running members of every
   * batch that passed its budget meanwhile.
   */
  async recheck(): Promise<void> {
    for (const batchId of [...this.running.keys()]) {
      const why = await this.exceeded(batchId).catch(() => null);
      if (why) this.stop({ type: "batch-budget", batchId, message: why });
    }
  }

  /**
   * Follows one attempt of a member: `abort` stops it once the batch passes its budget (here or on
   * another worker). Spend is sent in order, one call at a time.
   */
  meter(batchId: string, abort: (error: BudgetExceededError) => void): SpendMeter {
    const stop = (why: string) => abort(new BudgetExceededError(why));
    const members = this.running.get(batchId) ?? new Set();
    members.add(stop);
    this.running.set(batchId, members);
    const sent = { tokens: 0, cost: 0 };
    let queue: Promise<void> = Promise.resolve();
    const send = (tokens: number, cost: number) => {
      const dTokens = Math.round(tokens - sent.tokens);
      const dCost = cost - sent.cost;
      if (dTokens <= 0 && dCost <= 0) return queue;
      sent.tokens += dTokens;
      sent.cost = cost;
      queue = queue
        .then(async () => {
          const why = await this.redis.eval(
            SPEND,
            1,
            this.keys.batch(batchId),
            dTokens,
            dCost,
            this.keys.control,
            batchId,
          );
          if (typeof why === "string") stop(why);
        })
        .catch((error: unknown) =>
          this.log.warn({ err: error, batchId }, "could not count a task's spend for its batch"),
        );
      return queue;
    };
    return {
      report: (progress) => void send(progress.tokens, progress.cost),
      settle: async (totals) => {
        members.delete(stop); // it has ended: what it spent last may stop the others, not itself
        if (members.size === 0) this.running.delete(batchId);
        await send(totals.tokens, totals.cost);
      },
    };
  }
}

import { createHash } from "node:crypto";
import { Job, type Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { QueueKeys } from "../shared/keys.js";
import type { FlowSettings } from "../shared/flow-limits.js";
import type { Logger } from "../shared/logger.js";
import { describeWait, PLACEMENT_GRACE_MS, type Gate } from "./gates.js";
import { ADMIT, ENDED, FINISHED, HOLD, LANE, LANED, PARKED, RELEASE, RENEW, SWEEP } from "./scripts.js";

/** A parked job sleeps at most this long before it looks again by itself (a backstop only). */
export const PARK_BACKSTOP_MS = 3_600_000;
/** A job waiting in a fair lane is due by itself only after this long (it then skips the line). */
export const LANE_BACKSTOP_MS = 7 * 86_400_000;
/** The group of a task given none that is not in a batch. */
export const DEFAULT_GROUP = "default";
/** A woken job not promoted after this long (its waker died in between) is promoted by the sweep. */
const STALE_PROMOTION_MS = 10_000;
/** The longest period a provider's rate is learned over (and how long its starts are remembered). */
export const MAX_QUOTA_PERIOD_MS = 10 * 60_000;

/** A job about to be added, as fair share sees it. */
export interface LaneJob {
  jobId: string;
  group: string;
  priority: number;
  /** With the key, what concurrency caps apply (a capped job waits at its cap from its lane). */
  model?: string | undefined;
  concurrencyKey?: string | undefined;
}

export type Admission = { admitted: true } | { admitted: false; gate: string; why: string; delayUntil: number };

export interface WaitInfo {
  gate: string;
  /** In words: `waiting for job X`, `waiting for a slot of anthropic (4/4)`, `provider p held until …`. */
  waitingFor: string;
}

/**
 * The scheduling core: decides whether a job may start now and wakes waiting jobs when what
 * they wait for frees up. Waiting costs nothing while it lasts: a parked job sits in BullMQ's
 * delayed set until it is promoted (see scripts.ts for the protocol and the keys).
 */
export class Scheduler {
  private readonly seqKey: string;
  private readonly base: [string, string];
  private readonly shas = new Map<string, string>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: QueueKeys,
    private readonly queue: Queue,
    /** At most this many jobs wait ready in the queue; the rest wait in their group's lane (DISPATCH_FAIR_WINDOW). */
    private readonly window: number,
    private readonly log?: Logger,
  ) {
    this.seqKey = `${keys.sched}seq`;
    this.base = [keys.sched, keys.bull];
  }

  /** Admits the attempt (taking its leases) or parks the job's place at the gate that holds it. */
  async admit(
    jobId: string,
    member: string,
    gates: readonly Gate[],
    leaseMs: number,
    now = Date.now(),
  ): Promise<Admission> {
    const args: (string | number)[] = [
      jobId,
      member,
      now + leaseMs,
      now + PARK_BACKSTOP_MS,
      this.keys.result(""),
      this.window,
      gates.length,
    ];
    for (const g of gates) args.push(g.kind, g.name, g.a, g.b);
    const reply = (await this.run(ADMIT, now, args)) as (string | number)[];
    if (reply[0] === 1) {
      await this.promote(reply.slice(1) as string[]);
      return { admitted: true };
    }
    await this.promote(reply.slice(4) as string[]);
    return { admitted: false, gate: String(reply[1]), why: String(reply[2]), delayUntil: Number(reply[3]) };
  }

  /**
   * Decides for jobs about to be added whether they go straight into the queue or wait in their
   * group's fair lane; returns the IDs of those to add parked (delayed by LANE_BACKSTOP_MS).
   */
  async lanes(jobs: readonly LaneJob[]): Promise<Set<string>> {
    const args: (string | number)[] = [this.window, jobs.length];
    for (const j of jobs) args.push(j.jobId, j.group, j.priority, j.model ?? "", j.concurrencyKey ?? "");
    const reply = (await this.run(LANE, Date.now(), args)) as number[];
    return new Set(jobs.filter((_, i) => reply[i] === 0).map((j) => j.jobId));
  }

  /** The jobs `lanes` parked are in the delayed set: promote those let in meanwhile. */
  async laned(jobIds: readonly string[]): Promise<void> {
    await this.promote((await this.run(LANED, Date.now(), [this.window, ...jobIds])) as string[]);
  }

  /**
   * Publishes this worker's concurrency caps, so jobs in the fair lanes whose cap is full wait at
   * that cap straight away. Every worker of a queue should run with the same caps.
   */
  async publishCaps(flow: FlowSettings): Promise<void> {
    const key = `${this.keys.sched}caps`;
    const fields: (string | number)[] = ["k:", flow.keyConcurrency];
    for (const l of flow.concurrency) fields.push(`m:${l.pattern}`, l.limit);
    await this.redis
      .multi()
      .del(key)
      .hset(key, ...fields)
      .exec();
  }

  /** The job is in the delayed set now; true when it was woken on its way there (promote it). */
  async parked(jobId: string): Promise<boolean> {
    return (await this.run(PARKED, Date.now(), [jobId])) === 1;
  }

  /** Gives back an attempt's leases and wakes the jobs waiting for them. */
  async release(member: string, gates: readonly Gate[]): Promise<void> {
    const args: (string | number)[] = [member, gates.length];
    for (const g of gates) args.push(g.name, g.a);
    await this.promote((await this.run(RELEASE, Date.now(), args)) as string[]);
  }

  /** Extends leases (each attempt's member with its gates); returns the members whose lease had lapsed. */
  async renew(held: ReadonlyMap<string, readonly Gate[]>, leaseMs: number): Promise<string[]> {
    const now = Date.now();
    const args: (string | number)[] = [now + leaseMs];
    for (const [member, gates] of held) for (const g of gates) args.push(g.name, member);
    if (args.length === 1) return [];
    return (await this.run(RENEW, now, args)) as string[];
  }

  /** A job has its final record: its follow-ups may start. */
  async finished(jobId: string): Promise<void> {
    await this.promote((await this.run(FINISHED, Date.now(), [jobId])) as string[]);
  }

  /**
   * Counts members of gathered batch `batch` as ended (found so by their records, see ENDED) and
   * wakes its parent once every member has; with no members, only wakes it if all have ended.
   */
  async ended(batch: string, jobIds: readonly string[]): Promise<void> {
    await this.promote((await this.run(ENDED, Date.now(), [batch, ...jobIds])) as string[]);
  }

  /**
   * Holds a provider for every worker until `untilMs` and learns its rate from the calls it took
   * lately (the attempt `member` was turned away); returns the learned limit per period.
   */
  async hold(provider: string, untilMs: number, member: string): Promise<number> {
    return (await this.run(HOLD, Date.now(), [provider, untilMs, MAX_QUOTA_PERIOD_MS, member])) as number;
  }

  /** Counts one more time a provider turned this job away (kept a day); returns the count. */
  async turnedAway(jobId: string): Promise<number> {
    const key = `${this.keys.sched}holds:${jobId}`;
    const replies = await this.redis.multi().incr(key).pexpire(key, 86_400_000).exec();
    return Number(replies?.[0]?.[1] ?? 0);
  }

  /** Wakes what is free again but has no one left to wake it; run now and then by every worker. */
  async sweep(): Promise<number> {
    const woken = (await this.run(SWEEP, Date.now(), [
      this.keys.result(""),
      PLACEMENT_GRACE_MS,
      STALE_PROMOTION_MS,
      this.window,
    ])) as string[];
    await this.promote(woken);
    return woken.length;
  }

  /** What a waiting job waits for, or null when it waits for nothing of ours. */
  async waitingFor(jobId: string, delay?: number): Promise<WaitInfo | null> {
    const [gate, why, until] = await this.redis.hmget(`${this.keys.sched}j:${jobId}`, "at", "why", "until");
    if (!gate || !why)
      return delay === LANE_BACKSTOP_MS ? { gate: "lane", waitingFor: describeWait("l:", "", 0) } : null;
    const untilMs = Number(until ?? 0);
    const held = gate.startsWith("h:")
      ? Number((await this.redis.get(`${this.keys.sched}hold:${gate.slice(2)}`)) ?? 0)
      : 0;
    return { gate, waitingFor: describeWait(gate, why, Math.max(untilMs, held)) };
  }

  /** Moves woken jobs from the delayed set to the queue (one that is no longer delayed is skipped). */
  async promote(jobIds: readonly string[]): Promise<void> {
    await Promise.all(
      jobIds.map(async (id) => {
        try {
          await new Job(this.queue, "dispatch", {}, {}, id).promote();
        } catch (error) {
          this.log?.debug({ jobId: id, err: error }, "woken job was no longer delayed");
        }
      }),
    );
  }

  /** EVALSHA, and EVAL the first time a Redis node lacks the script (EVAL caches it there). */
  private async run(script: string, now: number, args: readonly (string | number)[]): Promise<unknown> {
    const argv = [...this.base, now, ...args];
    let sha = this.shas.get(script);
    if (!sha) this.shas.set(script, (sha = createHash("sha1").update(script).digest("hex")));
    try {
      return await this.redis.evalsha(sha, 1, this.seqKey, ...argv);
    } catch (error) {
      if (!String((error as Error).message).includes("NOSCRIPT")) throw error;
      return this.redis.eval(script, 1, this.seqKey, ...argv);
    }
  }
}

import type { Logger } from "../shared/logger.js";
import type { Gate } from "./gates.js";
import type { Scheduler } from "./scheduler.js";

/**
 * Keeps a worker's leases alive: every slot an attempt holds expires `leaseMs` after its last
 * renewal, so the slots of a worker that died are free again within that time (the sweep wakes
 * their waiters). Renews every third of the lease, and runs the scheduler's sweep on the same
 * beat. `close()` is idempotent.
 */
export class LeaseKeeper {
  private readonly held = new Map<string, Gate[]>();
  private readonly timer: NodeJS.Timeout;
  private ticking = false;
  private closed = false;

  constructor(
    private readonly scheduler: Scheduler,
    readonly leaseMs: number,
    private readonly log: Logger,
    beatMs = Math.min(5_000, Math.max(500, Math.floor(leaseMs / 3))),
  ) {
    this.timer = setInterval(() => void this.tick(), beatMs).unref();
  }

  /** Keeps `member`'s leases of these gates alive until the returned function is called. */
  track(member: string, gates: readonly Gate[]): () => void {
    if (gates.length > 0) this.held.set(member, [...gates]);
    return () => this.held.delete(member);
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.closed) return;
    this.ticking = true;
    try {
      for (const member of new Set(await this.scheduler.renew(this.held, this.leaseMs))) {
        this.log.warn(
          { jobId: member.split("@")[0] },
          "a flow-control lease had lapsed; its slot may be taken by another job",
        );
      }
      await this.scheduler.sweep();
    } catch (error) {
      this.log.debug({ err: error }, "lease renewal or sweep failed; trying again on the next beat");
    } finally {
      this.ticking = false;
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.held.clear();
  }
}

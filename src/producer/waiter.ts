import { NotFinishedError, NotFoundError } from "../shared/errors.js";
import { isFinal } from "../shared/job-state.js";
import type { ResultRecord } from "../shared/result.js";
import { setLongTimeout, type LongTimeout } from "../shared/timers.js";
import type { EventBus } from "./events.js";

interface Pending {
  resolve(record: ResultRecord): void;
  stop(why: string): void;
  vanished(): void;
}

/** What `finalRecord` says of a job that is neither in the queue nor has a record. */
export const VANISHED = "vanished" as const;

/**
 * Waits for jobs to finish on the dispatcher's one events subscription (see EventBus): a
 * published final state triggers one read of the job, and nothing else is read while it waits.
 * After the subscription was lost and came back, every pending job is read again (its event may
 * have been missed); a slow sweep does the same as a last resort. A job that vanished (removed
 * with no record) ends the wait with NotFoundError, once it is seen gone twice.
 */
export class Waiter {
  private readonly pending = new Map<string, Set<Pending>>();
  private readonly vanishing = new Set<string>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;

  constructor(
    private readonly bus: EventBus,
    /** Returns the job's final record, null while it is unfinished, VANISHED when it is nowhere. */
    private readonly finalRecord: (jobId: string) => Promise<ResultRecord | null | typeof VANISHED>,
    private readonly sweepMs = 60_000,
    /** How soon a job seen gone is looked at again before the wait gives up on it. */
    private readonly recheckMs = 1_000,
  ) {}

  private start(): Promise<void> {
    if (!this.unlisten) {
      const offEvent = this.bus.listen((event) => {
        if (isFinal(event.state) && this.pending.has(event.jobId)) void this.check(event.jobId);
      });
      const offReconnect = this.bus.onReconnect(
        () => void Promise.all([...this.pending.keys()].map((id) => this.check(id))),
      );
      this.unlisten = () => {
        offEvent();
        offReconnect();
      };
    }
    return this.bus.ready();
  }

  private async check(jobId: string): Promise<void> {
    let record: ResultRecord | null | typeof VANISHED = null;
    try {
      record = await this.finalRecord(jobId);
    } catch {
      return; // Redis away: checked again once the subscription is back
    }
    if (record === VANISHED) {
      if (!this.vanishing.has(jobId)) {
        // Cancelling removes the job a moment before it writes the record: look once more.
        this.vanishing.add(jobId);
        setTimeout(() => void this.check(jobId), this.recheckMs).unref();
        return;
      }
      this.vanishing.delete(jobId);
      const waiters = this.pending.get(jobId);
      this.pending.delete(jobId);
      waiters?.forEach((w) => w.vanished());
      this.schedule();
      return;
    }
    this.vanishing.delete(jobId);
    if (!record) return;
    const waiters = this.pending.get(jobId);
    this.pending.delete(jobId);
    waiters?.forEach((w) => w.resolve(record));
    this.schedule();
  }

  private schedule(): void {
    if (this.pending.size === 0) {
      clearTimeout(this.sweepTimer);
      this.sweepTimer = undefined;
      return;
    }
    this.sweepTimer ??= setTimeout(() => {
      this.sweepTimer = undefined;
      // check() keeps Redis errors to itself; the sweep re-arms whatever a waiter's callback threw.
      void Promise.allSettled([...this.pending.keys()].map((id) => this.check(id))).then(() => this.schedule());
    }, this.sweepMs).unref();
  }

  /** Something happened to the job outside our events (BullMQ removed it): read it again. */
  recheck(jobId: string): void {
    if (this.pending.has(jobId)) void this.check(jobId);
  }

  /**
   * Resolves with the job's final record; rejects with NotFinishedError on timeout or abort,
   * NotFoundError when the job was removed without a record.
   */
  async wait(jobId: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ResultRecord> {
    opts.signal?.throwIfAborted();
    await this.start();
    return new Promise<ResultRecord>((resolve, reject) => {
      let timer: LongTimeout | undefined;
      const stop = (why: string) => {
        cleanup();
        reject(new NotFinishedError(`job ${jobId} did not finish: ${why}`));
      };
      const entry: Pending = {
        resolve: (record) => {
          cleanup();
          resolve(record);
        },
        stop,
        vanished: () => {
          cleanup();
          reject(new NotFoundError(`job ${jobId} was removed from the queue before it finished: it has no result`));
        },
      };
      const onAbort = () => stop("the wait was aborted");
      const cleanup = () => {
        timer?.clear();
        opts.signal?.removeEventListener("abort", onAbort);
        const set = this.pending.get(jobId);
        set?.delete(entry);
        if (set?.size === 0) this.pending.delete(jobId);
      };
      if (opts.timeoutMs !== undefined)
        timer = setLongTimeout(() => stop(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      const set = this.pending.get(jobId) ?? new Set<Pending>();
      set.add(entry);
      this.pending.set(jobId, set);
      void this.check(jobId);
      this.schedule();
    });
  }

  close(): void {
    this.unlisten?.();
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    const entries = [...this.pending.values()].flatMap((set) => [...set]);
    this.pending.clear();
    for (const entry of entries) entry.stop("the dispatcher was closed");
  }
}

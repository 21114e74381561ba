import { NotFinishedError } from "../shared/errors.js";
import { FINAL_STATES, type ResultRecord } from "../shared/result.js";
import type { EventBus } from "./events.js";

interface Pending {
  resolve(record: ResultRecord): void;
  stop(why: string): void;
}

/**
 * Waits for jobs to finish on the dispatcher's one events subscription (see EventBus). A
 * published state event triggers a read of the job; a slow sweep re-checks every pending job in case an event
 * was missed (published before we subscribed, or lost while reconnecting).
 */
export class Waiter {
  private readonly pending = new Map<string, Set<Pending>>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;

  constructor(
    private readonly bus: EventBus,
    /** Returns the job's final record, or null while it is unfinished. */
    private readonly finalRecord: (jobId: string) => Promise<ResultRecord | null>,
    private readonly sweepMs = 2_000,
  ) {}

  private start(): Promise<void> {
    this.unlisten ??= this.bus.listen((event) => {
      if (FINAL_STATES.has(event.state) && this.pending.has(event.jobId)) void this.check(event.jobId);
    });
    return this.bus.ready();
  }

  private async check(jobId: string): Promise<void> {
    let record: ResultRecord | null = null;
    try {
      record = await this.finalRecord(jobId);
    } catch {
      return; // Redis away: the sweep tries again
    }
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
    this.sweepTimer ??= setTimeout(async () => {
      this.sweepTimer = undefined;
      await Promise.all([...this.pending.keys()].map((id) => this.check(id)));
      this.schedule();
    }, this.sweepMs).unref();
  }

  /** Resolves with the job's final record; rejects with NotFinishedError on timeout or abort. */
  async wait(jobId: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ResultRecord> {
    opts.signal?.throwIfAborted();
    await this.start();
    return new Promise<ResultRecord>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
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
      };
      const onAbort = () => stop("the wait was aborted");
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        const set = this.pending.get(jobId);
        set?.delete(entry);
        if (set?.size === 0) this.pending.delete(jobId);
      };
      if (opts.timeoutMs !== undefined) timer = setTimeout(() => stop(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);
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

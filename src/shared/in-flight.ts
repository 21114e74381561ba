/**
 * At most `size` writes in flight: while Redis runs one chunk's commands, the producer packs the
 * next (two chunks in flight enqueue ~1.5× faster than one at a time on 2 cores). A write that
 * fails surfaces on the next `add` or `drain`; nothing is left unobserved.
 */
export class InFlight {
  private readonly pending: Promise<unknown>[] = [];

  constructor(private readonly size: number) {}

  /** Waits for a free place, then starts the write. */
  async add(start: () => Promise<unknown>): Promise<void> {
    while (this.pending.length >= this.size) await this.pending.shift();
    const write = start();
    write.catch(() => undefined); // observed when awaited in add/drain; never an unhandled rejection
    this.pending.push(write);
  }

  /** Waits for every write started so far (the first failure is thrown). */
  async drain(): Promise<void> {
    while (this.pending.length) await this.pending.shift();
  }
}

/**
 * At most `size` writes in flight: while Redis runs one chunk's commands, the producer packs the
 * next (two chunks in flight enqueue ~1.5× faster than one at a time on 2 cores). After a write
 * fails no new write starts: the next `add` or `drain` waits for the writes still running, then
 * throws the first failure.
 */
export class InFlight {
  private readonly pending: Promise<unknown>[] = [];
  private failure: { error: unknown } | undefined;

  constructor(private readonly size: number) {}

  /** Waits for a free place, then starts the write. */
  async add(start: () => Promise<unknown>): Promise<void> {
    while (this.pending.length >= this.size) await this.settleOldest();
    await this.throwIfFailed();
    const write = start();
    write.catch((error: unknown) => (this.failure ??= { error }));
    this.pending.push(write);
  }

  /** Waits for every write started so far (the first failure is thrown). */
  async drain(): Promise<void> {
    while (this.pending.length) await this.settleOldest();
    await this.throwIfFailed();
  }

  private async settleOldest(): Promise<void> {
    await this.pending.shift()!.catch(() => undefined);
    await this.throwIfFailed();
  }

  private async throwIfFailed(): Promise<void> {
    if (!this.failure) return;
    await Promise.allSettled(this.pending.splice(0));
    throw this.failure.error;
  }
}

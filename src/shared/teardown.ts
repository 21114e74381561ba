/**
 * Cleanups collected as resources are acquired and run in reverse, each one whatever the others
 * did: the same list serves a start that failed half-way and a close. `run` returns the same
 * promise when called again, so a cleanup never runs twice.
 */
export class Teardown {
  private readonly steps: { what: string; step: () => unknown }[] = [];
  private running: Promise<void> | undefined;

  /** `onError` hears of each cleanup that threw (the rest still run). */
  constructor(private readonly onError: (what: string, error: unknown) => void) {}

  /** Adds a cleanup; it runs before every cleanup added earlier. */
  push(what: string, step: () => unknown): void {
    if (this.running) throw new Error(`teardown already running: cannot add "${what}"`);
    this.steps.push({ what, step });
  }

  run(): Promise<void> {
    return (this.running ??= (async () => {
      for (const { what, step } of [...this.steps].reverse()) {
        try {
          await step();
        } catch (error) {
          this.onError(what, error);
        }
      }
    })());
  }
}

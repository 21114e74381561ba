/**
 * Timers for any duration the project accepts. Node's timers take at most 2^31-1 ms (24.8 days);
 * a longer delay fires after 1 ms instead (with only a warning), so `--timeout 30d` would end every
 * attempt at once. These chain timers of at most that length.
 */

/** The longest delay one Node timer takes, in ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface LongTimeout {
  clear(): void;
  /** Lets the process exit while the timer runs (Node's `unref`). */
  unref(): LongTimeout;
}

/** Calls `fn` once `ms` have passed, for any `ms` (see above). */
export function setLongTimeout(fn: () => void, ms: number): LongTimeout {
  let remaining = Math.max(0, ms);
  let weak = false;
  let timer: NodeJS.Timeout;
  const arm = () => {
    const step = Math.min(remaining, MAX_TIMER_MS);
    timer = setTimeout(() => {
      remaining -= step;
      if (remaining > 0) arm();
      else fn();
    }, step);
    if (weak) timer.unref();
  };
  arm();
  const handle: LongTimeout = {
    clear: () => clearTimeout(timer),
    unref: () => {
      weak = true;
      timer.unref();
      return handle;
    },
  };
  return handle;
}

/**
 * A signal that aborts with a `TimeoutError` (as `AbortSignal.timeout` does) once `ms` have
 * passed, for any `ms`; `clear()` stops the timer once the work it bounds is done.
 */
export function abortAfter(ms: number): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = setLongTimeout(
    () => controller.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
    ms,
  ).unref();
  return { signal: controller.signal, clear: () => timer.clear() };
}

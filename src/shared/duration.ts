/**
 * Durations on the command line and in the environment: a number of milliseconds ("1500") or a
 * number with a unit ("500ms", "30s", "10m", "2h", "1d").
 */
import { MAX_TIMER_MS } from "./timers.js";

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DAY = UNITS.d!;

/** The longest duration accepted unless a field says otherwise (timeouts, delays, grace, …): 365 days. */
export const MAX_DURATION_MS = 365 * DAY;

/** Bounds of one duration field: what it can mean. */
export interface DurationLimits {
  /** Smallest value, ms (default 0). */
  min?: number;
  /** Largest value, ms (default MAX_DURATION_MS). */
  max?: number;
}

/** Limits of durations that BullMQ hands to Node timers as they are (lock duration, stalled interval). */
export const TIMER_LIMITS: DurationLimits = { min: 1, max: MAX_TIMER_MS };

/**
 * Parses a duration and checks it against `limits`; the error says which limit it passed (the
 * caller names the field).
 */
export function parseDuration(input: string | number, limits: DurationLimits = {}): number {
  let ms: number;
  if (typeof input === "number") {
    if (!Number.isFinite(input) || input < 0) throw new Error(`invalid duration ${input}`);
    ms = Math.round(input);
  } else {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(input);
    if (!match) throw new Error(`invalid duration "${input}" (use e.g. 1500, 30s, 10m, 2h)`);
    const unit = (match[2] ?? "ms").toLowerCase();
    ms = Math.round(Number(match[1]) * (UNITS[unit] ?? 1));
  }
  const { min = 0, max = MAX_DURATION_MS } = limits;
  if (!Number.isSafeInteger(ms) || ms > max)
    throw new Error(`duration ${JSON.stringify(input)} is longer than the longest allowed, ${formatLimit(max)}`);
  if (ms < min)
    throw new Error(
      min === 1
        ? `duration ${JSON.stringify(input)} must be greater than zero`
        : `duration ${JSON.stringify(input)} is shorter than the shortest allowed, ${formatLimit(min)}`,
    );
  return ms;
}

/** A limit as the user would write it: whole days as `365d`, else milliseconds. */
function formatLimit(ms: number): string {
  if (ms % DAY === 0) return `${ms / DAY}d`;
  return ms === MAX_TIMER_MS ? `${ms} ms (24.8 days, the longest timer Node and BullMQ can set)` : `${ms} ms`;
}

/** A duration as it would be written ("15s", "24h", "1500ms"): the largest unit that fits it exactly. */
export function writtenDuration(ms: number): string {
  const unit = (["d", "h", "m", "s"] as const).find((u) => ms > 0 && ms % UNITS[u]! === 0);
  return unit ? `${ms / UNITS[unit]!}${unit}` : `${ms}ms`;
}

export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1_000);
  return seconds ? `${minutes}m${seconds}s` : `${minutes}m`;
}

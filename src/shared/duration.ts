/**
 * Durations on the command line and in the environment: a number of milliseconds ("1500") or a
 * number with a unit ("500ms", "30s", "10m", "2h", "1d").
 */
const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(input: string | number): number {
  if (typeof input === "number") {
    if (!Number.isFinite(input) || input < 0) throw new Error(`invalid duration ${input}`);
    return Math.round(input);
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(input);
  if (!match) throw new Error(`invalid duration "${input}" (use e.g. 1500, 30s, 10m, 2h)`);
  const unit = (match[2] ?? "ms").toLowerCase();
  return Math.round(Number(match[1]) * (UNITS[unit] ?? 1));
}

export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1_000);
  return seconds ? `${minutes}m${seconds}s` : `${minutes}m`;
}

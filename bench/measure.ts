/** Small measuring helpers for the benchmark: timing, percentiles, RSS sampling, a task pool. */
import { readFileSync } from "node:fs";

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1]!;
}

/** Runs `count` tasks with at most `concurrency` at once; resolves with the wall time in ms. */
export async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
  return performance.now() - started;
}

/** Resident set size of a process in bytes, from /proc (0 if it is gone). */
export function rssOf(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The direct children of a process. */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Samples the RSS of a set of processes every `everyMs`; `stop()` returns the peak of each. */
export function sampleRss(pids: () => Record<string, number | undefined>, everyMs = 100) {
  const peaks: Record<string, number> = {};
  const tick = () => {
    for (const [name, pid] of Object.entries(pids())) if (pid) peaks[name] = Math.max(peaks[name] ?? 0, rssOf(pid));
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    stop(): Record<string, number> {
      clearInterval(timer);
      tick();
      return peaks;
    },
  };
}

export const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
export const perSec = (count: number, ms: number) => (count * 1000) / ms;
export const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "-");

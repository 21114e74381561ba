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

/**
 * An HTTP proxy in front of an opencode server that counts the requests going through it, by
 * method and route (IDs replaced by `:id`); the event stream counts once per connection.
 */
export async function countingProxy(
  target: string,
): Promise<{ url: string; counts: Map<string, number>; total(): number; reset(): void; close(): Promise<void> }> {
  const { createServer, request } = await import("node:http");
  const upstream = new URL(target);
  const counts = new Map<string, number>();
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!.replace(/\/(ses|msg|prt|per|que)_[A-Za-z0-9]+/g, "/:id");
    const key = `${req.method} ${path}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    const forward = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    forward.on("error", () => res.destroy());
    req.pipe(forward);
    res.on("close", () => forward.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    total: () =>
      [...counts.entries()]
        .filter(([k]) => !k.endsWith("/global/event") && !k.endsWith("/global/health"))
        .reduce((a, [, n]) => a + n, 0),
    reset: () => counts.clear(),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

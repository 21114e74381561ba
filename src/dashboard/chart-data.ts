/**
 * The dashboard's four charts from minutes of data: jobs completed and failed per minute, cost per
 * model per hour, the duration distribution, and queue depth over time. The overview reads the
 * minutes from the queue's time series (shared/series.ts); a batch page makes them from its
 * members' records (pointsOfRecords).
 */
import { BUCKET_LABELS, durationBucket, emptyPoint, minuteOf, type SeriesPoint } from "../shared/series.js";
import type { ResultRecord } from "../shared/result.js";
import { PALETTE, dollars, hourLabel, lines, minuteLabel, stackedBars } from "./charts.js";

/** Merges consecutive minutes `k` at a time (sums; the largest depth sampled). */
export function binPoints(points: SeriesPoint[], k: number): SeriesPoint[] {
  if (k <= 1) return points;
  const out: SeriesPoint[] = [];
  for (let i = 0; i < points.length; i += k) {
    const bin = emptyPoint(points[i]!.minute);
    for (const p of points.slice(i, i + k)) {
      bin.completed += p.completed;
      bin.failed += p.failed;
      p.durations.forEach((n, b) => (bin.durations[b]! += n));
      for (const [model, cost] of Object.entries(p.cost)) bin.cost[model] = (bin.cost[model] ?? 0) + cost;
      if (p.waiting !== null) bin.waiting = Math.max(bin.waiting ?? 0, p.waiting);
      if (p.running !== null) bin.running = Math.max(bin.running ?? 0, p.running);
    }
    out.push(bin);
  }
  return out;
}

/**
 * Minutes from `fromMs` to `toMs` made from records: finishes, durations and cost in the minute a
 * record finished; waiting and running: the jobs that waited, and ran, during each minute (from
 * when each was enqueued, started and finished; `unstarted` more jobs wait from `fromMs` on).
 */
export function pointsOfRecords(
  records: readonly ResultRecord[],
  unstarted: number,
  fromMs: number,
  toMs: number,
): SeriesPoint[] {
  const first = minuteOf(fromMs);
  const count = Math.max(1, minuteOf(toMs) - first + 1);
  const points = Array.from({ length: count }, (_, i) => emptyPoint(first + i));
  const waiting = new Array<number>(count + 1).fill(0);
  const running = new Array<number>(count + 1).fill(0);
  const at = (iso: string | null) => {
    const ms = Date.parse(iso ?? "");
    return Number.isFinite(ms) ? Math.min(count, Math.max(0, minuteOf(ms) - first)) : null;
  };
  const span = (into: number[], from: number, to: number) => {
    if (to <= from) return;
    into[from]! += 1;
    into[to]! -= 1;
  };
  waiting[0]! += unstarted;
  for (const r of records) {
    const enqueued = at(r.enqueuedAt) ?? 0;
    const started = at(r.startedAt);
    const finished = r.state === "completed" || r.state === "failed" ? at(r.finishedAt) : null;
    span(waiting, enqueued, Math.min(count, (started ?? finished ?? count) + 1));
    if (started !== null) span(running, started, Math.min(count, (finished ?? count) + 1));
    if (finished === null || finished >= count) continue;
    const p = points[finished]!;
    if (r.state === "completed") p.completed += 1;
    else p.failed += 1;
    const bucket = durationBucket(r.durationMs);
    if (bucket !== "x") p.durations[Number(bucket)]! += 1;
    if (r.cost) p.cost[r.model ?? "default"] = (p.cost[r.model ?? "default"] ?? 0) + r.cost;
  }
  let w = 0;
  let a = 0;
  points.forEach((p, i) => {
    w += waiting[i]!;
    a += running[i]!;
    p.waiting = w;
    p.running = a;
  });
  return points;
}

/** Per-minute charts (throughput, depth) over `recent`, per-hour and overall ones (cost, durations) over `all`. */
export function chartsHtml(recent: SeriesPoint[], all: SeriesPoint[], binMinutes = 1): string {
  const label = (p: SeriesPoint) => minuteLabel(p.minute);
  const throughput = stackedBars({
    id: "throughput",
    title: `Jobs completed and failed per ${binMinutes === 1 ? "minute" : `${binMinutes} minutes`}`,
    labels: recent.map(label),
    series: [
      { name: "completed", color: PALETTE[0]!, values: recent.map((p) => p.completed) },
      { name: "failed", color: PALETTE[1]!, values: recent.map((p) => p.failed) },
    ],
  });
  const depth = lines({
    id: "depth",
    title: "Queue depth over time (jobs waiting, running)",
    labels: recent.map(label),
    series: [
      { name: "waiting", color: PALETTE[2]!, values: recent.map((p) => p.waiting) },
      { name: "running", color: PALETTE[3]!, values: recent.map((p) => p.running) },
    ],
  });
  const hours = new Map<number, Record<string, number>>();
  for (const p of all) {
    const hour = Math.floor(p.minute / 60);
    const into = hours.get(hour) ?? {};
    for (const [model, cost] of Object.entries(p.cost)) into[model] = (into[model] ?? 0) + cost;
    hours.set(hour, into);
  }
  const hourList = [...hours.keys()].sort((a, b) => a - b);
  const models = [...new Set(hourList.flatMap((h) => Object.keys(hours.get(h)!)))].sort();
  const cost = stackedBars({
    id: "cost",
    title: "Cost per model per hour",
    labels: hourList.map(hourLabel),
    series: models.map((model, i) => ({
      name: model,
      color: PALETTE[(i + 2) % PALETTE.length]!,
      values: hourList.map((h) => hours.get(h)![model] ?? 0),
    })),
    format: dollars,
  });
  const buckets = BUCKET_LABELS.map((_, b) => all.reduce((n, p) => n + (p.durations[b] ?? 0), 0));
  const durations = stackedBars({
    id: "durations",
    title: "Duration of finished jobs",
    labels: [...BUCKET_LABELS],
    series: [{ name: "jobs", color: PALETTE[2]!, values: buckets }],
  });
  return `<section class="charts" data-testid="charts">${throughput}${cost}${durations}${depth}</section>`;
}

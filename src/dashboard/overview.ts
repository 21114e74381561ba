/**
 * The home page: the queue's counts (live), pause / resume, its charts from the time series the
 * workers write (shared/series.ts: one pipelined read of the last day's minutes), and the newest batches.
 */
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { queueKeys } from "../shared/keys.js";
import { minuteOf, readSeries, type SeriesPoint } from "../shared/series.js";
import { progressBar } from "./batch-pages.js";
import type { BatchRow } from "./batches.js";
import { chartsHtml } from "./chart-data.js";
import { actionButton, esc, layout } from "./html.js";

/** Minutes the per-minute charts show; the per-hour ones show the whole series (a day). */
const RECENT_MINUTES = 60;
const DAY_MINUTES = 1_440;

export interface QueueOverview {
  counts: { waiting: number; prioritized: number; delayed: number; active: number; completed: number; failed: number };
  paused: boolean;
}

export async function queueOverview(queue: Queue): Promise<QueueOverview> {
  const [counts, paused] = await Promise.all([
    queue.getJobCounts("waiting", "prioritized", "delayed", "active", "completed", "failed"),
    queue.isPaused(),
  ]);
  const n = (state: string) => counts[state] ?? 0;
  return {
    counts: {
      waiting: n("waiting"),
      prioritized: n("prioritized"),
      delayed: n("delayed"),
      active: n("active"),
      completed: n("completed"),
      failed: n("failed"),
    },
    paused,
  };
}

/** The last day of the series, and its last hour. */
export async function recentSeries(
  redis: Redis,
  queue: string,
  now = Date.now(),
): Promise<{ day: SeriesPoint[]; hour: SeriesPoint[] }> {
  const to = minuteOf(now);
  const day = await readSeries(redis, queueKeys(queue), to - DAY_MINUTES + 1, to);
  return { day, hour: day.slice(-RECENT_MINUTES) };
}

export function overviewPage(
  queue: string,
  overview: QueueOverview,
  series: { day: SeriesPoint[]; hour: SeriesPoint[] },
  batches: BatchRow[],
  allowActions: boolean,
): string {
  const stat = (label: string, key: keyof QueueOverview["counts"]) =>
    `<div><span class="muted">${esc(label)}</span><b data-testid="queue-${key}" data-live-field="counts.${key}">${overview.counts[key]}</b></div>`;
  const stats = [
    stat("waiting", "waiting"),
    stat("prioritized", "prioritized"),
    stat("delayed", "delayed"),
    stat("running", "active"),
    stat("completed (kept by BullMQ)", "completed"),
    stat("failed (kept by BullMQ)", "failed"),
  ].join("");
  const actions = allowActions
    ? `<p class="actions">${overview.paused ? actionButton("/api/queue/resume", "Resume queue", "resume-queue") : actionButton("/api/queue/pause", "Pause queue", "pause-queue")}<span id="action-result" data-testid="action-result"></span></p>`
    : "";
  const recent = batches.length
    ? `<h2>Newest batches</h2><table><tbody>${batches
        .map(
          (b) =>
            `<tr><td><a href="/batches/${encodeURIComponent(b.status.batchId)}">${esc(b.status.batchId)}</a></td><td>${progressBar(b.shares)}</td><td>${b.status.counts.completed + b.status.counts.failed} / ${b.status.total}</td></tr>`,
        )
        .join("")}</tbody></table><p><a href="/batches">All batches</a></p>`
    : "";
  return layout(
    "Overview",
    queue,
    `<h1>Queue ${esc(queue)}</h1><p>State: <b data-testid="paused" data-live-field="state">${overview.paused ? "paused" : "running"}</b></p>
<section class="stats">${stats}</section>${actions}
<h2>Charts</h2><p class="muted">Per minute over the last hour, per hour over the last day (UTC), from the series workers write as jobs finish.</p>${chartsHtml(series.hour, series.day)}${recent}`,
    { liveSrc: "/api/overview" },
  );
}

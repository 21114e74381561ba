/**
 * Charts drawn on the server as inline SVG: they show without JavaScript and load nothing. Every
 * chart carries `data-chart` and `data-points` (bars above zero, line samples), every bar or point
 * `data-series` and `data-value`, so a test (or a script) can read what is drawn.
 */
import { esc } from "./html.js";

export interface Series {
  name: string;
  color: string;
  /** One value per label; null: no sample there (a line skips it). */
  values: (number | null)[];
}

export interface ChartSpec {
  /** What `data-chart` says (throughput, cost, durations, depth). */
  id: string;
  title: string;
  labels: string[];
  series: Series[];
  /** How a value is printed in tooltips and the axis. */
  format?: (value: number) => string;
}

const W = 560;
const H = 180;
const PAD = { left: 44, right: 8, top: 8, bottom: 34 };
export const PALETTE = ["#1a7f37", "#c62828", "#0969da", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#6e7781"];

const plain = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(2));

/** `points`: the values drawn (bars above zero, line samples). */
function frame(spec: ChartSpec, max: number, body: string, points: number): string {
  const format = spec.format ?? plain;
  const every = Math.max(1, Math.ceil(spec.labels.length / 8));
  const step = (W - PAD.left - PAD.right) / Math.max(1, spec.labels.length);
  const ticks = spec.labels
    .map((label, i) =>
      i % every === 0
        ? `<text x="${PAD.left + i * step + step / 2}" y="${H - PAD.bottom + 14}" text-anchor="middle">${esc(label)}</text>`
        : "",
    )
    .join("");
  const legend = spec.series
    .map(
      (s, i) =>
        `<rect x="${PAD.left + i * 110}" y="${H - 12}" width="9" height="9" fill="${s.color}"/><text x="${PAD.left + i * 110 + 13}" y="${H - 4}">${esc(s.name.slice(0, 16))}</text>`,
    )
    .join("");
  return `<figure class="chart"><figcaption>${esc(spec.title)}</figcaption>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="${esc(spec.title)}" data-chart="${esc(spec.id)}" data-points="${points}" font-size="10" fill="#57606a">
<line x1="${PAD.left}" y1="${H - PAD.bottom}" x2="${W - PAD.right}" y2="${H - PAD.bottom}" stroke="#d0d7de"/>
<text x="${PAD.left - 4}" y="${PAD.top + 8}" text-anchor="end">${esc(format(max))}</text><text x="${PAD.left - 4}" y="${H - PAD.bottom}" text-anchor="end">0</text>
${body}${ticks}${legend}${points === 0 ? `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" data-testid="chart-empty">no data yet</text>` : ""}</svg></figure>`;
}

/** Bars, the series stacked on each other. */
export function stackedBars(spec: ChartSpec): string {
  const format = spec.format ?? plain;
  const totals = spec.labels.map((_, i) => spec.series.reduce((sum, s) => sum + (s.values[i] ?? 0), 0));
  const max = Math.max(...totals, 0) || 1;
  const step = (W - PAD.left - PAD.right) / Math.max(1, spec.labels.length);
  const scale = (H - PAD.top - PAD.bottom) / max;
  let bars = "";
  spec.labels.forEach((label, i) => {
    let y = H - PAD.bottom;
    for (const s of spec.series) {
      const v = s.values[i] ?? 0;
      if (v <= 0) continue;
      const h = Math.max(1, v * scale);
      y -= h;
      bars += `<rect x="${(PAD.left + i * step + step * 0.1).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, step * 0.8).toFixed(1)}" height="${h.toFixed(1)}" fill="${s.color}" data-series="${esc(s.name)}" data-value="${v}"><title>${esc(`${label} ${s.name}: ${format(v)}`)}</title></rect>`;
    }
  });
  return frame(
    spec,
    max,
    bars,
    spec.series.reduce((n, s) => n + s.values.filter((v) => v !== null && v > 0).length, 0),
  );
}

/** Lines through the samples of each series (gaps where there is none). */
export function lines(spec: ChartSpec): string {
  const format = spec.format ?? plain;
  const max = Math.max(0, ...spec.series.flatMap((s) => s.values.map((v) => v ?? 0))) || 1;
  const step = (W - PAD.left - PAD.right) / Math.max(1, spec.labels.length);
  const scale = (H - PAD.top - PAD.bottom) / max;
  let body = "";
  for (const s of spec.series) {
    const at = s.values.map((v, i) =>
      v === null
        ? null
        : { x: PAD.left + i * step + step / 2, y: H - PAD.bottom - v * scale, v, label: spec.labels[i]! },
    );
    const path = at
      .map((p, i) => (p ? `${i > 0 && at[i - 1] ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}` : ""))
      .join("");
    if (path) body += `<path d="${path}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`;
    for (const p of at) {
      if (p)
        body += `<circle cx="${p.x.toFixed(1)}" cy="${p.y.toFixed(1)}" r="2.2" fill="${s.color}" data-series="${esc(s.name)}" data-value="${p.v}"><title>${esc(`${p.label} ${s.name}: ${format(p.v)}`)}</title></circle>`;
    }
  }
  return frame(
    spec,
    max,
    body,
    spec.series.reduce((n, s) => n + s.values.filter((v) => v !== null).length, 0),
  );
}

/** "HH:MM" (UTC) of a minute since the epoch. */
export const minuteLabel = (minute: number) => new Date(minute * 60_000).toISOString().slice(11, 16);
/** "HH:00" (UTC) of an hour since the epoch. */
export const hourLabel = (hour: number) => `${new Date(hour * 3_600_000).toISOString().slice(11, 13)}:00`;
export const dollars = (v: number) => `$${v < 0.01 && v > 0 ? v.toPrecision(2) : v.toFixed(2)}`;

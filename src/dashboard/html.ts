/** The dashboard's page frame and the small helpers every page uses. */
import { CLIENT_SCRIPT } from "./client.js";

/** Escapes text for HTML content and attribute values. */
export function esc(value: string | number | boolean | null | undefined): string {
  return String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.5rem;align-items:center;flex-wrap:wrap}
header a{color:#cfe0ff;text-decoration:none}header strong{margin-right:1rem}
main{padding:1rem 1.2rem}table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e6eb;vertical-align:top;font-size:.9rem}
th{background:#eef0f4}.state{font-weight:600}.completed{color:#1a7f37}.failed{color:#c62828}
.active,.retrying,.running{color:#9a6700}pre{white-space:pre-wrap;background:#fff;border:1px solid #e3e6eb;padding:.6rem;max-height:30rem;overflow:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:.3rem 1rem;background:#fff;padding:.8rem;border:1px solid #e3e6eb}
dt{font-weight:600}dd{margin:0}.muted{color:#6b7280}nav.filters a,nav.pager a{margin-right:.8rem}
.bar{display:flex;height:14px;min-width:12rem;background:#e3e6eb;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%}.bar .done{background:#1a7f37}.bar .failed{background:#c62828}
.bar .running{background:#d4a72c}.bar .queued{background:#afb8c1}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(26rem,1fr));gap:1rem}
figure.chart{margin:0;background:#fff;border:1px solid #e3e6eb;padding:.5rem}figcaption{font-weight:600;font-size:.9rem;margin-bottom:.3rem}
.turn{background:#fff;border:1px solid #e3e6eb;margin:.8rem 0;padding:.6rem .8rem}
.turn h3{margin:.2rem 0 .5rem;font-size:.95rem}.turn .who{font-weight:600;font-size:.8rem;text-transform:uppercase;color:#57606a}
.tool{font-family:ui-monospace,monospace;font-size:.82rem;background:#f6f8fa;border-left:3px solid #0969da;padding:.2rem .5rem;margin:.3rem 0}
.actions button{margin-right:.5rem}.stats{display:flex;gap:1.2rem;flex-wrap:wrap;margin:.6rem 0}
.stats div{background:#fff;border:1px solid #e3e6eb;padding:.4rem .7rem}.stats b{display:block;font-size:1.2rem}
`;

export interface LayoutOptions {
  /** A JSON route the page polls to update its `data-live-field` elements (see client.ts). */
  liveSrc?: string;
}

export function layout(title: string, queue: string, body: string, opts: LayoutOptions = {}): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)} · opencode-dispatch</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>${STYLE}</style></head>
<body${opts.liveSrc ? ` data-live-src="${esc(opts.liveSrc)}"` : ""}><header><strong>opencode-dispatch</strong><span class="muted">queue ${esc(queue)}</span>
<a href="/">Overview</a><a href="/results">Results</a><a href="/batches">Batches</a><a href="/queues">Queue (bull-board)</a></header><main>${body}</main>
<script>${CLIENT_SCRIPT}</script></body></html>`;
}

export const excerpt = (text: string | null, max = 80) =>
  text && text.length > max ? `${text.slice(0, max)}…` : (text ?? "");
export const money = (cost: number | null) => (cost == null ? "" : `$${cost.toFixed(4)}`);
export const jobLink = (jobId: string, testid = "") =>
  `<a href="/results/${encodeURIComponent(jobId)}"${testid ? ` data-testid="${testid}"` : ""}>${esc(jobId)}</a>`;
export const sessionLink = (sessionId: string | null) =>
  sessionId
    ? `<a href="/sessions/${encodeURIComponent(sessionId)}" data-testid="session-link">${esc(sessionId)}</a>`
    : "";

/** "1.2 s", "3 min 4 s", "2 h 5 min" */
export function duration(ms: number | null): string {
  if (ms == null || !Number.isFinite(ms)) return "—";
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1_000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

/**
 * A button that sends an action (POST of JSON to `path`) when the dashboard allows actions; the
 * token rides in the dashboard's SameSite cookie (see auth.ts).
 */
export const actionButton = (path: string, label: string, testid: string, body?: unknown) =>
  `<button type="button" data-action="${esc(path)}" data-testid="${esc(testid)}"${body === undefined ? "" : ` data-body="${esc(JSON.stringify(body))}"`}>${esc(label)}</button>`;

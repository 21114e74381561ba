import type { DashboardRecord, ResultPage } from "./results.js";

/** Escapes text for HTML content and attribute values. */
export function esc(value: unknown): string {
  return String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.5rem;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header strong{margin-right:1rem}
main{padding:1rem 1.2rem}table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e6eb;vertical-align:top;font-size:.9rem}
th{background:#eef0f4}.state{font-weight:600}.completed{color:#1a7f37}.failed{color:#c62828}
.active,.retrying{color:#9a6700}pre{white-space:pre-wrap;background:#fff;border:1px solid #e3e6eb;padding:.6rem;max-height:30rem;overflow:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:.3rem 1rem;background:#fff;padding:.8rem;border:1px solid #e3e6eb}
dt{font-weight:600}dd{margin:0}.muted{color:#6b7280}nav.filters a{margin-right:.8rem}
`;

export function layout(title: string, queue: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)} · opencode-dispatch</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>${STYLE}</style></head>
<body><header><strong>opencode-dispatch</strong><span class="muted">queue ${esc(queue)}</span>
<a href="/results">Results</a><a href="/queues">Queue (bull-board)</a></header><main>${body}</main></body></html>`;
}

const excerpt = (text: string | null, max = 80) => (text && text.length > max ? `${text.slice(0, max)}…` : text ?? "");
const money = (cost: number | null) => (cost == null ? "" : `$${cost.toFixed(4)}`);
const jobLink = (jobId: string) => `<a href="/results/${encodeURIComponent(jobId)}">${esc(jobId)}</a>`;
const sessionLink = (sessionId: string | null) =>
  sessionId ? `<a href="/sessions/${encodeURIComponent(sessionId)}" data-testid="session-link">${esc(sessionId)}</a>` : "";

export function resultsTable(records: DashboardRecord[]): string {
  if (records.length === 0) return `<p class="muted" data-testid="no-results">No results.</p>`;
  const rows = records
    .map(
      (r) => `<tr data-testid="result-row" data-job-id="${esc(r.jobId)}" data-state="${esc(r.state)}">
<td>${jobLink(r.jobId)}</td><td class="state ${esc(r.state)}">${esc(r.state)}</td><td>${esc(r.model ?? "default")}</td>
<td>${esc(excerpt(r.title ?? r.prompt))}</td><td>${sessionLink(r.sessionId)}</td>
<td>${r.tokens ? esc(r.tokens.total) : ""}</td><td>${esc(money(r.cost))}</td>
<td>${r.error ? esc(`${r.error.name}: ${excerpt(r.error.message, 60)}`) : ""}</td><td>${esc(r.finishedAt ?? r.startedAt ?? "")}</td></tr>`,
    )
    .join("\n");
  return `<table><thead><tr><th>job</th><th>state</th><th>model</th><th>prompt</th><th>session</th><th>tokens</th><th>cost</th><th>error</th><th>finished</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

export function resultsPage(queue: string, page: ResultPage, state: string | undefined, offset: number): string {
  const filters = ["all", "completed", "failed", "active", "retrying", "waiting"]
    .map((s) => `<a href="/results${s === "all" ? "" : `?state=${s}`}"${(state ?? "all") === s ? ' aria-current="page"' : ""}>${s}</a>`)
    .join("");
  const query = (next: number) => `/results?${state ? `state=${encodeURIComponent(state)}&amp;` : ""}offset=${next}`;
  const pager = [
    offset > 0 ? `<a href="${state ? `/results?state=${encodeURIComponent(state)}` : "/results"}" data-testid="newest">Newest</a>` : "",
    page.next !== null ? `<a href="${query(page.next)}" rel="next" data-testid="older">Older</a>` : "",
  ].join(" ");
  return layout("Results", queue, `<h1>Results</h1><nav class="filters">${filters}</nav><p class="muted">Newest first; ${page.records.length} shown.</p>${resultsTable(page.records)}<nav class="pager">${pager}</nav>`);
}

export function resultPage(queue: string, r: DashboardRecord, sameSession: DashboardRecord[], continuations: DashboardRecord[]): string {
  const tokens = r.tokens
    ? `${r.tokens.total} (input ${r.tokens.input}, output ${r.tokens.output}, reasoning ${r.tokens.reasoning}, cache read ${r.tokens.cacheRead}, cache write ${r.tokens.cacheWrite})`
    : "";
  const fields: [string, string][] = [
    ["Job", `<span data-testid="job-id">${esc(r.jobId)}</span>`],
    ["State", `<span class="state ${esc(r.state)}" data-testid="state">${esc(r.state)}</span>`],
    ["Session", sessionLink(r.sessionId)],
    ["Continues", r.continuedFrom ? jobLink(r.continuedFrom) : `<span class="muted">—</span>`],
    ["Model", esc(r.model ?? "server default")],
    ["Agent", esc(r.agent ?? "server default")],
    ["Directory", esc(r.directory ?? "worker's")],
    ["Tokens", `<span data-testid="tokens">${esc(tokens)}</span>`],
    ["Cost", `<span data-testid="cost">${esc(money(r.cost))}</span>`],
    ["Attempts", esc(r.attempts)],
    ["Enqueued / started / finished", esc([r.enqueuedAt, r.startedAt, r.finishedAt].map((t) => t ?? "—").join(" / "))],
    ["Duration", r.durationMs == null ? "" : `${esc(r.durationMs)} ms`],
    ["Worker", esc(r.worker ?? "")],
  ];
  const error = r.error
    ? `<h2>Error</h2><pre data-testid="error">${esc(`${r.error.name}${r.error.statusCode ? ` (${r.error.statusCode})` : ""}: ${r.error.message}\nretryable: ${r.error.retryable}`)}</pre>`
    : "";
  const others = sameSession.filter((o) => o.jobId !== r.jobId);
  const chain =
    continuations.length || others.length
      ? `<h2>Same session and continuations</h2>${resultsTable([...new Map([...others, ...continuations].map((o) => [o.jobId, o])).values()])}`
      : "";
  return layout(
    r.jobId,
    queue,
    `<h1>Result ${esc(r.jobId)}</h1><dl>${fields.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>
<h2>Prompt</h2><pre data-testid="prompt">${esc(r.prompt)}</pre>
${r.text !== null ? `<h2>Answer</h2><pre data-testid="answer">${esc(r.text)}</pre>` : ""}${error}
${r.metadata ? `<h2>Metadata</h2><pre>${esc(JSON.stringify(r.metadata, null, 2))}</pre>` : ""}${chain}`,
  );
}

export function sessionPage(queue: string, sessionId: string, records: DashboardRecord[]): string {
  const ordered = [...records].reverse(); // oldest first: the conversation in order
  return layout(`Session ${sessionId}`, queue, `<h1>Session ${esc(sessionId)}</h1><p class="muted">Jobs that ran in this opencode session, oldest first.</p>${resultsTable(ordered)}`);
}

export function notFoundPage(queue: string, what: string): string {
  return layout("Not found", queue, `<h1>Not found</h1><p>${esc(what)}</p>`);
}

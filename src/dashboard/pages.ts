import type { DashboardRecord, ResultPage } from "./results.js";
import { actionButton, esc, excerpt, jobLink, layout, money, sessionLink } from "./html.js";
import { isFinal } from "../shared/job-state.js";

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
    .map(
      (s) =>
        `<a href="/results${s === "all" ? "" : `?state=${s}`}"${(state ?? "all") === s ? ' aria-current="page"' : ""}>${s}</a>`,
    )
    .join("");
  const query = (next: number) => `/results?${state ? `state=${encodeURIComponent(state)}&amp;` : ""}offset=${next}`;
  const pager = [
    offset > 0
      ? `<a href="${state ? `/results?state=${encodeURIComponent(state)}` : "/results"}" data-testid="newest">Newest</a>`
      : "",
    page.next !== null ? `<a href="${query(page.next)}" rel="next" data-testid="older">Older</a>` : "",
  ].join(" ");
  return layout(
    "Results",
    queue,
    `<h1>Results</h1><nav class="filters">${filters}</nav><p class="muted">Newest first; ${page.records.length} shown.</p>${resultsTable(page.records)}<nav class="pager">${pager}</nav>`,
  );
}

/**
 * One record in full. `continuations`: the jobs that continue this one (their `continues` names
 * it). A job not finished yet shows its answer as it is written (see client.ts).
 */
export function resultPage(
  queue: string,
  r: DashboardRecord,
  sameSession: DashboardRecord[],
  continuations: DashboardRecord[],
  allowActions = false,
): string {
  const tokens = r.tokens
    ? `${r.tokens.total} (input ${r.tokens.input}, output ${r.tokens.output}, reasoning ${r.tokens.reasoning}, cache read ${r.tokens.cacheRead}, cache write ${r.tokens.cacheWrite})`
    : "";
  const final = isFinal(r.state);
  const fields: [string, string][] = [
    ["Job", `<span data-testid="job-id">${esc(r.jobId)}</span>`],
    ["State", `<span class="state ${esc(r.state)}" data-testid="state">${esc(r.state)}</span>`],
    ["Session", sessionLink(r.sessionId)],
    ["Continues", r.continues ? jobLink(r.continues, "continues-link") : `<span class="muted">—</span>`],
    [
      "Continued by",
      continuations.length
        ? continuations.map((c) => jobLink(c.jobId, "continued-by-link")).join(", ")
        : `<span class="muted">—</span>`,
    ],
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
  if (!final) fields.push(["Last tool", `<span data-testid="live-tool" class="muted">—</span>`]);
  const error = r.error
    ? `<h2>Error</h2><pre data-testid="error">${esc(`${r.error.name}${r.error.statusCode ? ` (${r.error.statusCode})` : ""}: ${r.error.message}\nretryable: ${r.error.retryable}`)}</pre>`
    : "";
  const id = encodeURIComponent(r.jobId);
  const actions = allowActions
    ? `<p class="actions">${final ? "" : actionButton(`/api/jobs/${id}/cancel`, "Cancel", "cancel-job")}${r.state === "failed" ? actionButton(`/api/jobs/${id}/retry`, "Retry", "retry-job") : ""}<span id="action-result" data-testid="action-result"></span></p>`
    : "";
  const approval = r.approval
    ? `<h2>Waiting for approval</h2><dl data-testid="approval"><dt>Permission</dt><dd>${esc(r.approval.permission)}</dd><dt>For</dt><dd>${esc(r.approval.patterns.join(", "))}</dd>
<dt>Tool</dt><dd>${esc(r.approval.tool ?? "")}</dd><dt>The agent said</dt><dd>${esc(r.approval.words ?? "")}</dd><dt>Rejected unanswered at</dt><dd>${esc(r.approval.timeoutAt)}</dd></dl>
${allowActions ? `<p class="actions">${actionButton(`/api/jobs/${id}/approve`, "Approve once", "approve-job", { always: false })}${actionButton(`/api/jobs/${id}/approve`, `Approve always (${r.approval.always.join(", ")})`, "approve-always-job", { always: true })}${actionButton(`/api/jobs/${id}/reject`, "Reject", "reject-job")}</p>` : ""}`
    : "";
  const others = sameSession.filter((o) => o.jobId !== r.jobId);
  const chain =
    continuations.length || others.length
      ? `<h2>Same session and continuations</h2>${resultsTable([...new Map([...others, ...continuations].map((o) => [o.jobId, o])).values()])}`
      : "";
  const answer = r.text !== null ? `<h2>Answer</h2><pre data-testid="answer">${esc(r.text)}</pre>` : "";
  return layout(
    r.jobId,
    queue,
    `<h1>Result ${esc(r.jobId)}</h1>${actions}<dl>${fields.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>
${approval}<h2>Prompt</h2><pre data-testid="prompt">${esc(r.prompt)}</pre>
${final ? answer : `<section data-live-stream="/api/live/${id}">${answer}</section>`}${error}
${r.metadata ? `<h2>Metadata</h2><pre>${esc(JSON.stringify(r.metadata, null, 2))}</pre>` : ""}${chain}`,
  );
}

export function notFoundPage(queue: string, what: string): string {
  return layout("Not found", queue, `<h1>Not found</h1><p>${esc(what)}</p>`);
}

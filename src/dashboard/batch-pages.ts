/** The pages of batches: `/batches` (every batch) and `/batches/<id>` (one in full). */
import { chartsHtml } from "./chart-data.js";
import type { BatchMember, BatchRow, BatchShares, BatchView } from "./batches.js";
import { actionButton, duration, esc, jobLink, layout, money } from "./html.js";

const batchHref = (id: string) => `/batches/${encodeURIComponent(id)}`;

/** The progress bar: done, failed, running, queued (each width also updated live from `prefix`). */
export function progressBar(shares: BatchShares, prefix = ""): string {
  const part = (name: keyof BatchShares, cls: string) =>
    `<span class="${cls}" style="width:${shares[name]}%"${prefix ? ` data-live-width="${prefix}${name}"` : ""} title="${name} ${shares[name]}%"></span>`;
  return `<div class="bar" data-testid="progress" role="img" aria-label="done ${shares.done}%, failed ${shares.failed}%, running ${shares.running}%, queued ${shares.queued}%">${part("done", "done")}${part("failed", "failed")}${part("running", "running")}${part("queued", "queued")}</div>`;
}

export function batchesPage(queue: string, rows: BatchRow[], offset: number, next: number | null): string {
  const body = rows.length
    ? `<table><thead><tr><th>batch</th><th>created</th><th>progress</th><th>total</th><th>completed</th><th>failed</th><th>running</th><th>queued</th><th>budget</th></tr></thead><tbody>
${rows
  .map(
    ({
      status: s,
      shares,
    }) => `<tr data-testid="batch-row" data-batch-id="${esc(s.batchId)}"><td><a href="${batchHref(s.batchId)}">${esc(s.batchId)}</a>${s.complete ? "" : ' <span class="muted">(submitting)</span>'}</td>
<td>${esc(s.createdAt)}</td><td>${progressBar(shares)}</td><td>${s.total}</td><td class="completed">${s.counts.completed}</td><td class="failed">${s.counts.failed}</td>
<td class="running">${s.counts.running}</td><td>${s.counts.queued}</td><td>${s.budget ? esc(`${money(s.budget.spent.cost)} of ${s.budget.maxCost == null ? "—" : money(s.budget.maxCost)}${s.budget.exceeded ? " (exceeded)" : ""}`) : ""}</td></tr>`,
  )
  .join("\n")}</tbody></table>`
    : `<p class="muted" data-testid="no-batches">No batches.</p>`;
  const pager = [
    offset > 0 ? `<a href="/batches">Newest</a>` : "",
    next !== null ? `<a href="/batches?offset=${next}" rel="next">Older</a>` : "",
  ].join(" ");
  return layout(
    "Batches",
    queue,
    `<h1>Batches</h1><p class="muted">Newest first; counts as <code>status &lt;batchId&gt;</code> gives them.</p>${body}<nav class="pager">${pager}</nav>`,
  );
}

const stat = (label: string, value: string, field: string, testid = field.replace(/\./g, "-")) =>
  `<div><span class="muted">${esc(label)}</span><b data-testid="${esc(testid)}"${field ? ` data-live-field="${esc(field)}"` : ""}>${esc(value)}</b></div>`;

/** The numbers the batch page shows and its poll updates (see client.ts). */
export function batchJson(view: BatchView) {
  const { status, summary } = view;
  return {
    batchId: status.batchId,
    status,
    shares: view.shares,
    rate: view.perMinute === null ? "—" : `${view.perMinute.toFixed(1)} / min`,
    eta: view.done ? "done" : duration(view.etaMs),
    tokens: summary.tokens.total,
    cost: money(summary.cost),
    p50: duration(summary.durationMs?.p50 ?? null),
    p95: duration(summary.durationMs?.p95 ?? null),
    failures: view.failures.map((f) => ({ name: f.name, count: f.count })),
    done: view.done,
  };
}

export function batchPage(
  queue: string,
  view: BatchView,
  members: BatchMember[],
  offset: number,
  next: number | null,
  allowActions: boolean,
): string {
  const s = view.status;
  const j = batchJson(view);
  const href = batchHref(s.batchId);
  const stats = [
    stat("total", String(s.total), "status.total"),
    stat("completed", String(s.counts.completed), "status.counts.completed", "count-completed"),
    stat("failed", String(s.counts.failed), "status.counts.failed", "count-failed"),
    stat("running", String(s.counts.running), "status.counts.running", "count-running"),
    stat("queued", String(s.counts.queued), "status.counts.queued", "count-queued"),
    stat("rate", j.rate, "rate"),
    stat("ETA", j.eta, "eta"),
    stat("tokens", String(j.tokens), "tokens"),
    stat("cost", j.cost, "cost"),
    stat("p50", j.p50, "p50"),
    stat("p95", j.p95, "p95"),
  ].join("");
  const budget = s.budget
    ? `<p>Budget: ${esc(`${s.budget.maxCost == null ? "" : `${money(s.budget.maxCost)} `}${s.budget.maxTokens == null ? "" : `${s.budget.maxTokens} tokens `}`)}— spent ${esc(money(s.budget.spent.cost))}, ${s.budget.spent.tokens} tokens${s.budget.exceeded ? ` <b class="failed">${esc(s.budget.exceeded)}</b>` : ""}</p>`
    : "";
  const actions = allowActions
    ? `<p class="actions">${actionButton(`/api${href}/cancel`, "Cancel batch", "cancel-batch")}${actionButton(`/api${href}/retry`, "Retry failed", "retry-batch")}<span id="action-result" data-testid="action-result"></span></p>`
    : "";
  const failures = view.failures.length
    ? `<h2>Failures by error</h2><table data-testid="failures"><thead><tr><th>error</th><th>count</th><th>lines</th></tr></thead><tbody>${view.failures
        .map(
          (f) =>
            `<tr data-testid="failure-group" data-error="${esc(f.name)}"><td class="failed">${esc(f.name)}</td><td>${f.count}</td><td>${f.members.map((m) => `<a href="/results/${encodeURIComponent(m.jobId)}" title="${esc(m.message)}">line ${m.line}</a>`).join(", ")}${f.count > f.members.length ? " …" : ""}</td></tr>`,
        )
        .join("")}</tbody></table>`
    : "";
  const rows = members
    .map(
      (
        m,
      ) => `<tr data-testid="member-row" data-job-id="${esc(m.jobId)}" data-state="${esc(m.state || "queued")}"><td>${m.line}</td><td>${jobLink(m.jobId)}</td><td class="state ${esc(m.state)}">${esc(m.state || "queued")}</td>
<td>${esc(duration(m.record?.durationMs ?? null))}</td><td>${esc(money(m.record?.cost ?? null))}</td><td>${m.record?.error ? esc(`${m.record.error.name}: ${m.record.error.message.slice(0, 60)}`) : ""}</td></tr>`,
    )
    .join("");
  const pager = [
    offset > 0 ? `<a href="${href}">First</a>` : "",
    next !== null ? `<a href="${href}?offset=${next}" rel="next">More</a>` : "",
  ].join(" ");
  return layout(
    `Batch ${s.batchId}`,
    queue,
    `<h1>Batch <span data-testid="batch-id">${esc(s.batchId)}</span></h1>
<p class="muted">Created ${esc(s.createdAt)}${s.complete ? "" : " — still being submitted"}${s.invalid ? `; ${s.invalid} invalid lines left out` : ""}.</p>
${progressBar(view.shares, "shares.")}<section class="stats">${stats}</section>${budget}${actions}${failures}
<h2>Charts</h2>${chartsHtml(view.points, view.points, view.binMinutes)}
<h2>Members</h2><table><thead><tr><th>line</th><th>job</th><th>state</th><th>duration</th><th>cost</th><th>error</th></tr></thead><tbody>${rows}</tbody></table><nav class="pager">${pager}</nav>`,
    { liveSrc: view.done ? undefined : `/api${href}` },
  );
}

/**
 * A session as a conversation: the transcript the workers store after every job
 * (QueueKeys.sessionExport, the gzipped JSON of `opencode export`) cut into turns — a prompt and
 * what the agent did and answered — each with the jobs that made it (a job's record names its
 * turn's last assistant message, `messageId`; else its prompt is matched).
 */
import { gunzip } from "node:zlib";
import { promisify } from "node:util";
import type { Redis } from "ioredis";
import type { QueueKeys } from "../shared/keys.js";
import type { DashboardRecord } from "./results.js";
import { duration, esc, excerpt, jobLink, layout } from "./html.js";

const unzip = promisify(gunzip);

export interface ToolCall {
  tool: string;
  status: string;
  /** The call in short: its title, or its input. */
  summary: string;
}

export interface Turn {
  prompt: string;
  /** The answer's text, in order. */
  answer: string;
  tools: ToolCall[];
  /** The assistant messages of the turn. */
  messageIds: string[];
  jobs: DashboardRecord[];
}

interface ExportedPart {
  type?: string;
  text?: string;
  synthetic?: boolean;
  tool?: string;
  state?: { status?: string; title?: string; input?: unknown };
}
interface ExportedMessage {
  info?: { id?: string; role?: string };
  parts?: ExportedPart[];
}

/** The stored transcript's messages, or null when none is stored (or it cannot be read). */
export async function loadTranscript(
  redis: Redis,
  keys: QueueKeys,
  sessionId: string,
): Promise<ExportedMessage[] | null> {
  const raw = await redis.getBuffer(keys.sessionExport(sessionId));
  if (!raw) return null;
  try {
    const parsed = JSON.parse((await unzip(raw)).toString("utf8")) as { messages?: ExportedMessage[] };
    return Array.isArray(parsed.messages) ? parsed.messages : null;
  } catch {
    return null;
  }
}

const short = (value: unknown) => excerpt(typeof value === "string" ? value : JSON.stringify(value ?? ""), 120);

/** Cuts messages into turns (each user message begins one) and gives each its jobs. */
export function toTurns(
  messages: ExportedMessage[],
  records: DashboardRecord[],
): { turns: Turn[]; unplaced: DashboardRecord[] } {
  const turns: Turn[] = [];
  for (const message of messages) {
    const parts = message.parts ?? [];
    if (message.info?.role === "user" || turns.length === 0) {
      const prompt = parts
        .filter((p) => p.type === "text" && !p.synthetic)
        .map((p) => p.text ?? "")
        .join("\n");
      turns.push({ prompt, answer: "", tools: [], messageIds: [], jobs: [] });
      if (message.info?.role === "user") continue;
    }
    const turn = turns[turns.length - 1]!;
    if (message.info?.id) turn.messageIds.push(message.info.id);
    for (const part of parts) {
      if (part.type === "text" && part.text) turn.answer += (turn.answer ? "\n" : "") + part.text;
      else if (part.type === "tool")
        turn.tools.push({
          tool: part.tool ?? "tool",
          status: part.state?.status ?? "",
          summary: part.state?.title || short(part.state?.input),
        });
    }
  }
  for (const turn of turns) turn.answer = turn.answer.trim();
  const unplaced: DashboardRecord[] = [];
  for (const record of [...records].sort((a, b) => (a.enqueuedAt ?? "").localeCompare(b.enqueuedAt ?? ""))) {
    const byMessage = record.messageId ? turns.find((t) => t.messageIds.includes(record.messageId!)) : undefined;
    const turn = byMessage ?? turns.find((t) => t.jobs.length === 0 && t.prompt.trim() === record.prompt.trim());
    if (turn) turn.jobs.push(record);
    else unplaced.push(record);
  }
  return { turns, unplaced };
}

/** The jobs that continue each job (by the job they continue). */
type Followers = Map<string, string[]>;

const jobLine = (r: DashboardRecord, followers: Followers) => {
  const next = followers.get(r.jobId) ?? [];
  return `<li data-testid="turn-job" data-job-id="${esc(r.jobId)}">${jobLink(r.jobId, "turn-job-link")} <span class="state ${esc(r.state)}">${esc(r.state)}</span>${r.continues ? ` — continues ${jobLink(r.continues, "continues-link")}` : ""}${next.length ? ` — continued by ${next.map((id) => jobLink(id, "continued-by-link")).join(", ")}` : ""}${r.durationMs != null ? ` <span class="muted">${esc(duration(r.durationMs))}</span>` : ""}</li>`;
};

function turnHtml(turn: Turn, n: number, followers: Followers): string {
  const tools = turn.tools
    .map(
      (t) =>
        `<div class="tool" data-testid="tool-call">${esc(t.tool)} <span class="muted">${esc(t.status)}</span> ${esc(t.summary)}</div>`,
    )
    .join("");
  return `<article class="turn" data-testid="turn" data-turn="${n}"><h3>Turn ${n}</h3>
<div class="who">prompt</div><pre data-testid="turn-prompt">${esc(turn.prompt)}</pre>${tools}
<div class="who">answer</div><pre data-testid="turn-answer">${esc(turn.answer)}</pre>
${turn.jobs.length ? `<ul>${turn.jobs.map((r) => jobLine(r, followers)).join("")}</ul>` : `<p class="muted">No job of this queue made this turn.</p>`}</article>`;
}

export function transcriptPage(
  queue: string,
  sessionId: string,
  turns: Turn[],
  unplaced: DashboardRecord[],
  stored: boolean,
): string {
  const followers: Followers = new Map();
  for (const r of [...turns.flatMap((t) => t.jobs), ...unplaced])
    if (r.continues) followers.set(r.continues, [...(followers.get(r.continues) ?? []), r.jobId]);
  const note = stored
    ? ""
    : `<p class="muted">No transcript of this session is stored (yet); its jobs' prompts and answers follow.</p>`;
  const rest = unplaced.length
    ? `<h2>${stored ? "Jobs without a turn in the stored transcript" : "Jobs"}</h2>${unplaced
        .map((r, i) =>
          turnHtml(
            { prompt: r.prompt, answer: r.text ?? "", tools: [], messageIds: [], jobs: [r] },
            turns.length + i + 1,
            followers,
          ),
        )
        .join("")}`
    : "";
  return layout(
    `Session ${sessionId}`,
    queue,
    `<h1>Session ${esc(sessionId)}</h1>${note}${turns.map((t, i) => turnHtml(t, i + 1, followers)).join("")}${rest}`,
  );
}

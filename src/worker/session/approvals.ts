/**
 * The worker's side of manual approvals (see shared/approval.ts): parking a session whose agent
 * asked for a permission, and resuming it once the ask is answered.
 *
 * Why the approval is not a session rule: opencode's session update appends rules (none can be
 * taken back), and a rule stays with the session, so every later job continuing it would inherit
 * it. An approved ask is instead a grant the attempt's session watch applies: a `once` grant
 * answers the first ask it covers, an `always` grant every one, for the rest of the job only.
 */
import type { AssistantMessage, Part, TextPartInput } from "@opencode-ai/sdk/v2";
import { DelayedError, type Job } from "bullmq";
import type { Redis } from "ioredis";
import { decide, readDecision, type Decision } from "../../shared/approval.js";
import type { QueueKeys } from "../../shared/keys.js";
import { formatDuration } from "../../shared/duration.js";
import type { Logger } from "../../shared/logger.js";
import { emptyTokens, type Ask, type PendingApproval, type ResultRecord, type Tokens } from "../../shared/result.js";
import type { OpencodeClient } from "../server/opencode-client.js";
import { abortAndCheck } from "./run-prompt.js";

/** Thrown (as the attempt's abort reason) when a manual ask parks the job. */
export class ApprovalNeededError extends Error {
  /** Set once the session's transcript is stored: only then may the job be parked. */
  stored = false;
  /** What the turn cut short by the ask had spent (kept on the parked record, added to the job's total). */
  usage: Usage = { tokens: emptyTokens(), cost: 0 };
  constructor(
    readonly ask: PendingApproval,
    /** The session the ask came from (the job's, or a subagent's). */
    readonly askSessionId: string,
    /** The tool call that asked (opencode's call ID), if known. */
    readonly callId?: string,
  ) {
    super(`the agent asks for permission ${ask.permission} (${ask.patterns.join(", ")}); waiting for a person`);
    this.name = "ApprovalNeeded";
  }
}

/** What a person approved: asks of this permission whose patterns all match these. */
export interface Grant {
  permission: string;
  patterns: string[];
  /** Answers one ask, then is spent. */
  once: boolean;
  by: string;
}

/** `*` matches anything (opencode's wildcard); everything else literally. */
function wildcard(pattern: string, value: string): boolean {
  if (pattern === value) return true;
  const source = pattern
    .split("*")
    .map((piece) => piece.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${source}$`, "s").test(value);
}

/** Whether a grant covers an ask: the same permission, every asked pattern matched by one granted. */
export function covers(grant: Grant, ask: { permission: string; patterns: string[] }): boolean {
  return (
    grant.permission === ask.permission &&
    ask.patterns.every((asked) => grant.patterns.some((granted) => wildcard(granted, asked)))
  );
}

/**
 * The grants an attempt starts with: every ask a person approved `always` before, for the rest of
 * the job, and the ask just answered (`once`: its own patterns; `always`: what opencode suggests).
 */
export function grantsFor(asks: readonly Ask[], answered?: { ask: PendingApproval; decision: Decision }): Grant[] {
  const grants: Grant[] = asks
    .filter((a) => a.kind === "permission" && a.answer === "always")
    .map((a) => ({ permission: a.what, patterns: a.patterns, once: false, by: a.by ?? "person" }));
  if (answered && answered.decision.answer !== "reject") {
    const { ask, decision } = answered;
    const always = decision.answer === "always";
    grants.push({
      permission: ask.permission,
      patterns: always ? [...ask.patterns, ...ask.always] : ask.patterns,
      once: !always,
      by: decision.by,
    });
  }
  return grants;
}

/** The answered ask, as the record's history keeps it. */
export function answeredAsk(ask: PendingApproval, decision: Decision): Ask {
  return {
    kind: "permission",
    what: ask.permission,
    patterns: decision.answer === "always" ? [...new Set([...ask.patterns, ...ask.always])] : ask.patterns,
    answer: decision.answer,
    at: ask.askedAt,
    by: decision.by,
    answeredAt: decision.at,
    ...(decision.message ? { message: decision.message } : {}),
    words: ask.words,
  };
}

/** A timeout as a person says it: `2d`, `24h`, else as formatDuration (`3.0s`, `10m`). */
function spoken(ms: number): string {
  if (ms >= 2 * 86_400_000 && ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  return formatDuration(ms);
}

/** The turn that resumes a parked session: what the person decided, in words the agent acts on. */
export function continuationPrompt(ask: PendingApproval, decision: Decision, timeoutMs: number): TextPartInput[] {
  const what = `${ask.permission}${ask.patterns.length ? ` (${ask.patterns.join(", ")})` : ""}`;
  let text: string;
  if (decision.answer !== "reject") {
    const scope = decision.answer === "always" ? "for the rest of this task" : "once";
    text = `Your request for permission ${what} was approved ${scope} by ${decision.by}. Your earlier call was interrupted while it waited; make it again and continue the task.`;
  } else if (decision.by === "timeout") {
    text = `Your request for permission ${what} was rejected: no one answered it within ${spoken(timeoutMs)}. Do not try it again; finish the task as well as you can without it.`;
  } else {
    const said = decision.message ? ` with this message: ${decision.message}` : "";
    text = `Your request for permission ${what} was rejected by ${decision.by}${said}. Do not try it again; finish the task as well as you can without it.`;
  }
  return [{ type: "text", text }];
}

interface Message {
  info: { id: string; role: string; tokens?: AssistantMessage["tokens"]; cost?: number };
  parts: Part[];
}

/** Tokens and cost, as the record keeps them. */
export interface Usage {
  tokens: Tokens;
  cost: number;
}

/** Two usages together (a record's may be unset). */
export function addUsage(a: { tokens: Tokens | null; cost: number | null } | undefined, b: Usage): Usage {
  const t = a?.tokens ?? emptyTokens();
  return {
    tokens: {
      input: t.input + b.tokens.input,
      output: t.output + b.tokens.output,
      reasoning: t.reasoning + b.tokens.reasoning,
      cacheRead: t.cacheRead + b.tokens.cacheRead,
      cacheWrite: t.cacheWrite + b.tokens.cacheWrite,
      total: t.total + b.tokens.total,
    },
    cost: (a?.cost ?? 0) + b.cost,
  };
}

/** What the session's last turn (every assistant message after its last user message) spent. */
function lastTurnUsage(messages: readonly Message[]): Usage {
  let usage: Usage = { tokens: emptyTokens(), cost: 0 };
  for (const { info } of messages) {
    if (info.role === "user") usage = { tokens: emptyTokens(), cost: 0 };
    else if (info.role === "assistant" && info.tokens) {
      const t = info.tokens;
      const total = t.input + t.output + t.reasoning + t.cache.read + t.cache.write;
      usage = addUsage(usage, {
        tokens: {
          input: t.input,
          output: t.output,
          reasoning: t.reasoning,
          cacheRead: t.cache.read,
          cacheWrite: t.cache.write,
          total,
        },
        cost: info.cost ?? 0,
      });
    }
  }
  return usage;
}

/** The tool whose call asked, and the agent's latest text before that call, in the same turn. */
export function askContext(
  messages: readonly Message[],
  callId: string | undefined,
): { tool: string | null; words: string | null } {
  let words: string | null = null;
  for (const message of messages) {
    if (message.info.role === "user") words = null; // an earlier turn's words are not about this ask
    if (message.info.role !== "assistant") continue;
    for (const part of message.parts) {
      if (part.type === "tool" && callId && part.callID === callId) return { tool: part.tool, words };
      if (part.type === "text" && !part.synthetic && !part.ignored && part.text.trim()) words = part.text.trim();
    }
  }
  return { tool: null, words };
}

/**
 * Stops a session whose agent asked for a manual approval: aborts it and waits for it to go idle,
 * rejects the ask on the server (an ask left pending there would be met again by the next watch),
 * and fills in the ask's tool and the agent's words. Returns the job session's messages (stored
 * next by the caller).
 */
export async function parkSession(
  client: OpencodeClient,
  sessionId: string,
  directory: string | undefined,
  parking: ApprovalNeededError,
  log: Logger,
  signal: AbortSignal,
): Promise<unknown[] | undefined> {
  await abortAndCheck(client, sessionId, directory, log);
  if (parking.askSessionId !== sessionId) await abortAndCheck(client, parking.askSessionId, directory, log);
  await client.permission
    .reply({ requestID: parking.ask.id, directory, reply: "reject" }, { signal })
    .catch((error: unknown) => log.warn({ err: error }, "could not clear the parked ask on the server"));
  const [own, asker] = await Promise.all([
    client.session.messages({ sessionID: sessionId, directory }, { signal }),
    parking.askSessionId === sessionId
      ? undefined
      : client.session.messages({ sessionID: parking.askSessionId, directory }, { signal }),
  ]);
  const messages = (asker?.data ?? own.data ?? []) as Message[];
  const context = askContext(messages, parking.callId);
  parking.usage = lastTurnUsage(own.data ?? []);
  parking.ask.tool = context.tool;
  parking.ask.words = context.words;
  return own.response?.ok ? own.data : undefined;
}

/**
 * The record of a job parked for approval; `spent` is what its turns spent (those of earlier parks
 * of the job, and the one cut short by this ask).
 */
export function parkedRecord(record: ResultRecord, ask: PendingApproval, spent: Usage): ResultRecord {
  return { ...record, ...spent, state: "awaiting-approval", approval: ask, error: null, finishedAt: null };
}

/** How a parked job's next attempt resumes its session. */
export interface Resume {
  sessionId: string;
  parts: TextPartInput[];
  grants: Grant[];
  /** The ask as answered, for the record's history. */
  answered: Ask;
}

/**
 * The answer to a parked job's ask: the one a person gave, else (its timeout passed) the
 * timeout's reject, set once so that a late `approve` is refused; null while it may still come.
 */
export async function answerOf(
  redis: Redis,
  keys: QueueKeys,
  jobId: string,
  ask: PendingApproval,
  now = Date.now(),
): Promise<Decision | null> {
  const given = await readDecision(redis, keys, jobId, ask.id);
  if (given) return given;
  if (now < Date.parse(ask.timeoutAt)) return null;
  const timeout: Decision = {
    answer: "reject",
    by: "timeout",
    at: new Date(now).toISOString(),
    message: `no one answered within ${spoken(askTimeoutMs(ask))}`,
  };
  return decide(redis, keys, jobId, ask, timeout, false);
}

const askTimeoutMs = (ask: PendingApproval) => Date.parse(ask.timeoutAt) - Date.parse(ask.askedAt);

/** How the job parked on `ask` goes on in `sessionId` once the ask is answered. */
export function resumeFrom(record: ResultRecord, sessionId: string, ask: PendingApproval, decision: Decision): Resume {
  return {
    sessionId,
    parts: continuationPrompt(ask, decision, askTimeoutMs(ask)),
    grants: grantsFor(record.asks, { ask, decision }),
    answered: answeredAsk(ask, decision),
  };
}

/**
 * Parks the job in BullMQ's delayed set until the ask's timeout, holding no slot; `approve` /
 * `reject` promote it sooner. An answer that came while it was being parked promotes it here.
 */
export async function parkJob(
  job: Job,
  token: string,
  ask: PendingApproval,
  redis: Redis,
  keys: QueueKeys,
): Promise<never> {
  await job.moveToDelayed(Math.max(Date.parse(ask.timeoutAt), Date.now()), token);
  if (await readDecision(redis, keys, job.id!, ask.id)) await job.promote().catch(() => undefined);
  throw new DelayedError();
}

import type {
  AssistantMessage,
  FilePartInput,
  Part,
  PermissionRule,
  Session,
  TextPartInput,
} from "@opencode-ai/sdk/v2";
import type { Logger } from "../../shared/logger.js";
import { emptyTokens, type Tokens } from "../../shared/result.js";
import { splitModel, type JobPayload } from "../../shared/task.js";
import { ModelError, OpencodeHttpError } from "../failures.js";
import type { OpencodeClient } from "../server/opencode-client.js";
import { reportTrouble } from "../server/event-hub.js";
import type { SessionMessage, TurnTranscript } from "./turn-transcript.js";

/** How long an aborted session has to go idle before its server counts as stuck. */
export const ABORT_IDLE_MS = 10_000;

/**
 * Aborts a session and checks that it went idle (abort is cooperative in opencode: a session or
 * its subagents can stay busy, their shell commands running). One still busy after ABORT_IDLE_MS
 * is reported, and the worker recycles its server.
 */
export async function abortAndCheck(
  client: OpencodeClient,
  sessionId: string,
  directory: string | undefined,
  log: Logger,
): Promise<void> {
  try {
    await client.session.abort({ sessionID: sessionId, directory }, { signal: AbortSignal.timeout(5_000) });
  } catch (error) {
    log.warn({ err: error }, "session abort failed");
    return; // a server that does not answer is the health check's business
  }
  const deadline = Date.now() + ABORT_IDLE_MS;
  for (;;) {
    const statuses = await client.session
      .status({ directory }, { signal: AbortSignal.timeout(5_000) })
      .catch(() => undefined);
    if (!statuses?.data) return;
    const busy = Object.entries(statuses.data).some(([id, status]) => id === sessionId && status.type !== "idle");
    if (!busy) return;
    if (Date.now() >= deadline) {
      log.warn({ waitedMs: ABORT_IDLE_MS }, "the aborted session is still busy");
      return reportTrouble(client, "stuck");
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

export interface PromptOutcome {
  sessionId: string;
  text: string;
  model: string;
  tokens: Tokens;
  cost: number;
  /** The StructuredOutput tool's arguments when the task has a schema (unchecked), else null. */
  structured: unknown;
  /** The assistant message that ended the turn (its answer). */
  messageId: string;
  /** Set (false) when the job completes with its session not stored in the queue. */
  sessionStored?: boolean;
}

/**
 * Rules added to every new session: plan switches wait for a person, so they are denied. Every
 * other ask (external directories, doom loops, `.env` reads, the question tool, anything a
 * user's config sets to "ask") reaches the session watch, which answers it by policy.
 */
export const UNATTENDED_RULES: PermissionRule[] = [
  { permission: "plan_enter", pattern: "*", action: "deny" },
  { permission: "plan_exit", pattern: "*", action: "deny" },
];

interface Call<T> {
  data?: T;
  error?: unknown;
  response?: Response;
}

export function unwrap<T>(operation: string, result: Call<T>): T {
  if (result.data !== undefined && result.response?.ok !== false) return result.data;
  const status = result.response?.status ?? 0;
  const detail = typeof result.error === "string" ? result.error : JSON.stringify(result.error ?? "");
  throw new OpencodeHttpError(operation, status, detail.slice(0, 500));
}

/**
 * A session created without a title makes opencode ask the model for one: a second model call per
 * job. The prompt's first line serves instead.
 */
export function titleFrom(prompt: string): string {
  const line = prompt.trim().split("\n", 1)[0]!.trim();
  return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}

export async function createSession(
  client: OpencodeClient,
  payload: JobPayload,
  directory: string | undefined,
  signal: AbortSignal,
): Promise<Session> {
  const session = unwrap(
    "session.create",
    await client.session.create(
      { directory, title: payload.title ?? titleFrom(payload.prompt), permission: UNATTENDED_RULES },
      { signal },
    ),
  );
  return session;
}

/**
 * A new session copied from `source` up to (not including) message `before` — the whole session
 * when none is given — in the source's directory, with the rules and title a new session gets
 * (opencode's fork copies neither).
 */
export async function forkSession(
  client: OpencodeClient,
  source: string,
  before: string | undefined,
  payload: JobPayload,
  directory: string | undefined,
  signal: AbortSignal,
): Promise<Session> {
  const fork = unwrap(
    "session.fork",
    await client.session.fork({ sessionID: source, directory, ...(before ? { messageID: before } : {}) }, { signal }),
  );
  return unwrap(
    "session.update",
    await client.session.update(
      {
        sessionID: fork.id,
        directory,
        title: payload.title ?? titleFrom(payload.prompt),
        permission: UNATTENDED_RULES,
      },
      { signal },
    ),
  );
}

/** The prompt's parts: the text, then any attached files. */
export function promptParts(payload: JobPayload): (TextPartInput | FilePartInput)[] {
  const files = (payload.files ?? []).map((file): FilePartInput => ({
    type: "file",
    mime: file.mime,
    url: file.url,
    filename: file.filename,
  }));
  return [{ type: "text", text: payload.prompt }, ...files];
}

/**
 * Sends the prompt and waits for the agent's whole turn. A provider failure that opencode
 * reports inside the message (`info.error`) is thrown as ModelError, never returned. When
 * `signal` aborts, the session is aborted too and the abort reason is thrown.
 */
export interface PromptOptions {
  directory: string | undefined;
  signal: AbortSignal;
  log: Logger;
  /** Send these parts instead of the task's prompt and files (a repair prompt, a continuation). */
  parts?: (TextPartInput | FilePartInput)[];
  /** The session's messages as read after the turn (for usage): the session store reuses them. */
  onMessages?: (messages: unknown[]) => void;
  /** The session's messages built from its events: read from the server only when it is in doubt. */
  transcript?: TurnTranscript;
}

export async function promptSession(
  client: OpencodeClient,
  sessionId: string,
  payload: JobPayload,
  opts: PromptOptions,
): Promise<PromptOutcome> {
  const { signal, directory, log } = opts;
  const abortSession = () => {
    log.info({ reason: String((signal.reason as Error)?.message ?? signal.reason) }, "aborting opencode session");
    void abortAndCheck(client, sessionId, directory, log);
  };
  signal.addEventListener("abort", abortSession, { once: true });
  try {
    const parts = opts.parts ?? promptParts(payload);
    log.debug({ prompt: parts.find((p) => p.type === "text")?.text }, "prompting");
    const answer = unwrap(
      "session.prompt",
      await client.session.prompt(
        {
          sessionID: sessionId,
          directory,
          model: payload.model ? splitModel(payload.model) : undefined,
          agent: payload.agent,
          system: payload.system,
          parts,
          ...(payload.schema ? { format: { type: "json_schema" as const, schema: payload.schema } } : {}),
        },
        { signal },
      ),
    );
    signal.throwIfAborted();
    const info = answer.info;
    if (info.error) throw new ModelError(info.error.name, info.error.data);
    const messages = await turnMessages(client, answer, directory, signal, log, opts.transcript);
    if (messages) opts.onMessages?.(messages);
    const usage = turnUsage(info, messages ?? []);
    return {
      sessionId,
      text: finalText(answer.parts),
      model: `${info.providerID}/${info.modelID}`,
      ...usage,
      structured: payload.schema ? (info.structured ?? null) : null,
      messageId: info.id,
    };
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    signal.removeEventListener("abort", abortSession);
  }
}

export function finalText(parts: Part[]): string {
  return parts
    .filter((part): part is Extract<Part, { type: "text" }> => part.type === "text" && !part.synthetic && !part.ignored)
    .map((part) => part.text)
    .join("\n")
    .trim();
}

/**
 * The session's messages after the turn: built from its events when the transcript is sure of
 * them, else read from the server (undefined when it cannot answer, as for structured output).
 */
async function turnMessages(
  client: OpencodeClient,
  answer: { info: AssistantMessage; parts: Part[] },
  directory: string | undefined,
  signal: AbortSignal,
  log: Logger,
  transcript: TurnTranscript | undefined,
): Promise<SessionMessage[] | undefined> {
  if (transcript) {
    const built = await transcript.settle(answer, signal);
    if (built.messages) return built.messages;
    log.debug(
      { why: built.why },
      "reading the session's messages from opencode (the events do not give them for sure)",
    );
  }
  signal.throwIfAborted();
  const read = await client.session.messages({ sessionID: answer.info.sessionID, directory }, { signal });
  return read.response?.ok && read.data ? read.data : undefined;
}

/** Tokens and cost of every assistant message of this turn (one per agent step), summed. */
function turnUsage(last: AssistantMessage, messages: readonly SessionMessage[]): { tokens: Tokens; cost: number } {
  const steps = messages
    .map((m) => m.info)
    .filter((m): m is AssistantMessage => m.role === "assistant" && m.parentID === last.parentID);
  const tokens = emptyTokens();
  let cost = 0;
  for (const m of steps.length ? steps : [last]) {
    tokens.input += m.tokens.input;
    tokens.output += m.tokens.output;
    tokens.reasoning += m.tokens.reasoning;
    tokens.cacheRead += m.tokens.cache.read;
    tokens.cacheWrite += m.tokens.cache.write;
    cost += m.cost;
  }
  tokens.total = tokens.input + tokens.output + tokens.reasoning + tokens.cacheRead + tokens.cacheWrite;
  return { tokens, cost };
}

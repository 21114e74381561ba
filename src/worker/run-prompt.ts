import type { AssistantMessage, Part, PermissionRule } from "@opencode-ai/sdk/v2";
import type { Logger } from "../shared/logger.js";
import { emptyTokens, type Tokens } from "../shared/result.js";
import { splitModel, type JobPayload } from "../shared/task.js";
import { ModelError, OpencodeHttpError } from "./failures.js";
import type { OpencodeClient } from "./opencode-client.js";

export interface PromptOutcome {
  sessionId: string;
  text: string;
  model: string;
  tokens: Tokens;
  cost: number;
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

export async function createSession(
  client: OpencodeClient,
  payload: JobPayload,
  directory: string | undefined,
  signal: AbortSignal,
): Promise<string> {
  const session = unwrap(
    "session.create",
    await client.session.create({ directory, title: payload.title, permission: UNATTENDED_RULES }, { signal }),
  );
  return session.id;
}

/**
 * Sends the prompt and waits for the agent's whole turn. A provider failure that opencode
 * reports inside the message (`info.error`) is thrown as ModelError, never returned. When
 * `signal` aborts, the session is aborted too and the abort reason is thrown.
 */
export async function promptSession(
  client: OpencodeClient,
  sessionId: string,
  payload: JobPayload,
  opts: { directory: string | undefined; signal: AbortSignal; log: Logger },
): Promise<PromptOutcome> {
  const { signal, directory, log } = opts;
  const abortSession = () => {
    log.info({ reason: String((signal.reason as Error)?.message ?? signal.reason) }, "aborting opencode session");
    void client.session
      .abort({ sessionID: sessionId, directory }, { signal: AbortSignal.timeout(5_000) })
      .catch((error: unknown) => log.warn({ err: error }, "session abort failed"));
  };
  signal.addEventListener("abort", abortSession, { once: true });
  try {
    log.debug({ prompt: payload.prompt }, "prompting");
    const answer = unwrap(
      "session.prompt",
      await client.session.prompt(
        {
          sessionID: sessionId,
          directory,
          model: payload.model ? splitModel(payload.model) : undefined,
          agent: payload.agent,
          system: payload.system,
          parts: [{ type: "text", text: payload.prompt }],
        },
        { signal },
      ),
    );
    signal.throwIfAborted();
    const info = answer.info;
    if (info.error) throw new ModelError(info.error.name, info.error.data as ModelError["data"]);
    const usage = await turnUsage(client, info, directory, signal);
    return { sessionId, text: finalText(answer.parts), model: `${info.providerID}/${info.modelID}`, ...usage };
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

/** Tokens and cost of every assistant message of this turn (one per agent step), summed. */
async function turnUsage(
  client: OpencodeClient,
  last: AssistantMessage,
  directory: string | undefined,
  signal: AbortSignal,
): Promise<{ tokens: Tokens; cost: number }> {
  const messages = await client.session.messages({ sessionID: last.sessionID, directory }, { signal });
  const steps = (messages.data ?? [])
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

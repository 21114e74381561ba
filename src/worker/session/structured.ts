import { validateAgainst } from "../../shared/json-schema.js";
import type { Tokens } from "../../shared/result.js";
import type { JobPayload } from "../../shared/task.js";
import { SchemaMismatchError } from "../failures.js";
import type { OpencodeClient } from "../server/opencode-client.js";
import { promptSession, type PromptOptions, type PromptOutcome } from "./run-prompt.js";

/** Repair prompts after a structured answer that misses the schema, unless the task says. */
export const DEFAULT_SCHEMA_RETRIES = 2;

/** What the model is told when its structured answer misses the schema. */
export function repairPrompt(problems: readonly string[]): string {
  return [
    "Your structured output does not match the required JSON Schema:",
    ...problems.map((p) => `- ${p}`),
    "Call the StructuredOutput tool again with a corrected object that matches the schema exactly.",
  ].join("\n");
}

function addTokens(a: Tokens, b: Tokens): Tokens {
  return {
    input: a.input + b.input,
    output: a.output + b.output,
    reasoning: a.reasoning + b.reasoning,
    cacheRead: a.cacheRead + b.cacheRead,
    cacheWrite: a.cacheWrite + b.cacheWrite,
    total: a.total + b.total,
  };
}

/**
 * Runs the prompt; for a task with a schema, checks the structured answer (opencode does not) and,
 * while it misses, tells the model what is wrong in the same session and asks again, up to
 * `schemaRetries` times. Then SchemaMismatchError names the fields at fault. Tokens and cost are
 * those of every prompt sent. `onStructured` sees each answer (kept on a failed record too).
 */
export async function promptChecked(
  client: OpencodeClient,
  sessionId: string,
  payload: JobPayload,
  /** `parts`: the first turn's parts instead of the task's prompt (a parked job's continuation). */
  opts: PromptOptions & { onStructured: (value: unknown) => void },
): Promise<PromptOutcome> {
  const { onStructured, parts, ...promptOpts } = opts;
  let outcome = await promptSession(client, sessionId, payload, { ...promptOpts, ...(parts ? { parts } : {}) });
  const schema = payload.schema;
  if (!schema) return outcome;
  const retries = payload.schemaRetries ?? DEFAULT_SCHEMA_RETRIES;
  for (let repair = 1; ; repair++) {
    onStructured(outcome.structured);
    const problems =
      outcome.structured === null || outcome.structured === undefined
        ? ["(root): no structured answer was given (the StructuredOutput tool was not called)"]
        : validateAgainst(schema, outcome.structured);
    if (problems.length === 0) return outcome;
    if (repair > retries) throw new SchemaMismatchError(problems);
    opts.log.info({ problems, repair }, "structured answer misses the schema; asking again");
    const next = await promptSession(client, sessionId, payload, {
      ...promptOpts,
      parts: [{ type: "text", text: repairPrompt(problems) }],
    });
    outcome = { ...next, tokens: addTokens(outcome.tokens, next.tokens), cost: outcome.cost + next.cost };
  }
}

import { defaultFrom } from "../../shared/config.js";
import { DEFAULT_SCHEMA_RETRIES } from "../../worker/session/structured.js";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Command } from "commander";
import { TaskInput as TaskInputSchema, type TaskInput } from "../../shared/task.js";
import { printJson, printRecord } from "../output.js";
import { InputError } from "../../shared/errors.js";
import { watchJob } from "./watch.js";
import {
  approvalOption,
  withDispatcher,
  durationOption,
  intOption,
  numberOption,
  jsonObjectOption,
  readStdin,
  withConnection,
  exitWith,
  type ConnectionFlags,
} from "../options.js";

/**
 * The task options of `enqueue`, `batch` and `schedule add` (see withTaskOptions): every task field
 * under its own name (commander camel-cases `--concurrency-key` to `concurrencyKey`), but `files`,
 * which is the repeatable `--file`. Read from the task schema, so a new task field needs only its option.
 */
export type TaskFlags = ConnectionFlags & { [K in Exclude<keyof TaskInput, "prompt" | "files">]?: TaskInput[K] } & {
  file?: string[];
};

/** The task fields that options carry under the same name. */
const FLAG_FIELDS = Object.keys(TaskInputSchema.shape).filter((k) => k !== "prompt" && k !== "files");

interface EnqueueFlags extends TaskFlags {
  wait?: boolean;
  stream?: boolean;
  json?: boolean;
}

/**
 * The task options shared by `enqueue` and `batch`. `batch` gives `--max-cost` / `--max-tokens`
 * to the whole batch, and the per-task caps other names (`perTaskCaps`).
 */
export function withTaskOptions(command: Command, opts: { perTaskCaps?: string } = {}): Command {
  const caps = opts.perTaskCaps ?? "";
  return command
    .option("--model <provider/model>", "model to use, e.g. anthropic/claude-sonnet-4 (default: the server's)")
    .option("--agent <name>", "opencode agent to run the prompt with (default: the server's)")
    .option("--directory <path>", "working directory for the session (default: the worker's)")
    .option("--title <text>", "session title")
    .option("--system <text>", "extra system prompt")
    .option("--metadata <json>", "a small JSON object stored with the result", jsonObjectOption("--metadata"))
    .option(
      "--priority <n>",
      "0 (none) or 1 (highest) to 2097152; jobs without a priority run first",
      intOption("--priority", 0, 2_097_152),
    )
    .option("--delay <duration>", "start no earlier than this from now (ms, or 30s, 5m, …)", durationOption("--delay"))
    .option(
      "--attempts <n>",
      `attempts before the job fails (default: ${defaultFrom("DISPATCH_ATTEMPTS")})`,
      intOption("--attempts", 1, 100),
    )
    .option(
      "--timeout <duration>",
      `per-attempt time limit, e.g. 10m (default: ${defaultFrom("DISPATCH_JOB_TIMEOUT")})`,
      durationOption("--timeout"),
    )
    .option(
      "--continue <jobId>",
      "run in the session of that earlier job, after it (follow-ups run one at a time, in order)",
    )
    .option("--session <sessionId>", "run in this existing opencode session")
    .option(
      "--fork <jobId>",
      "run in a new session copied from that earlier job's session (as the job left it), once it has ended; forks of one job run in parallel",
    )
    .option(
      "--approval <policy>",
      "what the agent's permission asks get: reject, approve (once) or manual (the job waits in state awaiting-approval, holding no slot, for `approve` / `reject`) (default: the worker's)",
      approvalOption,
    )
    .option(
      "--approval-timeout <duration>",
      `a manual ask no one answered within this long is rejected (default: the worker's, ${defaultFrom("DISPATCH_APPROVAL_TIMEOUT")})`,
      durationOption("--approval-timeout"),
    )
    .option("--auto-approve", "the older name of --approval approve")
    .option("--worktree", "run in a fresh git worktree of --directory, on its own branch dispatch/<jobId>")
    .option(
      `--${caps}max-cost <usd>`,
      `abort and fail ${caps ? "a task " : ""}(no retry) once ${caps ? "its" : "the"} session has cost more than this`,
      numberOption(`--${caps}max-cost`),
    )
    .option(
      "--concurrency-key <key>",
      "jobs sharing this key run one at a time across all workers (DISPATCH_KEY_CONCURRENCY), e.g. a repository path",
    )
    .option(
      "--group <name>",
      "fair share: free slots go round robin across the groups with work (default: the batch ID in a batch, else one shared group)",
    )
    .option(
      `--${caps}max-tokens <n>`,
      `abort and fail ${caps ? "a task " : ""}(no retry) once ${caps ? "its" : "the"} session has used more tokens than this`,
      intOption(`--${caps}max-tokens`, 1),
    )
    .option(
      "--schema <file>",
      "a JSON Schema file: ask for a structured answer matching it (checked, repaired, else the job fails)",
      schemaFileOption,
    )
    .option(
      "--schema-retries <n>",
      `repair prompts after a structured answer that misses the schema (default: ${DEFAULT_SCHEMA_RETRIES})`,
      intOption("--schema-retries", 0, 10),
    )
    .option(
      "--file <path>",
      "attach a file to the prompt (repeatable; at most 5 MB each, 20 MB in all)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option(
      "--webhook <url>",
      "POST the result record here when the job completes or fails (signed with DISPATCH_WEBHOOK_SECRET)",
    );
}

/** `--schema FILE`: the file must exist and hold a JSON object. */
function schemaFileOption(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new InputError(
      `--schema: cannot read "${path}"${code === "ENOENT" ? ": no such file" : `: ${(error as Error).message}`}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new InputError(`--schema: "${path}" is not valid JSON (${(error as Error).message})`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed))
    throw new InputError(`--schema: "${path}" must hold a JSON object`);
  return parsed as Record<string, unknown>;
}

export function taskFromFlags(prompt: string, flags: TaskFlags): TaskInput {
  const given = flags as Record<string, unknown>;
  const task: Record<string, unknown> = { prompt };
  for (const key of FLAG_FIELDS) if (given[key] !== undefined) task[key] = given[key];
  if (flags.directory !== undefined) task.directory = resolve(flags.directory);
  if (flags.file !== undefined) task.files = flags.file;
  return task as TaskInput;
}

export function enqueueCommand(): Command {
  const command = new Command("enqueue")
    .description("enqueue one prompt; prints the job ID (with --wait, the answer)")
    .argument("<prompt>", 'the prompt, or "-" to read it from stdin');
  withTaskOptions(command)
    .option("--id <key>", "job ID and idempotency key: a job with this ID is enqueued only once")
    .option("--wait", "wait for the job to finish and print its answer")
    .option("--stream", "wait, printing the answer as it is written (as `watch`; implies --wait)")
    .option("--json", "print JSON (the receipt, or with --wait the result record)");
  withConnection(command).action(
    exitWith(async (promptArg: string, flags: EnqueueFlags) => {
      const prompt = promptArg === "-" ? await readStdin() : promptArg;
      return withDispatcher(flags, async (dispatcher) => {
        const receipt = await dispatcher.enqueue(taskFromFlags(prompt, flags));
        if (!flags.wait && !flags.stream) {
          if (flags.json) printJson(receipt);
          else process.stdout.write(`${receipt.jobId}\n`);
          return 0;
        }
        if (!flags.json)
          process.stderr.write(`enqueued ${receipt.jobId}${receipt.duplicate ? " (already known)" : ""}; waiting…\n`);
        if (flags.stream) return watchJob(dispatcher, receipt.jobId, { json: flags.json });
        return printRecord(await dispatcher.wait(receipt.jobId), Boolean(flags.json));
      });
    }),
  );
  return command;
}

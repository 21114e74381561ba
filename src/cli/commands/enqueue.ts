import { resolve } from "node:path";
import { Command } from "commander";
import type { TaskInput } from "../../shared/task.js";
import { printJson, printRecord } from "../output.js";
import { dispatcherFrom, durationOption, intOption, jsonObjectOption, readStdin, withConnection, exitWith, type ConnectionFlags } from "../options.js";

interface EnqueueFlags extends ConnectionFlags {
  model?: string;
  agent?: string;
  directory?: string;
  title?: string;
  system?: string;
  metadata?: Record<string, unknown>;
  priority?: number;
  delay?: number;
  attempts?: number;
  timeout?: number;
  id?: string;
  wait?: boolean;
  json?: boolean;
}

/** The task options shared by `enqueue` (and, later, `batch`). */
export function withTaskOptions(command: Command): Command {
  return command
    .option("--model <provider/model>", "model to use, e.g. anthropic/claude-sonnet-4 (default: the server's)")
    .option("--agent <name>", "opencode agent to run the prompt with (default: the server's)")
    .option("--directory <path>", "working directory for the session (default: the worker's)")
    .option("--title <text>", "session title")
    .option("--system <text>", "extra system prompt")
    .option("--metadata <json>", "a small JSON object stored with the result", jsonObjectOption("--metadata"))
    .option("--priority <n>", "1 (highest) to 2097152; jobs without a priority run first", intOption("--priority", 0, 2_097_152))
    .option("--delay <duration>", "start no earlier than this from now (ms, or 30s, 5m, …)", durationOption("--delay"))
    .option("--attempts <n>", "attempts before the job fails (default: DISPATCH_ATTEMPTS, 3)", intOption("--attempts", 1, 100))
    .option("--timeout <duration>", "per-attempt time limit, e.g. 10m (default: DISPATCH_JOB_TIMEOUT, 30m)", durationOption("--timeout"));
}

export function taskFromFlags(prompt: string, flags: EnqueueFlags): TaskInput {
  const task: Record<string, unknown> = {
    prompt,
    model: flags.model,
    agent: flags.agent,
    directory: flags.directory === undefined ? undefined : resolve(flags.directory),
    title: flags.title,
    system: flags.system,
    metadata: flags.metadata,
    priority: flags.priority,
    delay: flags.delay,
    attempts: flags.attempts,
    timeout: flags.timeout,
    id: flags.id,
  };
  for (const key of Object.keys(task)) if (task[key] === undefined) delete task[key];
  return task as TaskInput;
}

export function enqueueCommand(): Command {
  const command = new Command("enqueue")
    .description("enqueue one prompt; prints the job ID (with --wait, the answer)")
    .argument("<prompt>", 'the prompt, or "-" to read it from stdin');
  withTaskOptions(command)
    .option("--id <key>", "job ID and idempotency key: a job with this ID is enqueued only once")
    .option("--wait", "wait for the job to finish and print its answer")
    .option("--json", "print JSON (the receipt, or with --wait the result record)");
  withConnection(command).action(exitWith(async (promptArg: string, flags: EnqueueFlags) => {
    const prompt = promptArg === "-" ? await readStdin() : promptArg;
    const dispatcher = dispatcherFrom(flags);
    try {
      const receipt = await dispatcher.enqueue(taskFromFlags(prompt, flags));
      if (!flags.wait) {
        if (flags.json) printJson(receipt);
        else process.stdout.write(`${receipt.jobId}\n`);
        return 0;
      }
      if (!flags.json) process.stderr.write(`enqueued ${receipt.jobId}${receipt.duplicate ? " (already known)" : ""}; waiting…\n`);
      return printRecord(await dispatcher.wait(receipt.jobId), Boolean(flags.json));
    } finally {
      await dispatcher.close();
    }
  }));
  return command;
}

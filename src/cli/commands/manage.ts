import { Command } from "commander";
import type { JobSummary } from "../../producer/manage.js";
import { ExitCode, InputError } from "../../shared/errors.js";
import { JobState } from "../../shared/result.js";
import { printJson } from "../output.js";
import { withDispatcher, durationOption, exitWith, intOption, withConnection, type ConnectionFlags } from "../options.js";

interface CancelFlags extends ConnectionFlags {
  timeout?: number;
  json?: boolean;
}

export function cancelCommand(): Command {
  const command = new Command("cancel")
    .description("cancel a job: remove it if it is waiting, abort its session if it is running (exit 6 if it already finished)")
    .argument("<jobId>")
    .option("--timeout <duration>", "how long to wait for the worker running the job to abort it (default: 15s)", durationOption("--timeout"))
    .option("--json", "print the outcome and the final record as JSON");
  return withConnection(command).action(exitWith(async (jobId: string, flags: CancelFlags) => {
    return withDispatcher(flags, async (dispatcher) => {
      const outcome = await dispatcher.cancel(jobId, { timeoutMs: flags.timeout });
      if (flags.json) printJson(outcome);
      const says = {
        removed: `job ${jobId} cancelled (removed from the queue)`,
        cancelled: `job ${jobId} cancelled (its session was aborted)`,
        pending: `cancel of job ${jobId} requested; no worker confirmed it yet (a worker that picks the job up will refuse it)`,
        finished: `job ${jobId} finished (${outcome.record?.state}) before the cancel took effect`,
      };
      (flags.json ? process.stderr : process.stdout).write(`${says[outcome.outcome]}\n`);
      if (outcome.outcome === "pending") return ExitCode.notFinished;
      if (outcome.outcome === "finished") return ExitCode.wrongState;
      return ExitCode.ok;
    });
  }));
}

export function retryCommand(): Command {
  const command = new Command("retry")
    .description("re-queue a failed (or cancelled) job with a fresh set of attempts (exit 6 if it did not fail)")
    .argument("<jobId>")
    .option("--json", "print { jobId, how } as JSON");
  return withConnection(command).action(exitWith(async (jobId: string, flags: { json?: boolean } & ConnectionFlags) => {
    return withDispatcher(flags, async (dispatcher) => {
      const outcome = await dispatcher.retry(jobId);
      if (flags.json) printJson(outcome);
      else process.stdout.write(`job ${jobId} re-queued${outcome.how === "requeued" ? " (its whole task, kept with its record)" : ""}\n`);
      return ExitCode.ok;
    });
  }));
}

interface ListFlags extends ConnectionFlags {
  state?: JobState[];
  limit: number;
  json?: boolean;
}

function statesOption(value: string, previous: JobState[] = []): JobState[] {
  const states = value.split(",").map((s) => s.trim()).filter(Boolean);
  for (const state of states) {
    if (!JobState.safeParse(state).success) throw new InputError(`--state: "${state}" is not one of ${JobState.options.join(", ")}`);
  }
  return [...previous, ...(states as JobState[])];
}

export function listCommand(): Command {
  const command = new Command("list")
    .description("list the newest jobs the queue keeps (finished ones for BullMQ's retention: 1 day completed, 7 days failed)")
    .option("--state <states>", `only jobs in these states (comma-separated or repeated): ${JobState.options.join(", ")}`, statesOption)
    .option("--limit <n>", "at most this many, newest first", intOption("--limit", 1, 100_000), 50)
    .option("--json", "print one JSON object per job and line");
  return withConnection(command).action(exitWith(async (flags: ListFlags) => {
    return withDispatcher(flags, async (dispatcher) => {
      const jobs = await dispatcher.list({ state: flags.state, limit: flags.limit });
      if (flags.json) jobs.forEach((job) => printJson(job));
      else process.stdout.write(formatTable(jobs));
      return ExitCode.ok;
    });
  }));
}

function formatTable(jobs: JobSummary[]): string {
  if (jobs.length === 0) return "no jobs\n";
  const rows = [
    ["JOB", "STATE", "ATTEMPTS", "ENQUEUED", "MODEL", "ERROR", "PROMPT"],
    ...jobs.map((j) => [
      j.jobId,
      j.state,
      String(j.attempts),
      j.enqueuedAt ?? "-",
      j.model ?? "-",
      j.error?.name ?? "-",
      JSON.stringify(j.prompt.length > 40 ? `${j.prompt.slice(0, 39)}…` : j.prompt),
    ]),
  ];
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
  return rows.map((row) => row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]!))).join("  ")).join("\n") + "\n";
}

import { writtenDuration } from "../../shared/duration.js";
import { Command } from "commander";
import { CANCEL_TIMEOUT_MS, type JobSummary } from "../../producer/manage.js";
import { ExitCode, InputError } from "../../shared/errors.js";
import { JobState } from "../../shared/result.js";
import { printJson } from "../output.js";
import {
  withDispatcher,
  durationOption,
  exitWith,
  intOption,
  withConnection,
  type ConnectionFlags,
} from "../options.js";

interface CancelFlags extends ConnectionFlags {
  timeout?: number;
  json?: boolean;
}

export function cancelCommand(): Command {
  const command = new Command("cancel")
    .description(
      "cancel a job, or every unfinished job of a batch: remove it if it is waiting, abort its session if it is running (exit 6 if it already finished); a batch's parent (batch --then) takes its unfinished children with it",
    )
    .argument("<jobId>", "a job ID, or a batch ID")
    .option(
      "--timeout <duration>",
      `how long to wait for the worker running the job to abort it (default: ${writtenDuration(CANCEL_TIMEOUT_MS)})`,
      durationOption("--timeout"),
    )
    .option("--json", "print the outcome and the final record as JSON");
  return withConnection(command).action(
    exitWith(async (jobId: string, flags: CancelFlags) => {
      return withDispatcher(flags, async (dispatcher) => {
        if (!(await dispatcher.findJob(jobId)) && (await dispatcher.findBatch(jobId))) {
          const batch = await dispatcher.cancelBatch(jobId, { timeoutMs: flags.timeout });
          if (flags.json) printJson(batch);
          else {
            process.stdout.write(
              `batch ${jobId}: ${batch.removed} removed from the queue, ${batch.cancelled} running aborted, ${batch.pending} not confirmed yet, ${batch.finished} had finished\n`,
            );
          }
          return batch.pending > 0 ? ExitCode.notFinished : ExitCode.ok;
        }
        const outcome = await dispatcher.cancel(jobId, { timeoutMs: flags.timeout });
        if (flags.json) printJson(outcome);
        const says = {
          removed: `job ${jobId} cancelled (removed from the queue)`,
          cancelled: `job ${jobId} cancelled (its session was aborted)`,
          pending: `cancel of job ${jobId} requested; no worker confirmed it yet (a worker that picks the job up will refuse it)`,
          finished: `job ${jobId} finished (${outcome.record?.state}) before the cancel took effect`,
        };
        (flags.json ? process.stderr : process.stdout).write(`${says[outcome.outcome]}\n`);
        const children = outcome.children;
        if (children) {
          (flags.json ? process.stderr : process.stdout).write(
            `its children: ${children.removed} removed from the queue, ${children.cancelled} running aborted, ${children.pending} not confirmed yet, ${children.finished} had finished\n`,
          );
          if (children.pending > 0) return ExitCode.notFinished;
        }
        if (outcome.outcome === "pending") return ExitCode.notFinished;
        if (outcome.outcome === "finished") return ExitCode.wrongState;
        return ExitCode.ok;
      });
    }),
  );
}

export function retryCommand(): Command {
  const command = new Command("retry")
    .description(
      "re-queue a failed (or cancelled) job, or every failed job of a batch, with a fresh set of attempts (exit 6 if it did not fail)",
    )
    .argument("<jobId>", "a job ID, or a batch ID")
    .option("--failed", "for a batch: its failed members (the default and only choice: completed ones never run again)")
    .option("--json", "print { jobId, how } (a batch: { batchId, retried, refused }) as JSON");
  return withConnection(command).action(
    exitWith(async (jobId: string, flags: { json?: boolean; failed?: boolean } & ConnectionFlags) => {
      return withDispatcher(flags, async (dispatcher) => {
        if (!(await dispatcher.findJob(jobId)) && (await dispatcher.findBatch(jobId))) {
          const batch = await dispatcher.retryBatch(jobId);
          if (flags.json) printJson(batch);
          else {
            process.stdout.write(
              `batch ${jobId}: ${batch.retried} failed job${batch.retried === 1 ? "" : "s"} re-queued\n`,
            );
            for (const r of batch.refused) process.stderr.write(`${r.jobId}: ${r.reason}\n`);
          }
          return batch.refused.length > 0 ? ExitCode.wrongState : ExitCode.ok;
        }
        const outcome = await dispatcher.retry(jobId);
        if (flags.json) printJson(outcome);
        else
          process.stdout.write(
            `job ${jobId} re-queued${outcome.how === "requeued" ? " (its whole task, kept with its record)" : ""}\n`,
          );
        return ExitCode.ok;
      });
    }),
  );
}

interface ListFlags extends ConnectionFlags {
  state?: JobState[];
  limit: number;
  json?: boolean;
}

function statesOption(value: string, previous: JobState[] = []): JobState[] {
  const states = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const state of states) {
    if (!JobState.safeParse(state).success)
      throw new InputError(`--state: "${state}" is not one of ${JobState.options.join(", ")}`);
  }
  return [...previous, ...(states as JobState[])];
}

export function listCommand(): Command {
  const command = new Command("list")
    .description(
      "list the newest jobs the queue keeps (finished ones for BullMQ's retention: 1 day completed, 7 days failed)",
    )
    .option(
      "--state <states>",
      `only jobs in these states (comma-separated or repeated): ${JobState.options.join(", ")}`,
      statesOption,
    )
    .option("--limit <n>", "at most this many, newest first", intOption("--limit", 1, 100_000), 50)
    .option("--json", "print one JSON object per job and line");
  return withConnection(command).action(
    exitWith(async (flags: ListFlags) => {
      return withDispatcher(flags, async (dispatcher) => {
        const jobs = await dispatcher.list({ state: flags.state, limit: flags.limit });
        if (flags.json) jobs.forEach((job) => printJson(job));
        else process.stdout.write(formatTable(jobs));
        return ExitCode.ok;
      });
    }),
  );
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
  return (
    rows
      .map((row) => row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]!))).join("  "))
      .join("\n") + "\n"
  );
}

export function pauseCommand(): Command {
  const command = new Command("pause").description(
    "stop every worker of the queue from starting jobs (running ones finish; enqueueing goes on)",
  );
  return withConnection(command).action(
    exitWith(async (flags: ConnectionFlags) => {
      return withDispatcher(flags, async (dispatcher) => {
        await dispatcher.pause();
        process.stdout.write("queue paused: workers start no job until `resume`\n");
        return ExitCode.ok;
      });
    }),
  );
}

export function resumeCommand(): Command {
  const command = new Command("resume").description("let the workers of a paused queue start jobs again");
  return withConnection(command).action(
    exitWith(async (flags: ConnectionFlags) => {
      return withDispatcher(flags, async (dispatcher) => {
        await dispatcher.resume();
        process.stdout.write("queue resumed\n");
        return ExitCode.ok;
      });
    }),
  );
}

import { Command } from "commander";
import type { ScheduleInfo } from "../../producer/schedules.js";
import { formatDuration } from "../../shared/duration.js";
import { ExitCode } from "../../shared/errors.js";
import { printJson, printRecord } from "../output.js";
import { exitWith, readStdin, withConnection, withDispatcher, type ConnectionFlags } from "../options.js";
import { taskFromFlags, withTaskOptions, type TaskFlags } from "./enqueue.js";

interface AddFlags extends TaskFlags {
  cron?: string;
  tz?: string;
  every?: string;
  sameSession?: boolean;
  json?: boolean;
}

/** `schedule add | list | remove | run`: recurring tasks on BullMQ's job schedulers. */
export function scheduleCommand(): Command {
  const schedule = new Command("schedule").description(
    "recurring tasks: add, list, remove, or fire a schedule now (each firing is an ordinary job)",
  );
  schedule.addCommand(addCommand());
  schedule.addCommand(listCommand());
  schedule.addCommand(removeCommand());
  schedule.addCommand(runCommand());
  return schedule;
}

function addCommand(): Command {
  const command = new Command("add")
    .description(
      "add (or replace) a schedule: --cron PATTERN [--tz ZONE] or --every DURATION, and the task each firing runs",
    )
    .argument("<name>", "the schedule's name (letters, digits, _ . -)")
    .argument("<prompt>", 'the prompt, or "-" to read it from stdin')
    .option("--cron <pattern>", 'fire on this cron pattern, e.g. "0 2 * * *" (5 fields, or 6 with seconds first)')
    .option("--tz <zone>", "the IANA time zone --cron is read in, e.g. Europe/Paris (default: UTC)")
    .option("--every <duration>", "fire every this long, e.g. 15m (at least 1s; the first firing is at once)")
    .option("--same-session", "run each firing in the session of the firing before it, one at a time");
  withTaskOptions(command).option("--json", "print the schedule as JSON");
  return withConnection(command).action(
    exitWith(async (name: string, promptArg: string, flags: AddFlags) => {
      const prompt = promptArg === "-" ? await readStdin() : promptArg;
      return withDispatcher(flags, async (dispatcher) => {
        const added = await dispatcher.schedules.add({
          name,
          ...(flags.cron !== undefined ? { cron: flags.cron } : {}),
          ...(flags.tz !== undefined ? { tz: flags.tz } : {}),
          ...(flags.every !== undefined ? { every: flags.every } : {}),
          ...(flags.sameSession ? { sameSession: true } : {}),
          task: taskFromFlags(prompt, flags),
        });
        if (flags.json) printJson(added);
        else
          process.stdout.write(
            `schedule ${added.name} ${added.replaced ? "replaced" : "added"}: ${when(added)}; next firing ${added.next ?? "-"}\n`,
          );
        return ExitCode.ok;
      });
    }),
  );
}

function listCommand(): Command {
  const command = new Command("list")
    .description("list the queue's schedules")
    .option("--json", "print one JSON object per schedule and line");
  return withConnection(command).action(
    exitWith(async (flags: { json?: boolean } & ConnectionFlags) => {
      return withDispatcher(flags, async (dispatcher) => {
        const schedules = await dispatcher.schedules.list();
        if (flags.json) schedules.forEach((s) => printJson(s));
        else process.stdout.write(formatTable(schedules));
        return ExitCode.ok;
      });
    }),
  );
}

function removeCommand(): Command {
  const command = new Command("remove")
    .description("remove a schedule and its next firing (exit 4 if there is none)")
    .argument("<name>");
  return withConnection(command).action(
    exitWith(async (name: string, flags: ConnectionFlags) => {
      return withDispatcher(flags, async (dispatcher) => {
        await dispatcher.schedules.remove(name);
        process.stdout.write(`schedule ${name} removed\n`);
        return ExitCode.ok;
      });
    }),
  );
}

function runCommand(): Command {
  const command = new Command("run")
    .description("fire a schedule once now, besides its plan; prints the job ID (exit 4 if there is no such schedule)")
    .argument("<name>")
    .option("--wait", "wait for the job to finish and print its answer")
    .option("--json", "print JSON (the receipt, or with --wait the result record)");
  return withConnection(command).action(
    exitWith(async (name: string, flags: { wait?: boolean; json?: boolean } & ConnectionFlags) => {
      return withDispatcher(flags, async (dispatcher) => {
        const receipt = await dispatcher.schedules.run(name);
        if (flags.wait) return printRecord(await dispatcher.wait(receipt.jobId), Boolean(flags.json));
        if (flags.json) printJson(receipt);
        else process.stdout.write(`${receipt.jobId}\n`);
        return ExitCode.ok;
      });
    }),
  );
}

const when = (s: ScheduleInfo): string =>
  s.cron ? `cron "${s.cron}"${s.tz ? ` (${s.tz})` : ""}` : `every ${formatDuration(s.every ?? 0)}`;

function formatTable(schedules: ScheduleInfo[]): string {
  if (schedules.length === 0) return "no schedules\n";
  const rows = [
    ["NAME", "WHEN", "NEXT", "FIRINGS", "SESSION", "PROMPT"],
    ...schedules.map((s) => [
      s.name,
      when(s),
      s.next ?? "-",
      String(s.firings),
      s.sameSession ? (s.sessionId ?? "(same, not yet opened)") : "-",
      JSON.stringify(s.task.prompt.length > 40 ? `${s.task.prompt.slice(0, 39)}…` : s.task.prompt),
    ]),
  ];
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
  return (
    rows
      .map((row) => row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]!))).join("  "))
      .join("\n") + "\n"
  );
}

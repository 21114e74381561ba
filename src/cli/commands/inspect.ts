import { Command } from "commander";
import { ExitCode } from "../../shared/errors.js";
import { printRecord, printStatus } from "../output.js";
import { printBatchStatus, waitForBatch } from "./batch.js";
import { withDispatcher, durationOption, withConnection, exitWith, type ConnectionFlags } from "../options.js";

interface Flags extends ConnectionFlags {
  json?: boolean;
  timeout?: number;
}

export function statusCommand(): Command {
  const command = new Command("status")
    .description("show a job's state, attempts, session and error, or a batch's counts")
    .argument("<jobId|batchId>")
    .option("--json", "print the status as JSON");
  return withConnection(command).action(
    exitWith(async (jobId: string, flags: Flags) => {
      return withDispatcher(flags, async (dispatcher) => {
        const batch = await dispatcher.findBatch(jobId);
        if (batch) printBatchStatus(await batch.status(), Boolean(flags.json));
        else printStatus(await dispatcher.status(jobId), Boolean(flags.json));
        return ExitCode.ok;
      });
    }),
  );
}

export function resultCommand(): Command {
  const command = new Command("result")
    .description("print a finished job's answer (exit 1 if it failed, 5 if it has not finished)")
    .argument("<jobId>")
    .option("--json", "print the whole result record as JSON");
  return withConnection(command).action(
    exitWith(async (jobId: string, flags: Flags) => {
      return withDispatcher(flags, async (dispatcher) => {
        return printRecord(await dispatcher.result(jobId), Boolean(flags.json));
      });
    }),
  );
}

export function waitCommand(): Command {
  const command = new Command("wait")
    .description(
      "wait until jobs (or a whole batch) finish and print their answers (exit 1 if any failed, 5 on timeout)",
    )
    .argument("<jobId...>", "job IDs, or one batch ID")
    .option("--timeout <duration>", "give up after this long (ms, or 30s, 5m, …)", durationOption("--timeout"))
    .option("--json", "print one result record per line as JSON");
  return withConnection(command).action(
    exitWith(async (jobIds: string[], flags: Flags) => {
      return withDispatcher(flags, async (dispatcher) => {
        const batch = jobIds.length === 1 ? await dispatcher.findBatch(jobIds[0]!) : null;
        if (batch)
          return await waitForBatch(batch, { json: flags.json, recordsToStdout: flags.json, timeoutMs: flags.timeout });
        const deadline = flags.timeout === undefined ? undefined : Date.now() + flags.timeout;
        for (const jobId of jobIds) await dispatcher.status(jobId); // unknown IDs fail before any wait
        let exit: number = ExitCode.ok;
        const records = await Promise.all(
          jobIds.map((jobId) =>
            dispatcher.wait(jobId, {
              timeoutMs: deadline === undefined ? undefined : Math.max(0, deadline - Date.now()),
            }),
          ),
        );
        for (const record of records) {
          if (jobIds.length > 1 && !flags.json) process.stdout.write(`== ${record.jobId} (${record.state})\n`);
          exit = Math.max(exit, printRecord(record, Boolean(flags.json)));
        }
        return exit;
      });
    }),
  );
}

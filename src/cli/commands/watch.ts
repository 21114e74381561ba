import { Command } from "commander";
import type { Dispatcher } from "../../producer/dispatcher.js";
import { ExitCode } from "../../shared/errors.js";
import type { PendingApproval, ResultRecord } from "../../shared/result.js";
import { describeAsk, printJson, printRecord } from "../output.js";
import { exitWith, withConnection, withDispatcher, type ConnectionFlags } from "../options.js";

interface WatchFlags extends ConnectionFlags {
  after?: string;
  json?: boolean;
}

export function watchCommand(): Command {
  const command = new Command("watch")
    .description("print a job's answer as it is written, then wait for it to end (exit codes as wait: 1 if it failed)")
    .argument("<jobId>")
    .option("--after <eventId>", "resume after this event ID (from --json output)")
    .option("--json", "print every live event (state, text, tool, ask, progress, final) as one JSON line");
  return withConnection(command).action(
    exitWith(async (jobId: string, flags: WatchFlags) => {
      return withDispatcher(flags, (dispatcher) => watchJob(dispatcher, jobId, flags));
    }),
  );
}

/**
 * Prints a job's live answer to stdout piece by piece (tool calls and asks as short lines on
 * stderr), or every event as JSON with `json`. Returns the exit code of the final record.
 */
export async function watchJob(
  dispatcher: Dispatcher,
  jobId: string,
  flags: { after?: string; json?: boolean } = {},
): Promise<number> {
  let printed = false; // answer text on stdout since the attempt began
  let attempt: unknown; // the attempt that began it (one parked on an ask goes on under the same number)
  for await (const event of dispatcher.stream(jobId, { after: flags.after })) {
    if (flags.json) {
      printJson(event);
      if (event.type === "final")
        return (event.data.record as ResultRecord).state === "completed" ? ExitCode.ok : ExitCode.jobFailed;
      continue;
    }
    switch (event.type) {
      case "text":
        process.stdout.write(typeof event.data.text === "string" ? event.data.text : "");
        printed = true;
        break;
      case "tool":
        if (event.data.status === "running") process.stderr.write(`[${String(event.data.tool)}]\n`);
        break;
      case "ask":
        process.stderr.write(`[asked: ${String(event.data.kind)} ${String(event.data.what)}]\n`);
        break;
      case "state":
        if (event.data.state === "awaiting-approval") {
          const ask = event.data.approval as PendingApproval | undefined;
          process.stderr.write(
            `[awaiting approval: ${ask ? describeAsk(ask) : "a permission ask"}; answer with \`approve ${jobId}\` or \`reject ${jobId}\`]\n`,
          );
        } else if (event.data.state === "active" && printed && event.data.attempt !== attempt) {
          process.stdout.write("\n");
          process.stderr.write(`[attempt ${String(event.data.attempt)} starts over]\n`);
          printed = false;
        }
        if (event.data.state === "active" && !printed) attempt = event.data.attempt;
        break;
      case "final": {
        const record = event.data.record as ResultRecord;
        if (printed) {
          process.stdout.write("\n");
          // The answer is on screen already; a failure still says why.
          return record.state === "completed" ? ExitCode.ok : printRecord(record, false);
        }
        return printRecord(record, false);
      }
    }
  }
  return ExitCode.notFinished;
}

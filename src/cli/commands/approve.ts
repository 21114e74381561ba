import { userInfo } from "node:os";
import { Command } from "commander";
import type { ApprovalOutcome } from "../../producer/approvals.js";
import { ExitCode } from "../../shared/errors.js";
import { describeAsk, printJson } from "../output.js";
import { exitWith, withConnection, withDispatcher, type ConnectionFlags } from "../options.js";

interface AnswerFlags extends ConnectionFlags {
  by?: string;
  json?: boolean;
}

/** Who answers, by default: the user running the command. */
function defaultBy(): string {
  try {
    return userInfo().username;
  } catch {
    return "cli";
  }
}

function report(outcome: ApprovalOutcome, json: boolean | undefined): number {
  if (json) printJson(outcome);
  else {
    const { decision, ask } = outcome;
    const said =
      decision.answer === "reject"
        ? "rejected"
        : decision.answer === "always"
          ? "approved for the rest of the job"
          : "approved once";
    process.stdout.write(`job ${outcome.jobId}: ${describeAsk(ask)} ${said}; the job resumes\n`);
  }
  return ExitCode.ok;
}

export function approveCommand(): Command {
  const command = new Command("approve")
    .description(
      "approve the permission ask a job in state awaiting-approval waits on; the job resumes on any worker and the approved action runs (exit 6 if it waits on no ask)",
    )
    .argument("<jobId>")
    .option(
      "--always",
      "approve what opencode suggests for the ask (e.g. its whole directory) for the rest of the job, not only this one ask",
    )
    .option("--by <name>", "who approves, kept in the record's asks (default: your user name)")
    .option("--json", "print { jobId, ask, decision } as JSON");
  return withConnection(command).action(
    exitWith(async (jobId: string, flags: AnswerFlags & { always?: boolean }) => {
      return withDispatcher(flags, async (dispatcher) =>
        report(await dispatcher.approve(jobId, { always: flags.always, by: flags.by ?? defaultBy() }), flags.json),
      );
    }),
  );
}

export function rejectCommand(): Command {
  const command = new Command("reject")
    .description(
      "reject the permission ask a job in state awaiting-approval waits on; the job resumes, its agent is told, and it ends as the agent decides (exit 6 if it waits on no ask)",
    )
    .argument("<jobId>")
    .option("--message <text>", "why, told to the agent (and kept in the record's asks)")
    .option("--by <name>", "who rejects, kept in the record's asks (default: your user name)")
    .option("--json", "print { jobId, ask, decision } as JSON");
  return withConnection(command).action(
    exitWith(async (jobId: string, flags: AnswerFlags & { message?: string }) => {
      return withDispatcher(flags, async (dispatcher) =>
        report(await dispatcher.reject(jobId, { message: flags.message, by: flags.by ?? defaultBy() }), flags.json),
      );
    }),
  );
}

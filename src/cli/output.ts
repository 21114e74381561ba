import type { JobStatus } from "../producer/job-status.js";
import { ExitCode } from "../shared/errors.js";
import type { PendingApproval, ResultRecord } from "../shared/result.js";

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Prints a final record: JSON, or the answer text (the error goes to stderr). Returns the exit code. */
export function printRecord(record: ResultRecord, json: boolean): number {
  if (json) printJson(record);
  else if (record.state === "completed") {
    // A task with a schema answers with its structured object.
    process.stdout.write(`${record.structured != null ? JSON.stringify(record.structured) : (record.text ?? "")}\n`);
  }
  if (record.state !== "completed") {
    const error = record.error ? `${record.error.name}: ${record.error.message}` : "unknown error";
    process.stderr.write(`job ${record.jobId} failed after ${record.attempts} attempt(s): ${error}\n`);
    return ExitCode.jobFailed;
  }
  return ExitCode.ok;
}

export function printStatus(status: JobStatus, json: boolean): void {
  if (json) return printJson(status);
  const r = status.result;
  const fields = [
    `job ${status.jobId}`,
    `state=${status.state}`,
    `attempts=${status.attempts}`,
    r?.sessionId ? `session=${r.sessionId}` : "",
    r?.model ? `model=${r.model}` : "",
    r?.error ? `error="${r.error.name}: ${r.error.message}"` : "",
    status.waitingFor ? `(${status.waitingFor})` : "",
  ];
  const kids = status.children;
  if (kids) {
    const c = kids.counts;
    fields.push(
      `children: batch ${kids.batchId}  total=${kids.total}  completed=${c.completed}  failed=${c.failed}  running=${c.running}  queued=${c.queued}`,
    );
  }
  process.stdout.write(`${fields.filter(Boolean).join("  ")}\n`);
  if (status.state === "awaiting-approval" && r?.approval) {
    const ask = r.approval;
    process.stdout.write(`asks: ${describeAsk(ask)}  until=${ask.timeoutAt}\n`);
    if (ask.words)
      process.stdout.write(
        `agent: ${JSON.stringify(ask.words.length > 500 ? `${ask.words.slice(0, 499)}…` : ask.words)}\n`,
      );
  }
}

/** A pending permission ask in a line: `read wants external_directory /etc/*`. */
export function describeAsk(ask: PendingApproval): string {
  return `${ask.tool ? `${ask.tool} wants ` : ""}${ask.permission}${ask.patterns.length ? ` ${ask.patterns.join(" ")}` : ""}`;
}

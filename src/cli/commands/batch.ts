import { createWriteStream, type WriteStream } from "node:fs";
import { once } from "node:events";
import { Command, Option } from "commander";
import type { BatchHandle, BatchProgress, BatchStatus } from "../../producer/batch/handle.js";
import { fileSource, spoolToFile, type BatchFormat } from "../../producer/batch/source.js";
import type { BatchReceipt } from "../../producer/batch/submit.js";
import type { BatchBudget } from "../../producer/batch/store.js";
import type { BatchSummary } from "../../producer/batch/summary.js";
import { ExitCode, InputError } from "../../shared/errors.js";
import type { TaskInput } from "../../shared/task.js";
import { printJson } from "../output.js";
import { exitWith, intOption, numberOption, withConnection, withDispatcher } from "../options.js";
import { taskFromFlags, withTaskOptions, type TaskFlags } from "./enqueue.js";

interface BatchFlags extends TaskFlags {
  /** Per-task caps (`--max-cost` / `--max-tokens` are the batch's budget here). */
  taskMaxCost?: number;
  taskMaxTokens?: number;
  format: BatchFormat;
  skipInvalid?: boolean;
  wait?: boolean;
  out?: string;
  json?: boolean;
  then?: string;
  thenModel?: string;
  thenOn?: "all" | "completed";
}

export function batchCommand(): Command {
  const command = new Command("batch")
    .description("enqueue a file of tasks (JSON Lines, or one prompt per line) as one batch; prints the batch ID")
    .argument("<file>", 'the tasks, or "-" to read them from stdin');
  withTaskOptions(command, { perTaskCaps: "task-" })
    .option(
      "--max-cost <usd>",
      "a budget for the whole batch: once its tasks have spent more, no task starts, running ones stop, the rest fail BudgetExceeded",
      numberOption("--max-cost"),
    )
    .option(
      "--max-tokens <n>",
      "a budget of tokens for the whole batch, enforced like --max-cost",
      intOption("--max-tokens", 1),
    )
    .option(
      "--id <batchId>",
      "batch ID (default: a hash of the input and options, so re-submitting adds only what is missing)",
    )
    .option(
      "--then <prompt>",
      "a parent task that runs once every task has ended, its prompt followed by their results (line, job ID, state, answer or error; attached as results.jsonl when large); its job ID is <batchId>-then",
    )
    .option("--then-model <provider/model>", "the parent's model (default: --model)")
    .addOption(
      new Option(
        "--then-on <which>",
        "all: the parent runs whatever the tasks' outcomes; completed: it fails UpstreamFailed if any task did not complete",
      ).choices(["all", "completed"]),
    )
    .addOption(
      new Option("--format <format>", "input format: jsonl, text, or auto (a first line starting with { means jsonl)")
        .choices(["auto", "jsonl", "text"])
        .default("auto"),
    )
    .option("--skip-invalid", "enqueue the valid tasks and skip invalid lines (default: reject the whole batch)")
    .option("--wait", "wait for every task, show progress on stderr, print a summary (exit 1 if any failed)")
    .option("--out <file>", "write each result record as a JSON line to this file as jobs finish (implies --wait)")
    .option("--json", "print JSON: the receipt, or with --wait the summary");
  withConnection(command).action(
    exitWith(async (file: string, flags: BatchFlags) => {
      const { prompt: _prompt, ...defaults } = taskFromFlags("-", {
        ...flags,
        id: undefined,
        maxCost: flags.taskMaxCost,
        maxTokens: flags.taskMaxTokens,
      });
      let spooled: Awaited<ReturnType<typeof spoolToFile>> | undefined;
      if (file === "-") {
        if (process.stdin.isTTY) throw new InputError('file "-" reads the tasks from stdin, but stdin is a terminal');
        spooled = await spoolToFile(process.stdin);
      }
      try {
        return await withDispatcher(flags, async (dispatcher) => {
          const source = await fileSource(spooled?.path ?? file, flags.format);
          const handle = await dispatcher.submitBatch(source, {
            id: flags.id,
            defaults: defaults,
            skipInvalid: flags.skipInvalid,
            maxCost: flags.maxCost,
            maxTokens: flags.maxTokens,
            ...thenOptions(flags),
            onEnqueued: enqueueProgress(),
          });
          const receipt = handle.receipt!;
          for (const bad of receipt.invalidLines) process.stderr.write(`line ${bad.line}: ${bad.error} (skipped)\n`);
          if (receipt.invalid > receipt.invalidLines.length)
            process.stderr.write(`… and ${receipt.invalid - receipt.invalidLines.length} more invalid lines skipped\n`);
          process.stderr.write(`${describeReceipt(receipt)}\n`);
          if (receipt.thenJobId) process.stderr.write(`parent ${receipt.thenJobId} runs once every task has ended\n`);
          if (!flags.wait && !flags.out) {
            if (flags.json) printJson(receiptJson(receipt));
            else process.stdout.write(`${receipt.batchId}\n`);
            return ExitCode.ok;
          }
          const code = await waitForBatch(handle, { out: flags.out, json: flags.json, receipt });
          if (!receipt.thenJobId) return code;
          // The parent's answer is what a batch with --then is for: waited for and printed too.
          const parent = await dispatcher.wait(receipt.thenJobId);
          if (flags.json) printJson(parent);
          else
            process.stdout.write(
              `parent ${parent.jobId} ${parent.state}: ${parent.state === "completed" ? (parent.text ?? "") : `${parent.error?.name}: ${parent.error?.message}`}\n`,
            );
          return parent.state === "completed" ? code : ExitCode.jobFailed;
        });
      } finally {
        await spooled?.cleanup();
      }
    }),
  );
  return command;
}

/** `--then`, `--then-model`, `--then-on` as the library's `then` / `thenOn`. */
function thenOptions(flags: BatchFlags): { then?: TaskInput; thenOn?: "all" | "completed" } {
  if (flags.then === undefined) {
    if (flags.thenModel !== undefined || flags.thenOn !== undefined)
      throw new InputError("--then-model and --then-on apply to a batch with --then");
    return {};
  }
  return {
    then: { prompt: flags.then, ...(flags.thenModel ? { model: flags.thenModel } : {}) },
    ...(flags.thenOn ? { thenOn: flags.thenOn } : {}),
  };
}

function receiptJson(receipt: BatchReceipt) {
  const { invalidLines, ...rest } = receipt;
  return { ...rest, invalidLines };
}

function describeReceipt(r: BatchReceipt): string {
  const parts = [`${r.enqueued} enqueued`];
  if (r.duplicates) parts.push(`${r.duplicates} already enqueued`);
  if (r.invalid) parts.push(`${r.invalid} invalid skipped`);
  return `batch ${r.batchId}: ${r.total} task${r.total === 1 ? "" : "s"}, ${parts.join(", ")}`;
}

/** On a terminal, a live count of enqueued tasks for large batches. */
function enqueueProgress() {
  if (!process.stderr.isTTY) return undefined;
  return (p: { processed: number; total: number }) => {
    if (p.total < 5_000) return;
    process.stderr.write(`\renqueueing ${p.processed}/${p.total}${p.processed === p.total ? "\n" : ""}`);
  };
}

/**
 * Waits for a batch: progress on stderr (a bar on a terminal, a line every few seconds otherwise),
 * records to `out` (JSON Lines) or, with `json` and no `out`, to stdout, then the summary.
 * Returns 1 if any task failed, 0 otherwise; a timeout rejects with NotFinishedError (exit 5).
 */
export async function waitForBatch(
  handle: BatchHandle,
  opts: { out?: string; json?: boolean; timeoutMs?: number; receipt?: BatchReceipt; recordsToStdout?: boolean },
): Promise<number> {
  let out: WriteStream | undefined;
  if (opts.out) {
    out = createWriteStream(opts.out, { flags: "w" });
    await once(out, "open");
  }
  const recordSink = out ?? (opts.recordsToStdout ? process.stdout : undefined);
  if (recordSink) handle.on("result", (record) => void recordSink.write(`${JSON.stringify(record)}\n`));
  const render = progressRenderer();
  handle.on("progress", (progress) => render.update(progress));
  let summary: BatchSummary;
  try {
    summary = await handle.wait({ timeoutMs: opts.timeoutMs, progressMs: process.stderr.isTTY ? 200 : 1_000 });
  } finally {
    render.end();
    if (out) await new Promise<void>((resolve) => out.end(resolve));
  }
  if (opts.json && !opts.recordsToStdout) printJson({ ...(opts.receipt ? receiptJson(opts.receipt) : {}), ...summary });
  else (opts.json ? process.stderr : process.stdout).write(formatSummary(summary));
  return summary.failed > 0 ? ExitCode.jobFailed : ExitCode.ok;
}

function progressRenderer() {
  const tty = Boolean(process.stderr.isTTY);
  let lastLine = 0;
  let last: BatchProgress | undefined;
  return {
    update(p: BatchProgress) {
      last = p;
      if (tty) {
        process.stderr.write(
          `\r${progressBar(p, Math.max(10, Math.min(30, (process.stderr.columns ?? 80) - 70)))}\x1b[K`,
        );
        return;
      }
      const now = Date.now();
      if (now - lastLine >= 5_000 || p.finished === p.total) {
        lastLine = now;
        process.stderr.write(`${progressText(p)}\n`);
      }
    },
    end() {
      if (tty && last) process.stderr.write("\n");
    },
  };
}

export function progressText(p: BatchProgress): string {
  const eta = p.etaMs === null ? "" : `  eta ${formatMs(p.etaMs)}`;
  return `batch ${p.batchId}: ${p.finished}/${p.total}  done ${p.completed}  failed ${p.failed}  running ${p.running}  queued ${p.queued}  ${p.rate.toFixed(1)}/s${eta}`;
}

function progressBar(p: BatchProgress, width: number): string {
  const fraction = p.total > 0 ? p.finished / p.total : 1;
  const filled = Math.round(fraction * width);
  const bar = "█".repeat(filled) + "░".repeat(width - filled);
  const eta = p.etaMs === null ? "" : `  ETA ${formatMs(p.etaMs)}`;
  return `[${bar}] ${p.finished}/${p.total}  done ${p.completed}  failed ${p.failed}  running ${p.running}  ${p.rate.toFixed(1)}/s${eta}`;
}

export function formatMs(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  if (ms < 3_600_000)
    return `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1_000)).padStart(2, "0")}s`;
  return `${Math.floor(ms / 3_600_000)}h${String(Math.round((ms % 3_600_000) / 60_000)).padStart(2, "0")}m`;
}

/** The human summary: counts, tokens, cost, durations, failures with their errors. */
export function formatSummary(s: BatchSummary): string {
  const ms = s.spanMs ?? s.wallMs; // first enqueue → last finish; the wait's own time if unknown
  const rate = ms > 0 ? ` (${(((s.completed + s.failed) * 1000) / ms).toFixed(1)}/s)` : "";
  const head = `batch ${s.batchId}: ${s.total} tasks, ${s.completed} completed, ${s.failed} failed in ${formatMs(ms)}${rate}\n`;
  const lines = [
    head.trimEnd(),
    `tokens: ${s.tokens.total} (input ${s.tokens.input}, output ${s.tokens.output}, reasoning ${s.tokens.reasoning}, cache read ${s.tokens.cacheRead}, cache write ${s.tokens.cacheWrite})  cost: $${s.cost.toFixed(4)}`,
    s.durationMs
      ? `duration per task: p50 ${formatMs(s.durationMs.p50)}, p95 ${formatMs(s.durationMs.p95)}, max ${formatMs(s.durationMs.max)}`
      : "duration per task: -",
  ];
  if (s.budget) lines.push(describeBudget(s.budget));
  if (s.failures.length) {
    lines.push(`failures (${s.failed}):`);
    for (const f of s.failures.slice(0, 50))
      lines.push(`  line ${f.line} (${f.jobId}): ${f.error ? `${f.error.name}: ${f.error.message}` : "unknown error"}`);
    if (s.failed > 50) lines.push(`  … and ${s.failed - 50} more`);
  }
  return `${lines.join("\n")}\n`;
}

export function printBatchStatus(status: BatchStatus, json: boolean): void {
  if (json) return printJson(status);
  const c = status.counts;
  process.stdout.write(
    `batch ${status.batchId}  total=${status.total}  completed=${c.completed}  failed=${c.failed}  running=${c.running}  queued=${c.queued}` +
      `${status.invalid ? `  invalid=${status.invalid}` : ""}${status.complete ? "" : `  enqueued=${status.members} (submission incomplete)`}\n` +
      (status.budget ? `${describeBudget(status.budget)}\n` : ""),
  );
}

/** `budget: $4.8000 of --max-cost $3 spent — exceeded: …`, or what is left of it. */
export function describeBudget(b: BatchBudget): string {
  const caps = [
    ...(b.maxCost !== null ? [`$${b.spent.cost.toFixed(4)} of --max-cost $${b.maxCost}`] : []),
    ...(b.maxTokens !== null ? [`${b.spent.tokens} tokens of --max-tokens ${b.maxTokens}`] : []),
  ];
  const verdict = b.exceeded
    ? `EXCEEDED: no task started after that, running tasks were stopped, the rest failed BudgetExceeded`
    : "within budget";
  return `budget: ${caps.join(", ")} spent; ${verdict}`;
}

import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { InputError } from "../../shared/errors.js";
import type { TaskInput } from "../../shared/task.js";

/** One line (or array element) of a batch: a task object, or why it is not one. */
export type BatchEntry =
  { line: number; input: Record<string, unknown>; raw: string } | { line: number; error: string; raw: string };

/**
 * Where a batch's tasks come from. `entries()` is called twice (validate, then enqueue), and must
 * yield the same entries in the same order each time, without holding them all in memory.
 */
export interface BatchSource {
  readonly kind: "batch-source";
  entries(): AsyncIterable<BatchEntry>;
}

/** `jsonl`: one task object per line; `text`: one prompt per line; `auto`: by the first non-blank line. */
export type BatchFormat = "auto" | "jsonl" | "text";

/** Tasks given in memory, or a function returning them afresh on each call (for streaming). */
export type TaskList = readonly TaskInput[] | (() => Iterable<TaskInput> | AsyncIterable<TaskInput>);

export function isBatchSource(value: unknown): value is BatchSource {
  return typeof value === "object" && value !== null && (value as BatchSource).kind === "batch-source";
}

/** A source over tasks from the library: entry N is task N-1 (its "line" is N). */
export function taskListSource(tasks: TaskList): BatchSource {
  return {
    kind: "batch-source",
    async *entries() {
      let line = 0;
      const iterable = typeof tasks === "function" ? tasks() : tasks;
      for await (const task of iterable as AsyncIterable<TaskInput>) {
        line += 1;
        const raw = JSON.stringify(task) ?? "";
        if (task && typeof task === "object" && !Array.isArray(task)) yield { line, input: { ...task }, raw };
        else yield { line, error: "must be a task object", raw };
      }
    },
  };
}

/** Decides the format of a file from its first non-blank line (a `{` means JSON Lines). */
export async function detectFormat(path: string): Promise<"jsonl" | "text"> {
  for await (const line of readLines(path)) {
    const trimmed = line.trim();
    if (trimmed) return trimmed.startsWith("{") ? "jsonl" : "text";
  }
  return "text";
}

async function* readLines(path: string): AsyncIterable<string> {
  const stream = createReadStream(path, { encoding: "utf8", highWaterMark: 256 * 1024 });
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let first = true;
  try {
    for await (const line of lines) {
      yield first && line.startsWith("\uFEFF") ? line.slice(1) : line; // a UTF-8 byte order mark
      first = false;
    }
  } finally {
    lines.close();
    stream.destroy();
  }
}

/**
 * A source over a file, read line by line on each pass (never whole). Blank lines are skipped
 * but counted, so line numbers match the file's.
 */
export async function fileSource(
  path: string,
  format: BatchFormat = "auto",
): Promise<BatchSource & { format: "jsonl" | "text" }> {
  await open(path, "r")
    .then((handle) => handle.close())
    .catch((error: NodeJS.ErrnoException) => {
      throw new InputError(`cannot read ${path}: ${error.code ?? error.message}`);
    });
  const resolved = format === "auto" ? await detectFormat(path) : format;
  return {
    kind: "batch-source",
    format: resolved,
    async *entries() {
      let line = 0;
      for await (const raw of readLines(path)) {
        line += 1;
        if (!raw.trim()) continue;
        if (resolved === "text") {
          yield { line, input: { prompt: raw }, raw };
          continue;
        }
        yield parseJsonLine(line, raw);
      }
    },
  };
}

function parseJsonLine(line: number, raw: string): BatchEntry {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    return { line, error: `not valid JSON (${(error as Error).message})`, raw };
  }
  if (!value || typeof value !== "object" || Array.isArray(value))
    return { line, error: "must be a JSON object (a task)", raw };
  return { line, input: value as Record<string, unknown>, raw };
}

/**
 * Copies a stream (stdin) to a temporary file so it can be read twice; `cleanup()` removes it.
 */
export async function spoolToFile(input: Readable): Promise<{ path: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "ocd-batch-"));
  const path = join(dir, "stdin");
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    await pipeline(input, createWriteStream(path));
  } catch (error) {
    await cleanup();
    throw error;
  }
  return { path, cleanup };
}

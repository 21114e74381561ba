import type { Redis } from "ioredis";
import { batchMemberChunks } from "../../shared/batch-members.js";
import { isFinal } from "../../shared/job-state.js";
import type { QueueKeys } from "../../shared/keys.js";
import type { ResultRecord } from "../../shared/result.js";
import type { ResultStore } from "../../shared/result-store.js";
import type { JobPayload } from "../../shared/task.js";
import { UpstreamError } from "../failures.js";

/**
 * A batch's parent (`then`): what its members left, read from their records once they have all
 * ended, and given to the parent's prompt — inline up to INLINE_RESULTS_BYTES, else as an attached
 * JSON Lines file.
 */

/** Results up to this size travel inside the prompt; larger ones as an attached file. */
export const INLINE_RESULTS_BYTES = 64 * 1024;
const CHUNK = 500;

/** One member's line of the results. */
export interface ChildResult {
  line: number;
  jobId: string;
  /** `completed`, `failed`, or `removed` (taken out of the queue before it ran, without a record). */
  state: string;
  answer?: string | null;
  structured?: unknown;
  error?: { name: string; message: string } | null;
}

/** What the parent's record shows of its children. */
export interface ChildCounts {
  batch: string;
  total: number;
  completed: number;
  failed: number;
  removed: number;
}

const hasEnded = (record: ResultRecord | null) => record !== null && isFinal(record.state);

/** The batch's members in line order, `CHUNK` at a time, with their records (null: none yet). */
async function* members(
  redis: Redis,
  store: ResultStore,
  batch: string,
): AsyncIterable<{ jobId: string; line: number; record: ResultRecord | null }[]> {
  for await (const chunk of batchMemberChunks(redis, store.keys.batchJobs(batch), CHUNK)) {
    const records = await store.getMany(chunk.map((m) => m.jobId));
    yield chunk.map((m, i) => ({ ...m, record: records[i] ?? null }));
  }
}

/** Whether BullMQ still holds these jobs (a member without a final record that is gone was removed). */
async function held(redis: Redis, keys: QueueKeys, jobIds: readonly string[]): Promise<boolean[]> {
  if (jobIds.length === 0) return [];
  const pipe = redis.pipeline();
  for (const id of jobIds) pipe.exists(`${keys.bull}${id}`);
  return ((await pipe.exec()) ?? []).map(([, n]) => Number(n) > 0);
}

/**
 * The members that have ended by their records (final, or removed without one): counted again
 * when the parent finds its batch unfinished, in case one ended without counting itself.
 */
export async function endedMembers(redis: Redis, store: ResultStore, batch: string): Promise<string[]> {
  const ended: string[] = [];
  for await (const chunk of members(redis, store, batch)) {
    const open = chunk.filter((m) => !hasEnded(m.record));
    const stillHeld = await held(
      redis,
      store.keys,
      open.map((m) => m.jobId),
    );
    for (const m of chunk) if (hasEnded(m.record)) ended.push(m.jobId);
    open.forEach((m, i) => {
      if (!stillHeld[i]) ended.push(m.jobId);
    });
  }
  return ended;
}

/** Every member's result, in line order, and the counts. */
export async function childResults(
  redis: Redis,
  store: ResultStore,
  batch: string,
): Promise<{ results: ChildResult[]; counts: ChildCounts }> {
  const results: ChildResult[] = [];
  const counts: ChildCounts = { batch, total: 0, completed: 0, failed: 0, removed: 0 };
  for await (const chunk of members(redis, store, batch)) {
    for (const { jobId, line, record } of chunk) {
      counts.total += 1;
      if (record?.state === "completed") {
        counts.completed += 1;
        results.push({
          line,
          jobId,
          state: "completed",
          answer: record.text,
          ...(record.structured != null ? { structured: record.structured } : {}),
        });
      } else if (record?.state === "failed") {
        counts.failed += 1;
        results.push({
          line,
          jobId,
          state: "failed",
          error: record.error ? { name: record.error.name, message: record.error.message } : null,
        });
      } else {
        counts.removed += 1;
        results.push({
          line,
          jobId,
          state: "removed",
          error: { name: "Removed", message: "taken out of the queue before it ran" },
        });
      }
    }
  }
  return { results, counts };
}

/** `thenOn: "completed"`: the members that did not complete fail the parent, named. */
export function checkAllCompleted(results: readonly ChildResult[], batch: string): void {
  const short = results.filter((r) => r.state !== "completed");
  if (short.length === 0) return;
  const shown = short
    .slice(0, 10)
    .map((r) => `line ${r.line} (${r.jobId}) ${r.state}${r.error ? `: ${r.error.name}` : ""}`);
  const more = short.length > shown.length ? `, and ${short.length - shown.length} more` : "";
  throw new UpstreamError(
    `${short.length} of ${results.length} children of batch ${batch} did not complete (then-on completed): ${shown.join("; ")}${more}`,
  );
}

/** The parent's payload with its children's results after its prompt (or attached, when large). */
export function withResults(payload: JobPayload, results: readonly ChildResult[], batch: string): JobPayload {
  const jsonl = results.map((r) => JSON.stringify(r)).join("\n");
  const intro = `Results of the ${results.length} tasks of batch ${batch}, one JSON object per line (line, jobId, state, and answer or error)`;
  if (Buffer.byteLength(jsonl) <= INLINE_RESULTS_BYTES) {
    return { ...payload, prompt: `${payload.prompt}\n\n${intro}:\n${jsonl}` };
  }
  const file = {
    filename: "results.jsonl",
    mime: "text/plain",
    url: `data:text/plain;base64,${Buffer.from(jsonl).toString("base64")}`,
  };
  return {
    ...payload,
    prompt: `${payload.prompt}\n\n${intro}, are in the attached file results.jsonl.`,
    files: [...(payload.files ?? []), file],
  };
}

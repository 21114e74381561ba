import type { Redis } from "ioredis";
import { NotFinishedError, NotFoundError } from "../shared/errors.js";
import { readLive, type LiveEvent } from "../shared/live.js";
import { closeRedis, connectRedis } from "../shared/redis.js";
import { FINAL_STATES, type ResultRecord } from "../shared/result.js";
import type { ResultStore } from "../shared/result-store.js";

/** How long one read waits for the next event before checking that the job is still there. */
const BACKSTOP_MS = 30_000;

export interface StreamOptions {
  /** Resume after this event ID (an event's `id`, or SSE Last-Event-ID); default: from the start. */
  after?: string;
  signal?: AbortSignal;
}

export interface StreamDeps {
  redisUrl: string;
  store: ResultStore;
  /** Whether BullMQ still holds the job (a job with neither job nor record was removed). */
  jobExists(jobId: string): Promise<boolean>;
}

/**
 * A job's live events in order (see shared/live.ts), until its `final` event (whose data carries
 * the final `record`). Waits on a blocking read of its own connection: nothing polls. A job whose
 * stream has expired but whose record is final yields just that `final` event. Ends with
 * NotFoundError when the job vanished without a record, NotFinishedError when `signal` aborts.
 */
export async function* streamJob(deps: StreamDeps, jobId: string, opts: StreamOptions = {}): AsyncGenerator<LiveEvent> {
  const key = deps.store.keys.live(jobId);
  const connection: Redis = await connectRedis(deps.redisUrl, "producer");
  const onAbort = () => connection.disconnect();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  let after = opts.after && /^\d+-\d+$/.test(opts.after) ? opts.after : "0";
  try {
    if ((await connection.exists(key)) === 0) {
      const record = await deps.store.get(jobId);
      if (record && FINAL_STATES.has(record.state)) {
        yield finalEvent("0-1", record);
        return;
      }
    }
    for (;;) {
      opts.signal?.throwIfAborted();
      const events = await readLive(connection, key, after, BACKSTOP_MS).catch((error: unknown) => {
        if (opts.signal?.aborted) throw new NotFinishedError(`stopped watching job ${jobId}`);
        throw error;
      });
      for (const event of events) {
        after = event.id;
        if (event.type === "final") {
          const record = await deps.store.get(jobId);
          yield record ? finalEvent(event.id, record) : event;
          return;
        }
        yield event;
      }
      if (events.length === 0) {
        // Nothing for a while: a job removed without a record would otherwise be waited for forever.
        const record = await deps.store.get(jobId);
        if (record && FINAL_STATES.has(record.state)) {
          yield finalEvent(after, record);
          return;
        }
        if (!record && !(await deps.jobExists(jobId))) throw new NotFoundError(`job ${jobId} was removed before it finished`);
      }
    }
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    await closeRedis(connection);
  }
}

function finalEvent(id: string, record: ResultRecord): LiveEvent {
  return { id, type: "final", data: { state: record.state, record } };
}

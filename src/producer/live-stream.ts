import type { Job } from "bullmq";
import type { Redis } from "ioredis";
import { failedFromJob } from "../shared/record.js";
import { NotFinishedError, NotFoundError } from "../shared/errors.js";
import { readLive, type LiveEvent } from "../shared/live.js";
import { closeRedis, connectRedis } from "../shared/redis.js";
import { isFinal } from "../shared/job-state.js";
import type { ResultRecord } from "../shared/result.js";
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
  /** The job as BullMQ holds it, if it does (a job with neither job nor record was removed). */
  getJob(jobId: string): Promise<Job | undefined>;
}

/**
 * A job's live events in order (see shared/live.ts), until its `final` event (whose data carries
 * the final `record`). Waits on a blocking read of its own connection: nothing polls. A job whose
 * stream has expired but whose record is final yields just that `final` event. Ends with
 * NotFoundError when the job vanished without a record, NotFinishedError when `signal` aborts.
 */
export async function* streamJob(deps: StreamDeps, jobId: string, opts: StreamOptions = {}): AsyncGenerator<LiveEvent> {
  const key = deps.store.keys.live(jobId);
  // A connection of its own for the blocking reads, which waits for Redis rather than fail on a blip.
  const connection: Redis = await connectRedis(deps.redisUrl, "worker");
  const onAbort = () => connection.disconnect();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  let after = opts.after && /^\d+-\d+$/.test(opts.after) ? opts.after : "0";
  try {
    // The first read does not wait: a job that has ended (its stream expired, or read to its end
    // by a client resuming after `final`) ends the stream at once.
    for (let blockMs = 0; ; blockMs = BACKSTOP_MS) {
      opts.signal?.throwIfAborted();
      const events = await readLive(connection, key, after, blockMs).catch((error: unknown) => {
        if (opts.signal?.aborted) throw new NotFinishedError(`stopped watching job ${jobId}`);
        throw error;
      });
      for (const event of events) {
        after = event.id;
        if (event.type === "final") {
          const record = await deps.store.get(jobId);
          if (!record) throw new NotFoundError(`job ${jobId} ended, but its record is gone`);
          if (!isFinal(record.state)) continue; // an earlier end: the job was retried since
          yield finalEvent(event.id, record);
          return;
        }
        yield event;
      }
      if (events.length === 0) {
        // Nothing (for a while): an ended job, one BullMQ failed without a record, or one removed.
        const record = await deps.store.get(jobId);
        if (record && isFinal(record.state)) {
          yield finalEvent(after === "0" ? "0-1" : after, record);
          return;
        }
        const job = await deps.getJob(jobId);
        if (job && (await job.isFailed())) {
          yield finalEvent(after === "0" ? "0-1" : after, failedFromJob(job, record));
          return;
        }
        if (!record && !job) throw new NotFoundError(`job ${jobId} was removed before it finished`);
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

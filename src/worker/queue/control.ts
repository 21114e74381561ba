import { UnrecoverableError, type Job, type Worker } from "bullmq";
import type { Redis } from "ioredis";
import { CANCEL_REASON, CANCELLED, cancelledRecord, ControlMessage } from "../../shared/cancel.js";
import type { QueueKeys } from "../../shared/keys.js";
import type { Logger } from "../../shared/logger.js";
import { closeRedis, connectRedis } from "../../shared/redis.js";
import type { ResultStore } from "../../shared/result-store.js";

/**
 * Listens on the queue's control channel. `cancel` messages reach every worker; the one running
 * the job aborts it through BullMQ (`worker.cancelJob(id, "cancelled")`), which the processor turns
 * into a non-retryable "Cancelled" failure and an aborted opencode session. `batch-budget`
 * messages go to `onBatchBudget`.
 */
export async function startControl(opts: {
  redisUrl: string;
  keys: QueueKeys;
  worker: Worker;
  log: Logger;
  /** A batch passed its budget: stop its members running here. */
  onBatchBudget?: (message: Extract<ControlMessage, { type: "batch-budget" }>) => void;
  /** The channel is back after a reconnect: messages sent meanwhile were missed. */
  onReconnect?: () => void;
}): Promise<{ close(): Promise<void> }> {
  const subscriber = await connectRedis(opts.redisUrl, "subscriber", { timeoutMs: 10_000 });
  subscriber.on("ready", () => opts.onReconnect?.()); // not for the first connection: that came before
  subscriber.on("error", (error: Error) => opts.log.debug({ err: error }, "control channel connection error"));
  subscriber.on("message", (channel: string, raw: string) => {
    if (channel !== opts.keys.control) return;
    let message: ControlMessage;
    try {
      message = ControlMessage.parse(JSON.parse(raw));
    } catch {
      opts.log.warn({ message: raw.slice(0, 200) }, "ignoring an unreadable control message");
      return;
    }
    if (message.type === "batch-budget") return opts.onBatchBudget?.(message);
    if (opts.worker.cancelJob(message.jobId, CANCEL_REASON)) {
      opts.log.info({ jobId: message.jobId }, "cancelling the job on request");
    }
  });
  await subscriber.subscribe(opts.keys.control);
  return { close: () => closeRedis(subscriber) };
}

type Processor<R> = (job: Job, token?: string, signal?: AbortSignal) => Promise<R>;

/**
 * Wraps a processor so that a job whose cancel was requested while no worker ran it (its worker
 * died, or it was fetched the moment the cancel came) is refused: failed "Cancelled" at once.
 */
export function refuseCancelled<R>(
  processor: Processor<R>,
  deps: { connection: Redis; store: ResultStore; log: Logger },
): Processor<R> {
  return async (job, token, signal) => {
    const jobId = job.id!;
    if ((await deps.connection.exists(deps.store.keys.cancelRequest(jobId))) === 1) {
      const record = cancelledRecord(jobId, job.data, await deps.store.get(jobId), "cancelled before it ran");
      await deps.store.put(record);
      await deps.connection.del(deps.store.keys.cancelRequest(jobId));
      deps.log.info({ jobId }, "job refused: it was cancelled");
      throw new UnrecoverableError(`${CANCELLED}: ${record.error!.message}`);
    }
    return processor(job, token, signal);
  };
}

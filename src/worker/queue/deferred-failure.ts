import type { Job, Worker } from "bullmq";
import type { Logger } from "pino";
import { failedFromJob } from "../../shared/record.js";
import { isFinal } from "../../shared/job-state.js";
import type { ResultStore } from "../../shared/result-store.js";

/**
 * BullMQ fails a job that stalled more often than allowed (its workers died or lost its lock
 * while running it) by itself: the next worker to fetch it fails it without calling the
 * processor. Nothing of ours ran, so this writes the job's final record here — which also queues
 * its webhook and wakes its waiters and follow-ups. Listens for as long as the worker lives.
 */
export function recordDeferredFailures(worker: Worker, store: ResultStore, log: Logger): void {
  const listener = (job: Job | undefined) => {
    if (!job?.id || !job.deferredFailure) return;
    const jobId = job.id;
    void (async () => {
      const previous = await store.get(jobId);
      if (previous && isFinal(previous.state)) return;
      const record = failedFromJob(job, previous);
      record.error = {
        name: "Stalled",
        message: `${job.deferredFailure}: the workers running it stopped or lost its lock too often`,
        retryable: false,
      };
      record.finishedAt ??= new Date().toISOString();
      await store.put(record);
      await store.keepTask(job);
      log.warn(
        { jobId, sessionId: record.sessionId, reason: job.deferredFailure },
        "job failed by the queue: it stalled too often",
      );
    })().catch((err: unknown) => log.error({ jobId, err }, "could not record a job the queue failed for stalling"));
  };
  worker.on("failed", listener);
}

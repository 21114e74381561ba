import type { JobsOptions, Queue } from "bullmq";
import { LANE_BACKSTOP_MS, type Scheduler } from "../scheduling/scheduler.js";
import type { JobPayload } from "../shared/task.js";
import { enqueueSpans } from "../shared/tracing.js";

/** A job about to be added, with the fair-share group it belongs to. */
export interface NewJob {
  name: string;
  data: JobPayload;
  opts: JobsOptions & { jobId: string };
  group: string;
}

/**
 * The one way jobs reach BullMQ. Jobs that may run at once and start no session chain of their
 * own take part in fair share: while other work is ahead of them they wait, parked, in their
 * group's lane (see scheduling/scripts.ts LANE), and workers let them in round robin. Each job
 * gets an `enqueue` span, whose trace context its data carries to the worker (shared/tracing.ts).
 */
export async function addJobs(queue: Queue, scheduler: Scheduler, jobs: readonly NewJob[]): Promise<void> {
  if (jobs.length === 0) return;
  const traced = enqueueSpans(
    queue.name,
    jobs.map((j) => ({ jobId: j.opts.jobId, model: j.data.model })),
  );
  try {
    const fair = jobs.filter((j) => !j.opts.delay && !j.data.after && !j.data.session);
    const parked = fair.length
      ? await scheduler.lanes(
          fair.map((j) => ({
            jobId: j.opts.jobId,
            group: j.group,
            priority: j.opts.priority ?? 0,
            model: j.data.model,
            concurrencyKey: j.data.concurrencyKey,
          })),
        )
      : new Set<string>();
    await queue.addBulk(
      jobs.map(({ name, data, opts }, i) => ({
        name,
        data: traced.traceparents[i] ? { ...data, traceparent: traced.traceparents[i] } : data,
        opts: parked.has(opts.jobId) ? { ...opts, delay: LANE_BACKSTOP_MS } : opts,
      })),
    );
    if (parked.size) await scheduler.laned([...parked]);
    traced.end();
  } catch (error) {
    traced.end(error);
    throw error;
  }
}

import { EventEmitter } from "node:events";
import type { Job, Worker } from "bullmq";
import { Redis } from "ioredis";
import { describe, expect, inject, it } from "vitest";
import type { ResultStore } from "../../src/shared/result-store";
import { createWorkerMetrics } from "../../src/worker/queue/metrics";

describe("the active-jobs gauge (dispatch_worker_active_jobs)", () => {
  it("follows the jobs in the processor, not BullMQ's active events (none ends a job sent back to the queue)", async () => {
    const connection = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
    const metrics = createWorkerMetrics({ defaultMetrics: false });
    const worker = new EventEmitter() as unknown as Worker;
    let running = 0;
    const detach = metrics.attach({
      worker,
      store: {} as ResultStore,
      connection,
      queue: "metrics-unit",
      running: () => running,
    });
    const active = async () => (await metrics.registry.getSingleMetric("dispatch_worker_active_jobs")!.get()).values;
    try {
      // A chain poll fetched five times: five `active` events, then DelayedError (no event) each time.
      for (let i = 0; i < 5; i++) worker.emit("active", { id: "follow-up" } as Job, "waiting");
      running = 1;
      expect(await active()).toEqual([expect.objectContaining({ labels: { queue: "metrics-unit" }, value: 1 })]);
      running = 0;
      expect(await active()).toEqual([expect.objectContaining({ labels: { queue: "metrics-unit" }, value: 0 })]);
    } finally {
      await detach();
      connection.disconnect();
    }
  });
});

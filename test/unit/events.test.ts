import { EventEmitter } from "node:events";
import type { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { EventBus, Subscriptions } from "../../src/producer/events";
import { baseRecord } from "../../src/shared/record";
import type { ResultRecord } from "../../src/shared/result";

const CHANNEL = "dispatch:{q}:events";

function fakeSubscriber() {
  const emitter = new EventEmitter() as EventEmitter & {
    subscribe: (channel: string) => Promise<void>;
    subscriptions: string[];
  };
  emitter.subscriptions = [];
  emitter.subscribe = async (channel: string) => {
    emitter.subscriptions.push(channel);
  };
  return emitter;
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 10));

describe("listeners on the shared events channel", () => {
  it("delivers by scope (job, batch, queue), reading each final record once, and subscribes once", async () => {
    const sub = fakeSubscriber();
    const bus = new EventBus(sub as unknown as Redis, CHANNEL);
    const records = new Map<string, ResultRecord>([
      ["a", { ...baseRecord("a", {}, "completed") }],
      ["b", { ...baseRecord("b", {}, "failed") }],
    ]);
    let reads = 0;
    const subs = new Subscriptions(bus, {
      record: async (id) => (reads++, records.get(id) ?? null),
      inBatch: async (batchId, id) => batchId === "batch-1" && id === "b",
    });
    const seen: string[] = [];
    const queueSub = await subs.subscribe({
      completed: (r) => seen.push(`queue:completed:${r.jobId}`),
      failed: (r) => seen.push(`queue:failed:${r.jobId}`),
    });
    await subs.subscribe({ completed: (r) => seen.push(`job:${r.jobId}`) }, { jobId: "a" });
    await subs.subscribe({ failed: (r) => seen.push(`batch:${r.jobId}`) }, { batchId: "batch-1" });
    await subs.subscribe({ progress: (id, p) => seen.push(`progress:${id}:${p.steps}`) }, { jobId: "a" });
    await subs.subscribe({
      completed: () => {
        throw new Error("a listener's bug");
      },
    });
    expect(sub.subscriptions).toEqual([CHANNEL]);

    const publish = (event: unknown) => sub.emit("message", CHANNEL, JSON.stringify(event));
    publish({ jobId: "a", state: "active" }); // not final, no progress: nothing
    publish({
      jobId: "a",
      state: "active",
      progress: { steps: 2, toolCalls: 0, tokens: 1, cost: 0, lastTool: null, status: "busy" },
    });
    publish({ jobId: "a", state: "completed" });
    publish({ jobId: "b", state: "failed" });
    sub.emit("message", "other-channel", JSON.stringify({ jobId: "a", state: "completed" }));
    sub.emit("message", CHANNEL, "not json");
    await tick();
    expect(seen.sort()).toEqual(["batch:b", "job:a", "progress:a:2", "queue:completed:a", "queue:failed:b"].sort());
    expect(reads).toBe(2);

    queueSub.close();
    seen.length = 0;
    publish({ jobId: "a", state: "completed" });
    await tick();
    expect(seen).toEqual(["job:a"]);
  });
});

import { EventEmitter } from "node:events";
import type { Queue } from "bullmq";
import { afterEach, describe, expect, it, vi } from "vitest";
import { BatchHandle } from "../../src/producer/batch/handle";
import type { BatchStore, MemberState } from "../../src/producer/batch/store";
import { baseRecord } from "../../src/shared/record";
import type { ResultRecord } from "../../src/shared/result";
import type { ResultStore } from "../../src/shared/result-store";

// The subscriber connection is a fake: each test decides when connectRedis resolves.
const redis = vi.hoisted(() => ({
  connect: undefined as (() => Promise<unknown>) | undefined,
  closed: [] as unknown[],
}));
vi.mock("../../src/shared/redis", () => ({
  connectRedis: () => redis.connect!(),
  closeRedis: async (connection: unknown) => {
    if (connection) redis.closed.push(connection);
  },
}));

function fakeSubscriber() {
  return Object.assign(new EventEmitter(), { subscribe: async () => undefined });
}

/** A batch of one job, already completed, whose record `getMany` reads. */
function context(getMany: (ids: string[]) => Promise<(ResultRecord | null)[]>) {
  const batches = {
    meta: async () => ({ batchId: "b", total: 1, invalid: 0, complete: true, createdAt: "" }),
    async *memberChunks() {
      yield [{ jobId: "j1", line: 1 }];
    },
    states: async (ids: string[]): Promise<MemberState[]> => ids.map(() => "completed"),
  } as unknown as BatchStore;
  const results = { keys: { events: "events" }, getMany } as unknown as ResultStore;
  const queue = { getJob: async () => undefined } as unknown as Queue;
  return { redisUrl: "redis://fake", queue, results, batches };
}

afterEach(() => {
  redis.connect = undefined;
  redis.closed = [];
});

describe("waiting on a batch", () => {
  it("does not spin when reading records fails (Redis away): the sweep retries", async () => {
    redis.connect = async () => fakeSubscriber();
    const redisBackAt = Date.now() + 300;
    let reads = 0;
    const handle = new BatchHandle(
      context(async (ids) => {
        reads += 1;
        if (Date.now() < redisBackAt) throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
        return ids.map((id) => baseRecord(id, { prompt: "p" }, "completed"));
      }),
      "b",
    );
    let ticks = 0;
    const ticker = setInterval(() => (ticks += 1), 50);
    try {
      const summary = await handle.wait({ timeoutMs: 10_000 });
      expect(summary.completed).toBe(1);
    } finally {
      clearInterval(ticker);
    }
    // One failed read, then one at the next sweep (2 s later), not a read per microtask.
    expect(reads).toBeLessThanOrEqual(3);
    expect(ticks).toBeGreaterThan(10); // timers kept running meanwhile
  });
});

describe("a batch wait that ends while it connects", () => {
  it("closes the subscriber connection that arrives after the wait timed out", async () => {
    let connected!: (connection: unknown) => void;
    redis.connect = () => new Promise((resolve) => (connected = resolve));
    const handle = new BatchHandle(
      context(async () => []),
      "b",
    );
    await expect(handle.wait({ timeoutMs: 50 })).rejects.toThrow(/timed out/);
    const sub = fakeSubscriber();
    connected(sub);
    await vi.waitFor(() => expect(redis.closed).toEqual([sub]));
  });
});

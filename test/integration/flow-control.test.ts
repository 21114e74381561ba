import { beforeAll, describe, expect, it } from "vitest";
import type { ResultRecord } from "../../src/shared/result";
import { useStack } from "../support/stack";

const span = (r: ResultRecord) => [Date.parse(r.startedAt!), Date.parse(r.finishedAt!)] as const;

function expectNoOverlap(records: ResultRecord[]): void {
  const spans = records.map(span).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
}

describe("flow control shared by all workers", () => {
  const stack = useStack({
    configEnv: { DISPATCH_CONCURRENCY_LIMITS: "fake/echo=1", DISPATCH_RATE_LIMITS: "fake/priced=2/4s" },
  });

  beforeAll(async () => {
    // Two slots in all, fewer than the jobs that wait at the cap below.
    await Promise.all([stack.startWorker({ concurrency: 1 }), stack.startWorker({ concurrency: 1 })]);
  });

  it("a model's concurrency cap holds across two workers, and other models keep flowing", async () => {
    const capped = await stack.dispatcher.enqueueMany(
      [1, 2, 3, 4].map((n) => ({ prompt: `capped ${n} [[delay:1000]]`, model: "fake/echo" })),
    );
    const free = await stack.dispatcher.enqueue({ prompt: "free", model: "fake/priced" });
    const records = await Promise.all(capped.map((r) => stack.dispatcher.wait(r.jobId, { timeoutMs: 90_000 })));
    const freeRecord = await stack.dispatcher.wait(free.jobId, { timeoutMs: 120_000 });
    expect(records.every((r) => r.state === "completed" && r.attempts === 1)).toBe(true);
    expectNoOverlap(records);
    expect(Date.parse(freeRecord.finishedAt!)).toBeLessThan(Math.max(...records.map((r) => Date.parse(r.finishedAt!))));
    // The capped jobs waiting held no slot: with two slots and four capped jobs queued before
    // it, the free job started before the second capped one (it would wait for three to finish).
    const starts = records.map((r) => Date.parse(r.startedAt!)).sort((a, b) => a - b);
    expect(Date.parse(freeRecord.startedAt!)).toBeLessThan(starts[1]!);
  });

  it("a model's rate limit holds across two workers", async () => {
    const receipts = await stack.dispatcher.enqueueMany(
      [1, 2, 3, 4, 5].map((n) => ({ prompt: `rated ${n}`, model: "fake/priced" })),
    );
    const records = await Promise.all(receipts.map((r) => stack.dispatcher.wait(r.jobId, { timeoutMs: 90_000 })));
    expect(records.every((r) => r.state === "completed" && r.attempts === 1)).toBe(true);
    const perWindow = new Map<number, number>();
    for (const r of records) {
      const window = Math.floor(Date.parse(r.startedAt!) / 4_000);
      perWindow.set(window, (perWindow.get(window) ?? 0) + 1);
    }
    expect(Math.max(...perWindow.values())).toBeLessThanOrEqual(2);
    expect(perWindow.size).toBeGreaterThanOrEqual(3);
  });
});

describe("per-key concurrency", () => {
  const stack = useStack();

  beforeAll(async () => {
    // Four slots in all, fewer than the jobs that wait for the key below.
    await Promise.all([stack.startWorker({ concurrency: 2 }), stack.startWorker({ concurrency: 2 })]);
  });

  it("runs jobs sharing a key one at a time across workers, without holding worker slots", async () => {
    const keyed = await stack.dispatcher.enqueueMany(
      [1, 2, 3, 4, 5, 6].map((n) => ({ prompt: `keyed ${n} [[delay:800]]`, concurrencyKey: "/srv/repo" })),
    );
    const others = await stack.dispatcher.enqueueMany([1, 2, 3].map((n) => ({ prompt: `other ${n} [[delay:800]]` })));
    const keyedRecords = await Promise.all(keyed.map((r) => stack.dispatcher.wait(r.jobId, { timeoutMs: 90_000 })));
    const otherRecords = await Promise.all(others.map((r) => stack.dispatcher.wait(r.jobId, { timeoutMs: 90_000 })));
    expect([...keyedRecords, ...otherRecords].every((r) => r.state === "completed")).toBe(true);
    expectNoOverlap(keyedRecords);
    // Unkeyed jobs ran alongside each other: the keyed ones waiting held no slot.
    const spans = otherRecords.map(span);
    const overlapping = spans.some((a, i) => spans.some((b, j) => i !== j && a[0] < b[1] && b[0] < a[1]));
    expect(overlapping).toBe(true);
    // Queued behind six keyed jobs on four slots, every unkeyed job started before the second
    // keyed one: none waited for keyed jobs to give back their slots.
    const keyedStarts = keyedRecords.map((r) => Date.parse(r.startedAt!)).sort((a, b) => a - b);
    for (const [start] of spans) expect(start).toBeLessThan(keyedStarts[1]!);
  });
});

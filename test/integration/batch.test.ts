/**
 * `opencode-dispatch batch` end to end: the real CLI (bin/, built by the global setup) against a
 * real Redis, with workers on real `opencode serve` processes and the fake model.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ResultRecord } from "../../src/shared/result";
import { openQueue } from "../../src/shared/queue";
import { closeRedis, connectRedis } from "../../src/shared/redis";
import { queueKeys } from "../../src/shared/keys";
import { runCli } from "../support/cli";
import { useStack, type Stack } from "../support/stack";

/** The real CLI, with a long default timeout (a batch may take minutes on 2 cores). */
function cli(args: string[], env: NodeJS.ProcessEnv, input?: string, timeoutMs = 150_000) {
  return runCli(args, { env, input, timeoutMs });
}

async function withQueue<T>(
  stack: Stack,
  fn: (queue: ReturnType<typeof openQueue>, redis: Awaited<ReturnType<typeof connectRedis>>) => Promise<T>,
): Promise<T> {
  const redis = await connectRedis(stack.redisUrl, "producer");
  const queue = openQueue(stack.queue, redis);
  try {
    return await fn(queue, redis);
  } finally {
    await queue.close();
    await closeRedis(redis);
  }
}

async function jobCount(stack: Stack): Promise<number> {
  return withQueue(stack, async (queue) => {
    const counts = await queue.getJobCounts("waiting", "delayed", "prioritized", "active", "completed", "failed");
    return Object.values(counts).reduce((a, b) => a + (b ?? 0), 0);
  });
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ocd-batch-test-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("batch submission without workers", () => {
  const stack = useStack();

  it("rejects a batch with a malformed line, naming the line and reason, and enqueues nothing", async () => {
    const lines = Array.from({ length: 30 }, (_, i) => JSON.stringify({ prompt: `ok ${i + 1}` }));
    lines[16] = JSON.stringify({ prompt: "bad", model: "no-slash" }); // line 17
    lines[21] = "{ not json"; // line 22
    const file = join(dir, "malformed.jsonl");
    await writeFile(file, `${lines.join("\n")}\n`);
    const run = await cli(["batch", file, "--id", "bad-batch"], stack.childEnv);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/line 17: model: must be of the form "provider\/model"/);
    expect(run.stderr).toMatch(/line 22: not valid JSON/);
    expect(run.stderr).toMatch(/2 invalid lines: nothing was enqueued/);
    expect(run.stdout).toBe("");
    expect(await jobCount(stack)).toBe(0);
    const status = await cli(["status", "bad-batch"], stack.childEnv);
    expect(status.code).toBe(4); // no such batch (nor job)

    const skipped = await cli(["batch", file, "--id", "bad-batch", "--skip-invalid", "--json"], stack.childEnv);
    expect(skipped.code).toBe(0);
    expect(skipped.stderr).toMatch(/line 17: model: .* \(skipped\)/);
    expect(JSON.parse(skipped.stdout)).toMatchObject({ batchId: "bad-batch", total: 28, enqueued: 28, invalid: 2 });
    expect(await jobCount(stack)).toBe(28);
    await withQueue(stack, (queue) => queue.obliterate({ force: true }));
  });

  it("re-submitting enqueues only what is missing (same ID from the same content, stdin too)", async () => {
    const prompts = Array.from({ length: 40 }, (_, i) => `resubmit prompt ${i + 1}`);
    const file = join(dir, "resubmit.txt");
    await writeFile(file, `${prompts.join("\n")}\n`);
    const args = ["batch", file, "--model", "fake/echo", "--delay", "1h", "--json"];
    const first = JSON.parse((await cli(args, stack.childEnv)).stdout);
    expect(first).toMatchObject({ total: 40, enqueued: 40, duplicates: 0 });
    expect(first.batchId).toMatch(/^batch-[0-9a-f]{20}$/);

    const again = await cli(args, stack.childEnv);
    expect(JSON.parse(again.stdout)).toMatchObject({ batchId: first.batchId, enqueued: 0, duplicates: 40 });
    // The same content on stdin is the same batch.
    const piped = await cli(
      ["batch", "-", "--model", "fake/echo", "--delay", "1h", "--json"],
      stack.childEnv,
      `${prompts.join("\n")}\n`,
    );
    expect(JSON.parse(piped.stdout)).toMatchObject({ batchId: first.batchId, enqueued: 0, duplicates: 40 });
    // Other options make another batch.
    const other = JSON.parse(
      (await cli(["batch", file, "--model", "fake/priced", "--delay", "1h", "--json"], stack.childEnv)).stdout,
    );
    expect(other.batchId).not.toBe(first.batchId);
    await withQueue(stack, async (queue) => {
      for (let line = 1; line <= 40; line++) await (await queue.getJob(`${other.batchId}-${line}`))?.remove();
    });

    // A crash mid-submission: the jobs of lines 31-40 never reached BullMQ nor the member list,
    // and lines 21-30 reached BullMQ but not the member list.
    await withQueue(stack, async (queue, redis) => {
      const keys = queueKeys(stack.queue);
      for (let line = 21; line <= 40; line++)
        await redis.zrem(keys.batchJobs(first.batchId), `${first.batchId}-${line}`);
      for (let line = 31; line <= 40; line++) await (await queue.getJob(`${first.batchId}-${line}`))!.remove();
      await redis.hset(keys.batch(first.batchId), "complete", "0");
    });
    expect(await jobCount(stack)).toBe(30);
    const resumed = JSON.parse((await cli(args, stack.childEnv)).stdout);
    expect(resumed).toMatchObject({ batchId: first.batchId, enqueued: 10, duplicates: 30 });
    expect(await jobCount(stack)).toBe(40);
    const status = JSON.parse((await cli(["status", first.batchId, "--json"], stack.childEnv)).stdout);
    expect(status).toMatchObject({
      total: 40,
      members: 40,
      complete: true,
      counts: { queued: 40, running: 0, completed: 0, failed: 0 },
    });
    await withQueue(stack, (queue) => queue.obliterate({ force: true }));
  });
});

describe("batches run by workers", () => {
  const stack = useStack();
  beforeAll(async () => {
    await Promise.all([stack.startWorker({ concurrency: 8 }), stack.startWorker({ concurrency: 8 })]);
  });

  it("runs a 1,000-task batch with --wait --out: 1,000 records, a summary, exit 1 for the one failure", async () => {
    const lines = Array.from({ length: 1_000 }, (_, i) => JSON.stringify({ prompt: `bulk task ${i + 1}` }));
    lines[499] = JSON.stringify({ prompt: "bulk task 500 [[status:401]]", attempts: 1 }); // fails fast, once
    const file = join(dir, "thousand.jsonl");
    const out = join(dir, "thousand.out.jsonl");
    await writeFile(file, `${lines.join("\n")}\n`);
    const started = Date.now();
    const run = await cli(
      ["batch", file, "--model", "fake/echo", "--id", "thousand", "--wait", "--out", out],
      stack.childEnv,
      undefined,
      900_000,
    );
    const seconds = (Date.now() - started) / 1000;
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).toMatch(/batch thousand: 1000 tasks, 999 completed, 1 failed/);
    expect(run.stdout).toMatch(/line 500 \(thousand-500\): APIError: fake error 401/);
    expect(run.stdout).toMatch(/duration per task: p50 \d/);
    expect(run.stdout).toMatch(/tokens: [1-9]\d*/);
    expect(run.stderr).toMatch(/batch thousand: \d+\/1000 {2}done \d+ {2}failed \d+ {2}running \d+/); // plain progress lines
    const records = (await readFile(out, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as ResultRecord);
    expect(records).toHaveLength(1_000);
    expect(new Set(records.map((r) => r.jobId)).size).toBe(1_000);
    const byId = new Map(records.map((r) => [r.jobId, r]));
    expect(byId.get("thousand-1")).toMatchObject({ state: "completed", text: "echo: bulk task 1", model: "fake/echo" });
    expect(byId.get("thousand-500")).toMatchObject({ state: "failed", error: { name: "APIError", statusCode: 401 } });
    expect(records.filter((r) => r.state === "completed")).toHaveLength(999);
    console.log(`[batch.test] 1,000 tasks through two workers in ${seconds.toFixed(1)} s`);

    // status and wait on the batch ID.
    const status = JSON.parse((await cli(["status", "thousand", "--json"], stack.childEnv)).stdout);
    expect(status.counts).toEqual({ queued: 0, running: 0, completed: 999, failed: 1 });
    const waited = await cli(["wait", "thousand"], stack.childEnv);
    expect(waited.code).toBe(1);
    expect(waited.stdout).toMatch(/1000 tasks, 999 completed, 1 failed/);

    // Re-submitting after BullMQ dropped the finished jobs adds nothing and runs nothing again.
    const calls = stack.fake.calls("bulk task");
    await withQueue(stack, async (queue) => {
      await queue.clean(0, 10_000, "completed");
      await queue.clean(0, 10_000, "failed");
      expect(await queue.getJob("thousand-1")).toBeUndefined();
    });
    const again = await cli(["batch", file, "--model", "fake/echo", "--id", "thousand", "--json"], stack.childEnv);
    expect(JSON.parse(again.stdout)).toMatchObject({ enqueued: 0, duplicates: 1_000 });
    expect(await jobCount(stack)).toBe(0);
    expect(stack.fake.calls("bulk task")).toBe(calls);
  }, 960_000); // minutes on this 2-core machine (opencode, not the queue, is the bottleneck); generous for a loaded one

  it("takes plain-text prompts on stdin and waits with progress events through the library", async () => {
    const prompts = ["first plain prompt", "", "second plain prompt", "third plain prompt"];
    const out = join(dir, "stdin.out.jsonl");
    const run = await cli(
      ["batch", "-", "--model", "fake/echo", "--title", "plain", "--wait", "--out", out, "--json"],
      stack.childEnv,
      prompts.join("\n"),
    );
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout);
    expect(summary).toMatchObject({ total: 3, completed: 3, failed: 0, enqueued: 3 });
    const records = (await readFile(out, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as ResultRecord);
    expect(records.map((r) => r.text).sort()).toEqual([
      "echo: first plain prompt",
      "echo: second plain prompt",
      "echo: third plain prompt",
    ]);
    expect(records.map((r) => r.jobId).sort()).toEqual([1, 3, 4].map((line) => `${summary.batchId}-${line}`));
    expect(records.every((r) => r.title === "plain" && r.model === "fake/echo")).toBe(true);

    const batch = await stack.dispatcher.submitBatch(
      [{ prompt: "lib one" }, { prompt: "lib two", id: "lib-own-key" }],
      { defaults: { model: "fake/echo" } },
    );
    expect(batch.receipt).toMatchObject({ total: 2, enqueued: 2 });
    const seen: string[] = [];
    let lastProgress: { finished: number; total: number } | undefined;
    batch.on("result", (record) => seen.push(record.jobId));
    batch.on("progress", (p) => (lastProgress = p));
    const result = await batch.wait({ timeoutMs: 120_000 });
    expect(result).toMatchObject({ total: 2, completed: 2, failed: 0 });
    expect(seen.sort()).toEqual([`${batch.id}-1`, "lib-own-key"]);
    expect(lastProgress).toMatchObject({ finished: 2, total: 2 });
  }, 120_000);
});

describe("a batch budget", () => {
  const stack = useStack({ configEnv: { DISPATCH_PROVIDER_RETRIES: "0" }, worker: { concurrency: 2 } });

  it("batch --max-cost: once its tasks pass it, no task starts, the running one is stopped, the rest fail BudgetExceeded", async () => {
    // fake/priced costs about $2.40 a task: the second task to spend passes $4 (and is stopped itself,
    // as a task's own --max-cost would stop it) while the slow first one still waits for its answer.
    const lines = [
      JSON.stringify({ prompt: "[[delay:30000]] slow budget task" }),
      ...Array.from({ length: 7 }, (_, i) => JSON.stringify({ prompt: `budget task ${i + 2}` })),
    ];
    const file = join(dir, "budget.jsonl");
    await writeFile(file, `${lines.join("\n")}\n`);
    const run = await cli(
      [
        "batch",
        file,
        "--model",
        "fake/priced",
        "--title",
        "budget",
        "--id",
        "budgeted",
        "--max-cost",
        "4",
        "--wait",
        "--json",
      ],
      stack.childEnv,
    );
    expect(run.code, run.stderr).toBe(1);
    const summary = JSON.parse(run.stdout);
    // The task whose spend passed it is stopped too when its spend was reported while it ran; one
    // that finished first (its spend counted as it ended) keeps its answer.
    expect(summary.total).toBe(8);
    expect([1, 2]).toContain(summary.completed);
    expect(summary.failed).toBe(8 - summary.completed);
    expect(summary.budget).toMatchObject({
      maxCost: 4,
      maxTokens: null,
      exceeded: expect.stringMatching(/batch budget exceeded: its tasks spent \$4\.\d+ of --max-cost \$4/),
    });
    expect(summary.budget.spent.cost).toBeGreaterThan(4);
    expect(summary.budget.spent.cost).toBeLessThan(4 + 2.5); // at most the one task that passed it
    expect(summary.failures.map((f: { error: { name: string } }) => f.error.name)).toEqual(
      Array(summary.failed).fill("BudgetExceeded"),
    );

    // The slow task was running (its model call had begun) and was stopped, long before its answer.
    const slow = (await stack.dispatcher.status("budgeted-1")).result!;
    expect(slow).toMatchObject({ state: "failed", error: { name: "BudgetExceeded" } });
    expect(slow.error!.message).toMatch(/batch budget exceeded/);
    expect(stack.fake.calls("slow budget task")).toBe(1);
    expect(slow.durationMs!).toBeLessThan(30_000);
    // No task started once the budget was spent: two spent it, the slow one was stopped, none of the rest asked.
    expect(stack.fake.calls("budget task")).toBe(3);

    // The human summary and `status` say so.
    const waited = await cli(["wait", "budgeted"], stack.childEnv);
    expect(waited.stdout).toMatch(/budget: \$4\.\d{4} of --max-cost \$4 spent; EXCEEDED/);
    const status = await cli(["status", "budgeted"], stack.childEnv);
    expect(status.stdout).toMatch(/budget: \$4\.\d{4} of --max-cost \$4 spent; EXCEEDED/);
  }, 240_000);

  it("a batch budget must be positive: the library names the field, the CLI the option", async () => {
    await expect(stack.dispatcher.submitBatch([{ prompt: "never" }], { maxCost: -1 })).rejects.toThrow(
      /maxCost: the batch budget must be a positive number/,
    );
    await expect(stack.dispatcher.submitBatch([{ prompt: "never" }], { maxTokens: 1.5 })).rejects.toThrow(
      /maxTokens: the batch budget must be a positive whole number/,
    );
    const run = await cli(["batch", "-", "--max-tokens", "0"], stack.childEnv, "never\n");
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--max-tokens: "0" is not a whole number between 1/);
  }, 60_000);
});

/**
 * One outcome per job: an attempt whose worker lost the job (frozen past its lock while another
 * worker ran it) writes nothing when it wakes, and a job that ended for good is not run again.
 * The frozen worker is a CLI child process stopped with SIGSTOP (its opencode server runs on).
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelledRecord } from "../../src/shared/cancel";
import { queueKeys } from "../../src/shared/keys";
import { runCli, startCli, type CliProcess } from "../support/cli";
import { withQueue } from "../support/queue";
import { useStack } from "../support/stack";
import { until } from "../support/until";
import { freePort } from "../support/redis";
import { makeGitRepo } from "../support/git-repo";

const WAIT = 120_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("outcomes exactly once", () => {
  // No opencode retries of provider errors: a 500 hands the attempt to the queue's retry at once.
  const stack = useStack({
    configEnv: { DISPATCH_LOCK_DURATION: "3s", DISPATCH_STALLED_INTERVAL: "1s", DISPATCH_PROVIDER_RETRIES: "0" },
  });
  let frozen: CliProcess | undefined;
  let receiver: http.Server;
  const deliveries: { id: string; worker: string }[] = [];

  beforeAll(async () => {
    receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => {
        deliveries.push({
          id: String(req.headers["x-dispatch-delivery"]),
          worker: (JSON.parse(body) as { worker: string }).worker,
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  });
  afterAll(async () => {
    if (frozen) {
      frozen.child.kill("SIGCONT");
      await frozen.stop("SIGKILL");
    }
    receiver?.close();
  });

  it("a worker frozen past its lock while another completes the job leaves one record and one delivery ID", async () => {
    const webhook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const metricsPort = await freePort();
    frozen = startCli(["worker", "--concurrency", "1", "--metrics-port", String(metricsPort)], {
      env: { ...stack.childEnv, LOG_LEVEL: "info" },
    });
    await frozen.waitFor(/worker ready/, WAIT);
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "[[delay:4000]] frozen work",
      webhook,
      id: "frozen-job",
    });
    await until("the first worker's model call", () => stack.fake.calls("frozen work") >= 1);
    frozen.child.kill("SIGSTOP");

    // Another worker recovers the job once the lock has expired, and completes it.
    const other = await stack.startWorker({ concurrency: 1 });
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
    expect(record).toMatchObject({ state: "completed", worker: other.id });
    await until("the webhook of the completed job", () => deliveries.length >= 1);

    // The frozen worker wakes: its answer came long ago, but the job is no longer its own.
    frozen.child.kill("SIGCONT");
    await frozen.waitFor(/another worker took the job over|taken over by another worker/, 30_000);
    await sleep(3_000);
    const after = await stack.dispatcher.status(jobId);
    expect(after.result).toMatchObject({ state: "completed", worker: other.id, text: record.text });
    expect(stack.fake.calls("frozen work")).toBe(2);
    expect(new Set(deliveries.map((d) => d.id))).toEqual(new Set([`wh-${jobId}-completed-a1-r0`]));
    expect(deliveries.every((d) => d.worker === other.id)).toBe(true);
    // Nor does it write to the job's live stream: nothing follows the final entry there.
    const types = await withQueue(stack, async (_queue, redis) =>
      (await redis.xrange(queueKeys(stack.queue).live(jobId), "-", "+")).map(
        ([, fields]) => fields[fields.indexOf("t") + 1],
      ),
    );
    expect(types.at(-1)).toBe("final");
    // Nor does it count the job in its metrics: BullMQ accepted no outcome from it.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^# TYPE dispatch_jobs_completed_total counter/m);
    expect(metrics).not.toMatch(/^dispatch_jobs_(completed|failed|retried)_total\{/m);
  }, 240_000);

  it("a job whose final record says it failed for good (a cancel) is not run again by the next worker", async () => {
    await stack.startWorker({ concurrency: 1 });
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "cancelled before it came back",
      delay: 60_000,
      id: "final-is-final",
    });
    // The cancel's record was written, then its worker died before BullMQ heard of it.
    // (It was attempt 1: BullMQ has not counted that attempt, as it never heard how it ended.)
    const record = {
      ...cancelledRecord(jobId, { prompt: "cancelled before it came back" }, null, "cancelled while running"),
      attempts: 1,
    };
    const { Job } = await import("bullmq");
    await withQueue(stack, async (queue, redis) => {
      await redis.set(queueKeys(stack.queue).result(jobId), JSON.stringify(record));
      await new Job(queue, "dispatch", {}, {}, jobId).promote();
      await until("BullMQ to fail the job", async () => (await queue.getJobState(jobId)) === "failed", 60_000);
    });
    expect(stack.fake.calls("cancelled before it came back")).toBe(0);
    const status = await stack.dispatcher.status(jobId);
    expect(status.state).toBe("failed");
    expect(status.result?.error).toMatchObject({ name: "Cancelled", message: "cancelled while running" });
  }, 120_000);

  it("retry of a cancelled --worktree --max-cost job re-queues its whole task; one whose task was not kept is refused", async () => {
    const repo = join(stack.opencode.root, "keep-repo");
    makeGitRepo(repo);
    const prompt = `keep edit [[tool:write:${JSON.stringify({ filePath: "notes.txt", content: "edited\n" })}]]`;
    const { jobId } = await stack.dispatcher.enqueue({
      prompt,
      directory: repo,
      worktree: true,
      maxCost: 5,
      delay: 3_600_000,
      id: "keep-whole",
    });
    expect((await stack.dispatcher.cancel(jobId)).outcome).toBe("removed");
    const retry = await runCli(["retry", jobId, "--json"], { env: stack.childEnv });
    expect(retry.code).toBe(0);
    expect(JSON.parse(retry.stdout)).toEqual({ jobId, how: "requeued" });
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
    expect(record.state).toBe("completed");
    // It ran in its own worktree, under its budget, as first asked: the main checkout is untouched.
    expect(record.worktree).toMatchObject({ branch: `dispatch/${jobId}`, changedFiles: ["notes.txt"] });
    expect(readFileSync(join(repo, "notes.txt"), "utf8")).toBe("original\n");
    await withQueue(stack, async (queue) => {
      expect((await queue.getJob(jobId))?.data).toMatchObject({ prompt, maxCost: 5, worktree: true, directory: repo });
    });

    // A failed job known only by its record (its task was never kept) is refused, not half re-run.
    const redis = new Redis(stack.redisUrl);
    try {
      await redis.set(
        queueKeys(stack.queue).result("record-only"),
        JSON.stringify({
          ...record,
          jobId: "record-only",
          state: "failed",
          error: { name: "Cancelled", message: "x", retryable: false },
        }),
      );
    } finally {
      redis.disconnect();
    }
    const refused = await runCli(["retry", "record-only"], { env: stack.childEnv });
    expect(refused.code).toBe(6);
    expect(refused.stderr).toMatch(
      /its task was not kept .* would lose its system prompt, files, schema, webhook, worktree, budgets/,
    );
  }, 180_000);

  it("a job that fails twice against --max-cost has spent at most the cap over all its attempts", async () => {
    // Each attempt: a tool call (a priced model call, ~$2.40), then a provider 500 (a retryable failure).
    const step = { toolCall: { name: "bash", args: { command: "echo spend", description: "spend" } } };
    stack.fake.reset();
    stack.fake.script(step, { status: 500 }, step, { status: 500 }, step, { status: 500 });
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "spend and fail",
      model: "fake/priced",
      maxCost: 5,
      attempts: 3,
    });
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
    expect(record.state).toBe("failed");
    expect(record.error).toMatchObject({ name: "BudgetExceeded", retryable: false });
    expect(record.error!.message).toMatch(/spent over 2 attempts of --max-cost \$5/);
    const spent = Number(/^budget exceeded: \$([\d.]+)/.exec(record.error!.message)![1]);
    expect(spent).toBeGreaterThan(4);
    expect(spent).toBeLessThanOrEqual(5);
    // The third attempt did not start: two attempts, two calls each.
    expect(stack.fake.calls("spend and fail")).toBe(4);
  }, 180_000);
});

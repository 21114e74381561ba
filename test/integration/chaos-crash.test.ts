/**
 * A worker process killed with SIGKILL mid-job: BullMQ's stalled-job recovery hands its jobs to a
 * new worker, the dead worker's opencode server does not survive it, and a job whose answer was
 * already stored is not sent to the model again. The worker runs as a child process through the
 * CLI, with a short lock duration and stalled-check interval so recovery takes seconds.
 */
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ResultRecord } from "../../src/shared/result";
import { queueKeys } from "../../src/shared/keys";
import { startCli, type CliProcess } from "../support/cli";
import { useStack } from "../support/stack";
import { alive, until } from "../support/until";

const WAIT = 120_000;

describe("a worker killed with SIGKILL mid-job", () => {
  const stack = useStack({ configEnv: { DISPATCH_LOCK_DURATION: "3s", DISPATCH_STALLED_INTERVAL: "1s" } });
  const workers: CliProcess[] = [];
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop("SIGKILL")));
  });

  const startWorker = async () => {
    const worker = startCli(["worker", "--concurrency", "2"], { env: { ...stack.childEnv, LOG_LEVEL: "info" } });
    workers.push(worker);
    await worker.waitFor(/worker ready/, WAIT);
    return worker;
  };

  it("hands its jobs to a new worker, kills its opencode server, and never asks the model twice for a stored answer", async () => {
    const first = await startWorker();
    const dataDir = stack.config.dataDir;
    const [serverDir] = (await readdir(dataDir)).filter((name) => name.startsWith("worker-"));
    const pids = JSON.parse(await readFile(join(dataDir, serverDir!, "pids.json"), "utf8")) as {
      owner: number;
      server: number;
    };
    expect(pids.owner).toBe(first.child.pid);
    expect(alive(pids.server)).toBe(true);

    const unfinished = await stack.dispatcher.enqueue({
      prompt: "[[delay:4000]] unfinished work",
      model: "fake/echo",
      id: "crash-unfinished",
    });
    const answered = await stack.dispatcher.enqueue({
      prompt: "[[delay:4000]] answered work",
      model: "fake/echo",
      id: "crash-answered",
    });
    await until(
      "both model calls",
      () => stack.fake.calls("unfinished work") >= 1 && stack.fake.calls("answered work") >= 1,
    );

    // The second job's first attempt "stored its answer" and then its worker died before BullMQ
    // heard of it: written here as the worker would have written it.
    const stored = await stack.dispatcher.status(answered.jobId);
    const record: ResultRecord = {
      ...stored.result!,
      state: "completed",
      text: "the stored answer",
      finishedAt: new Date().toISOString(),
      durationMs: 1,
      tokens: { input: 1, output: 1, reasoning: 0, cacheRead: 0, cacheWrite: 0, total: 2 },
      cost: 0,
    };
    expect(record.sessionId).toMatch(/^ses_/);
    const redis = (await import("ioredis")).Redis;
    const raw = new redis(stack.redisUrl);
    await raw.set(queueKeys(stack.queue).result(answered.jobId), JSON.stringify(record));
    raw.disconnect();

    first.child.kill("SIGKILL");
    await until("the first worker to exit", () => first.child.exitCode !== null || first.child.signalCode !== null);
    // Its opencode server does not outlive it (the reaper), and its data dir goes too.
    await until("the orphaned opencode server to die", () => !alive(pids.server), 15_000);
    await until("its data directory to be removed", () => !existsSync(join(dataDir, serverDir!)), 15_000);

    const second = await startWorker();
    const [a, b] = await Promise.all([
      stack.dispatcher.wait(unfinished.jobId, { timeoutMs: WAIT }),
      stack.dispatcher.wait(answered.jobId, { timeoutMs: WAIT }),
    ]);
    expect(a).toMatchObject({ state: "completed", text: "echo: [[delay:4000]] unfinished work" });
    expect(a.worker).not.toBe(stored.result!.worker);
    expect(a.worker).toMatch(new RegExp(`-${second.child.pid}-`));
    expect(stack.fake.calls("unfinished work")).toBe(2);

    expect(b).toMatchObject({ state: "completed", text: "the stored answer", sessionId: record.sessionId });
    expect(stack.fake.calls("answered work")).toBe(1);
    // BullMQ, too, now calls the job completed, so status agrees.
    expect((await stack.dispatcher.status(answered.jobId)).state).toBe("completed");
    expect(second.output()).toMatch(/job already completed; keeping the stored answer/);
  }, 300_000);
});

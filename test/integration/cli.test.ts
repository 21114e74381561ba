import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queueKeys } from "../../src/shared/keys";
import { runCli, startCli, type CliProcess } from "../support/cli";
import { OPENCODE_BIN } from "../support/opencode-env";
import { freePort } from "../support/redis";
import { jobCount, withQueue } from "../support/queue";
import { startStack, type Stack } from "../support/stack";
import { until } from "../support/until";

describe("the CLI, end to end", () => {
  let stack: Stack;
  let worker: CliProcess;

  beforeAll(async () => {
    stack = await startStack();
    worker = startCli(["worker", "--concurrency", "2"], { env: { ...stack.childEnv, LOG_LEVEL: "info" } });
    await worker.waitFor(/worker ready/);
  });
  afterAll(async () => {
    await worker?.stop();
    await stack?.close();
  });

  it("enqueue --wait --json prints the completed record, and result prints it again later", async () => {
    const run = await runCli(["enqueue", "hello", "--model", "fake/echo", "--wait", "--json"], { env: stack.childEnv });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const record = JSON.parse(run.stdout);
    expect(record).toMatchObject({ state: "completed", text: "echo: hello", model: "fake/echo", attempts: 1 });
    expect(record.sessionId).toMatch(/^ses_/);
    for (const field of ["jobId", "tokens", "cost", "startedAt", "finishedAt"]) expect(record).toHaveProperty(field);

    const again = await runCli(["result", record.jobId, "--json"], { env: stack.childEnv });
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual(record);
    const text = await runCli(["result", record.jobId], { env: stack.childEnv });
    expect(text.stdout).toBe("echo: hello\n");
    const status = await runCli(["status", record.jobId], { env: stack.childEnv });
    expect(status.stdout).toContain("state=completed");
  });

  it("reads the prompt from stdin, prints the job ID, and wait prints the answer", async () => {
    const run = await runCli(["enqueue", "-", "--model", "fake/echo", "--id", "from-stdin"], {
      env: stack.childEnv,
      input: "piped prompt\n",
    });
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe("from-stdin");
    const wait = await runCli(["wait", "from-stdin", "--timeout", "45s"], { env: stack.childEnv });
    expect(wait.code).toBe(0);
    expect(wait.stdout).toBe("echo: piped prompt\n");
  });

  it("a provider 4xx ends as a failed job with the provider's message and exit 1", async () => {
    const run = await runCli(["enqueue", "no [[status:403]]", "--wait", "--json"], { env: stack.childEnv });
    expect(run.code).toBe(1);
    const record = JSON.parse(run.stdout);
    expect(record.state).toBe("failed");
    expect(record.error).toMatchObject({ name: "APIError", statusCode: 403, retryable: false });
    expect(record.error.message).toContain("fake error 403");
    const result = await runCli(["result", record.jobId], { env: stack.childEnv });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("fake error 403");
  });

  it("bad input exits 2 naming the problem and enqueues nothing", async () => {
    const cases: [string[], RegExp][] = [
      [["enqueue", ""], /prompt: must not be empty/],
      [["enqueue", "hi", "--model", "gpt4"], /model: must be of the form "provider\/model"/],
      [["enqueue", "hi", "--colour", "red"], /unknown option '--colour'/],
      [["enqueue", "hi", "--attempts", "zero"], /--attempts: "zero" is not a whole number/],
      [["enqueue", "hi", "--timeout", "soon"], /--timeout: invalid duration/],
      [["enqueue", "hi", "--metadata", "[1]"], /--metadata: must be a JSON object/],
      [["enqueue", "hi", "--id", "a:b"], /id: may hold only/],
      [["enqueue"], /missing required argument 'prompt'/],
      [["enqueue", "-"], /prompt: must not be empty/],
    ];
    for (const [args, message] of cases) {
      const run = await runCli(args, { env: stack.childEnv });
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr, args.join(" ")).toMatch(message);
      expect(run.stdout).toBe("");
    }
    expect(await jobCount(stack, ["waiting", "delayed", "prioritized", "active"])).toBe(0);
  });

  it("distinct exit codes: unknown job 4, unfinished 5, Redis unreachable 3", async () => {
    const unknown = await runCli(["status", "no-such-job"], { env: stack.childEnv });
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('no job with ID "no-such-job"');
    const delayed = await runCli(["enqueue", "later", "--delay", "1h", "--id", "delayed-one"], { env: stack.childEnv });
    expect(delayed.code).toBe(0);
    expect((await runCli(["result", "delayed-one"], { env: stack.childEnv })).code).toBe(5);
    const timedOut = await runCli(["wait", "delayed-one", "--timeout", "300ms"], { env: stack.childEnv });
    expect(timedOut.code).toBe(5);
    const port = await freePort();
    const down = await runCli(["status", "x", "--redis", `redis://:hunter2@127.0.0.1:${port}`], {
      env: stack.childEnv,
    });
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(/unreachable/);
    expect(down.stderr).not.toContain("hunter2");
  });

  it("wait on a job removed from the queue with no result ends with exit 4 instead of waiting for ever", async () => {
    expect(
      (await runCli(["enqueue", "gone soon", "--delay", "1h", "--id", "removed-one"], { env: stack.childEnv })).code,
    ).toBe(0);
    const events = queueKeys(stack.queue).events;
    const subscribers = () =>
      withQueue(stack, async (_queue, redis) => ((await redis.pubsub("NUMSUB", events)) as [string, number])[1]);
    const before = await subscribers();
    const waiting = startCli(["wait", "removed-one"], { env: stack.childEnv });
    // Removed once the CLI waits: it subscribes to the events channel after finding the job.
    await until("the CLI to wait on the job", async () => (await subscribers()) > before, 60_000);
    await withQueue(stack, async (queue) => {
      await queue.remove("removed-one");
    });
    const code = await new Promise<number | null>((resolve) => waiting.child.once("exit", resolve));
    expect(code).toBe(4);
    expect(waiting.output()).toMatch(/job removed-one was removed from the queue before it finished/);
  });

  it("--help works on every command", async () => {
    for (const command of ["enqueue", "status", "result", "wait", "worker", "up"]) {
      const run = await runCli([command, "--help"], { env: stack.childEnv });
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`Usage: opencode-dispatch ${command}`);
    }
  });

  it("the worker stops on SIGTERM, and stops its opencode server", async () => {
    const second = startCli(["worker"], { env: { ...stack.childEnv, LOG_LEVEL: "info" } });
    await second.waitFor(/worker ready/);
    const pid = Number(/"opencodePid":(\d+)/.exec(second.output())?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(await second.stop("SIGTERM")).toBe(0);
    expect(second.output()).toMatch(/worker stopped/);
    expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe("up", () => {
  it("runs a local Redis with AOF and a worker, in one command", async () => {
    const stack = await startStack();
    const dataDir = await mkdtemp(join(tmpdir(), "dispatch-up-"));
    const env = { ...stack.childEnv, REDIS_URL: "", LOG_LEVEL: "info" };
    const port = await freePort();
    const up = startCli(["up", "--redis-port", String(port), "--data-dir", dataDir], { env });
    try {
      await up.waitFor(/worker ready/);
      expect(up.output()).toContain(`REDIS_URL=redis://127.0.0.1:${port}`);
      const run = await runCli(["enqueue", "via up", "--wait", "--json", "--redis", `redis://127.0.0.1:${port}`], {
        env,
      });
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({ state: "completed", text: "echo: via up" });
      expect((await readdir(dataDir, { recursive: true })).some((f) => String(f).includes("appendonly"))).toBe(true);
    } finally {
      expect(await up.stop("SIGTERM")).toBe(0);
      await rm(dataDir, { recursive: true, force: true });
      await stack.close();
    }
  });

  it("says what to install when redis-server is missing", async () => {
    const run = await runCli(["up"], { env: { PATH: "/nonexistent", HOME: tmpdir() } });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/redis-server was not found on PATH\. Install Redis/);
  });
});

describe("a worker whose opencode server cannot be restarted", () => {
  it("stops, and its process exits 1 instead of waiting for a signal", async () => {
    const stack = await startStack();
    const dir = await mkdtemp(join(tmpdir(), "dispatch-bin-"));
    // An opencode that starts once: every later start fails.
    const bin = join(dir, "opencode");
    await writeFile(
      bin,
      `#!/bin/sh\nif [ -e "${dir}/used" ]; then echo "no more servers" >&2; exit 1; fi\ntouch "${dir}/used"\nexec "${OPENCODE_BIN}" "$@"\n`,
      { mode: 0o755 },
    );
    const worker = startCli(["worker"], { env: { ...stack.childEnv, LOG_LEVEL: "info", OPENCODE_BIN: bin } });
    try {
      await worker.waitFor(/worker ready/);
      const pid = Number(/"opencodePid":(\d+)/.exec(worker.output())?.[1]);
      process.kill(pid, "SIGKILL");
      const code = await new Promise<number | null>((resolve) => worker.child.once("exit", resolve));
      expect(code).toBe(1);
      expect(worker.output()).toMatch(
        /could not restart the opencode server|its opencode server could not be restarted/,
      );
    } finally {
      await worker.stop("SIGKILL");
      await rm(dir, { recursive: true, force: true });
      await stack.close();
    }
  });
});

/**
 * Manual approvals (README "Approvals"): a job with `approval: "manual"` whose agent asks for a
 * directory outside its own (opencode's `external_directory` ask) is parked in state
 * `awaiting-approval`, holding no worker slot, until a person approves or rejects the ask or its
 * approval timeout passes; then any worker resumes its session. The fake model is scripted to
 * call `read` on /etc/hostname, write its reasons first, and call it again once resumed.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApi } from "../../src/api/server";
import { ApiTokens } from "../../src/api/tokens";
import { JobStateError, NotFinishedError } from "../../src/shared/errors";
import { createLogger } from "../../src/shared/logger";
import type { ResultRecord } from "../../src/shared/result";
import { createClient } from "../../src/worker/server/opencode-client";
import { runCli, startCli } from "../support/cli";
import { messageText, type ChatRequest } from "../support/fake-model";
import { useStack } from "../support/stack";
import { until } from "../support/until";

const WAIT = 60_000;
const HOSTNAME = readFileSync("/etc/hostname", "utf8").trim();
const READ = { name: "read", args: { filePath: "/etc/hostname" } };
const ENQUEUER = "enqueue-token-0123456789";
const ADMIN = "admin-token-0123456789abc";
const WORDS = "I need the machine's name, which lives outside this project.";

/** The tool results a model request carries. */
const toolResults = (request: ChatRequest) => request.messages.filter((m) => m.role === "tool").map(messageText);

describe("manual approval of permission asks", () => {
  const hooks: { event: string | undefined; record: ResultRecord }[] = [];
  let hookServer: http.Server;
  let webhook: string;

  beforeAll(async () => {
    hookServer = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        hooks.push({
          event: req.headers["x-dispatch-event"] as string | undefined,
          record: JSON.parse(Buffer.concat(chunks).toString("utf8")) as ResultRecord,
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hookServer.listen(0, "127.0.0.1", resolve));
    webhook = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/hook`;
  });
  afterAll(() => {
    hookServer?.close();
  });
  // One worker slot, and one slot of the provider for all workers: a parked job must free both.
  const stack = useStack({ configEnv: { DISPATCH_CONCURRENCY_LIMITS: "fake=1" }, worker: { concurrency: 1 } });

  const parked = (jobId: string) =>
    until(
      `job ${jobId} to await approval`,
      async () => {
        const status = await stack.dispatcher.status(jobId);
        return status.state === "awaiting-approval" ? status : undefined;
      },
      WAIT,
    );

  it("parks the job with what is asked, frees its slot for another job, and after approve runs the tool and completes", async () => {
    stack.fake.reset();
    // The parked job reads a file of its own directory (no ask), then asks; the other job's only
    // call; the parked job's call once resumed.
    writeFileSync(join(stack.opencode.root, "notes.txt"), "nothing here\n");
    const own = { name: "read", args: { filePath: join(stack.opencode.root, "notes.txt") } };
    stack.fake.script(
      { toolCall: own },
      { say: WORDS, toolCall: READ },
      { text: "the other job is done" },
      { toolCall: READ },
    );
    const asked: ResultRecord[] = [];
    const listening = await stack.dispatcher.subscribe({ ask: (record) => asked.push(record) });
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "what is this machine called?",
      model: "fake/echo",
      directory: stack.opencode.root,
      approval: "manual",
      webhook,
    });

    const watching = startCli(["watch", jobId], { env: stack.childEnv });
    const status = await parked(jobId);
    expect(status.result?.approval).toMatchObject({
      permission: "external_directory",
      patterns: ["/etc/*"],
      tool: "read",
      words: WORDS,
    });
    await watching.waitFor(/\[awaiting approval: read wants external_directory \/etc\/\*; answer with `approve /, WAIT);
    expect(status.result).toMatchObject({ attempts: 1, asks: [] });
    await until("the ask listener", () => asked.length === 1, WAIT);
    expect(asked[0]).toMatchObject({
      jobId,
      state: "awaiting-approval",
      approval: { permission: "external_directory" },
    });
    await until("the ask webhook", () => hooks.some((h) => h.record.jobId === jobId && h.event === "ask"), WAIT);
    expect(hooks.find((h) => h.record.jobId === jobId)?.record.approval?.patterns).toEqual(["/etc/*"]);
    listening.close();

    // Its worker has one slot, the provider one too, and another job runs meanwhile.
    // (Well within the 30 s after which a slot held by no one would lapse on its own.)
    const other = await stack.dispatcher.run({ prompt: "another job", model: "fake/echo" }, { timeoutMs: 20_000 });
    expect(other).toMatchObject({ state: "completed", text: "the other job is done" });
    expect((await stack.dispatcher.status(jobId)).state).toBe("awaiting-approval");
    // Still running as far as a wait is concerned.
    await expect(stack.dispatcher.wait(jobId, { timeoutMs: 500 })).rejects.toBeInstanceOf(NotFinishedError);
    expect((await stack.dispatcher.list({ state: "awaiting-approval" })).map((j) => j.jobId)).toEqual([jobId]);

    const shown = await runCli(["status", jobId], { env: stack.childEnv });
    expect(shown.stdout).toMatch(/state=awaiting-approval/);
    expect(shown.stdout).toMatch(/asks: read wants external_directory \/etc\/\*/);
    expect(shown.stdout).toContain(JSON.stringify(WORDS));
    const cli = await runCli(["approve", jobId, "--by", "alice"], { env: stack.childEnv });
    expect(cli.stdout).toMatch(/external_directory \/etc\/\* approved once; the job resumes/);
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
    expect(record).toMatchObject({ state: "completed", attempts: 1, approval: null, worker: stack.worker.id });
    expect(record.text).toContain(HOSTNAME);
    // The watch saw the same turn go on (no "starts over") and ends with the answer.
    expect(await watching.exited(WAIT)).toBe(0);
    expect(watching.output()).toContain(HOSTNAME);
    expect(watching.output()).not.toMatch(/starts over/);
    expect(record.asks).toEqual([
      expect.objectContaining({
        kind: "permission",
        what: "external_directory",
        patterns: ["/etc/*"],
        answer: "once",
        by: "alice",
        words: WORDS,
      }),
      expect.objectContaining({ kind: "permission", what: "external_directory", answer: "once", by: "alice" }), // the resumed call, under the grant
    ]);
    // Its tokens are those of both turns: the one cut short by the ask (its first step) and the resumed one.
    const messages =
      (await createClient(stack.worker.server()).session.messages({ sessionID: record.sessionId! })).data ?? [];
    const steps = messages.map((m) => m.info).filter((m) => m.role === "assistant");
    const lastTurn = steps.filter((m) => m.parentID === steps.at(-1)!.parentID);
    const sum = (list: typeof steps) => list.reduce((n, m) => n + m.tokens.input + m.tokens.output, 0);
    expect(lastTurn.length).toBeLessThan(steps.length);
    expect(record.tokens?.total).toBe(sum(steps));
    // The approved read ran: the model's next request carried its output.
    const last = stack.fake.requests.at(-1)!;
    expect(toolResults(last).at(-1)).toContain(HOSTNAME);
    // An answered ask cannot be answered again.
    await expect(stack.dispatcher.approve(jobId)).rejects.toBeInstanceOf(JobStateError);
    const again = await runCli(["reject", jobId], { env: stack.childEnv });
    expect(again.code).toBe(6);
    expect(again.stderr).toMatch(/not awaiting approval/);
  });

  it("after reject, the agent is told (with the message) and ends as it decides; the tool never runs", async () => {
    stack.fake.reset();
    stack.fake.script({ say: WORDS, toolCall: READ });
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "name this machine",
      model: "fake/echo",
      directory: stack.opencode.root,
      approval: "manual",
    });
    await parked(jobId);
    // Through the HTTP API: answering an ask takes the admin scope.
    const api = await startApi({
      dispatcher: stack.dispatcher,
      tokens: ApiTokens.fromEnv({ DISPATCH_API_TOKENS: `${ENQUEUER}:enqueue+read,${ADMIN}:admin` }),
      log: createLogger("silent"),
      port: 0,
    });
    try {
      const post = (path: string, token: string, body: unknown) =>
        fetch(`${api.url}/v1/jobs/${jobId}/${path}`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(10_000),
        });
      expect((await post("reject", ENQUEUER, {})).status).toBe(403);
      const rejected = await post("reject", ADMIN, { message: "not outside the project", by: "bob" });
      expect(rejected.status).toBe(200);
      expect(await rejected.json()).toMatchObject({
        jobId,
        ask: { permission: "external_directory" },
        decision: { answer: "reject", by: "bob", message: "not outside the project" },
      });
      const late = await post("approve", ADMIN, {});
      expect(late.status).toBe(409);
    } finally {
      await api.close();
    }
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
    // The fake model echoes the last user message: the continuation turn that says it was rejected.
    expect(record.state).toBe("completed");
    expect(record.text).toMatch(/rejected by bob with this message: not outside the project/);
    expect(record.asks).toEqual([
      expect.objectContaining({ answer: "reject", by: "bob", message: "not outside the project" }),
    ]);
    for (const request of stack.fake.requests) expect(toolResults(request).join("\n")).not.toContain(HOSTNAME);
  });

  it("rejects an ask no one answers within --approval-timeout", async () => {
    stack.fake.reset();
    stack.fake.script({ toolCall: READ });
    const enqueued = await runCli(
      [
        "enqueue",
        "wait for nobody",
        "--model",
        "fake/echo",
        "--directory",
        stack.opencode.root,
        "--approval",
        "manual",
        "--approval-timeout",
        "3s",
      ],
      { env: stack.childEnv },
    );
    const jobId = enqueued.stdout.trim();
    await parked(jobId);
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
    expect(record.state).toBe("completed");
    expect(record.text).toMatch(/rejected: no one answered it within 3\.0s/);
    expect(record.asks).toEqual([expect.objectContaining({ answer: "reject", by: "timeout" })]);
    await expect(stack.dispatcher.approve(jobId)).rejects.toBeInstanceOf(JobStateError);
  });

  it("counts a parked batch member as running, and cancels it", async () => {
    stack.fake.reset();
    stack.fake.script({ toolCall: READ });
    const many = await stack.dispatcher.enqueueMany([
      { prompt: "cancel me", model: "fake/echo", directory: stack.opencode.root, approval: "manual" },
    ]);
    const { jobId } = many[0]!;
    await parked(jobId);
    // A batch counts a parked member as running (it has started, and ends once answered).
    expect((await many.batch.status()).counts).toEqual({ queued: 0, running: 1, completed: 0, failed: 0 });
    const cancelled = await stack.dispatcher.cancel(jobId);
    expect(cancelled).toMatchObject({
      outcome: "removed",
      record: {
        state: "failed",
        approval: null,
        error: { name: "Cancelled", message: "cancelled while awaiting approval" },
      },
    });
    await expect(stack.dispatcher.approve(jobId)).rejects.toThrow(/not awaiting approval \(it is failed\)/);
  });

  it("resumes on another worker than the one that parked it (the session comes from the queue), approved for the rest of the job", async () => {
    stack.fake.reset();
    // Parked on the first read; resumed, it reads again, then a second file of the same directory.
    stack.fake.script(
      { toolCall: READ },
      { toolCall: READ },
      { toolCall: { name: "read", args: { filePath: "/etc/hosts" } } },
    );
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "read two files",
      model: "fake/echo",
      directory: stack.opencode.root,
      approval: "manual",
    });
    const status = await parked(jobId);
    expect(status.result?.approval?.always).toEqual(["/etc/*"]);
    await stack.worker.close({ graceMs: 0 }); // its opencode server goes with it
    const other = await stack.startWorker({ concurrency: 1 });
    await stack.dispatcher.approve(jobId, { always: true, by: "carol" });
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
    expect(record).toMatchObject({ state: "completed", worker: other.id, sessionId: status.result?.sessionId });
    // Both reads ran: the first again under the approval, the second (also in /etc) under its `always`.
    const results = toolResults(stack.fake.requests.at(-1)!);
    expect(results.at(-2)).toContain(HOSTNAME);
    expect(results.at(-1)).toContain("localhost");
    expect(record.asks.map((a) => [a.answer, a.by])).toEqual([
      ["always", "carol"],
      ["once", "carol"],
      ["once", "carol"],
    ]);
  });
});

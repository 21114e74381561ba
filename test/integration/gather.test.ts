import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { messageText } from "../support/fake-model";
import type { JobStatus } from "../../src/producer/job-status";
import type { ResultRecord } from "../../src/shared/result";
import { runCli } from "../support/cli";
import { useStack, type Stack } from "../support/stack";
import { until } from "../support/until";

const text = messageText;
/** Everything the model was sent in its user messages, for the requests whose last user text starts so. */
const callsStarting = (stack: Stack, prefix: string) =>
  stack.fake.requests.filter((req) =>
    text([...req.messages].reverse().find((m) => m.role === "user")).startsWith(prefix),
  );

describe("gather: a batch's parent runs once every task has ended, with their results", () => {
  const stack = useStack({ worker: { concurrency: 4 } });

  it("a 20-task batch with --then runs the parent once, after the last task, and its prompt carries all 20 answers", async () => {
    const file = join(stack.opencode.root, "twenty.txt");
    writeFileSync(
      file,
      Array.from({ length: 20 }, (_, i) => `finding ${i + 1}${i === 19 ? " [[delay:1500]]" : ""}`).join("\n"),
    );
    const run = await runCli(
      ["batch", file, "--id", "twenty", "--model", "fake/echo", "--then", "Summarise the findings", "--wait", "--json"],
      { env: stack.childEnv },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("parent twenty-then runs once every task has ended");

    const parent = await stack.dispatcher.result("twenty-then");
    expect(parent.state).toBe("completed");
    expect(parent.children).toEqual({ batch: "twenty", total: 20, completed: 20, failed: 0, removed: 0 });
    const members: ResultRecord[] = [];
    for (let n = 1; n <= 20; n++) members.push(await stack.dispatcher.result(`twenty-${n}`));
    const lastEnd = Math.max(...members.map((m) => Date.parse(m.finishedAt!)));
    expect(Date.parse(parent.startedAt!)).toBeGreaterThanOrEqual(lastEnd);

    const calls = callsStarting(stack, "Summarise the findings");
    expect(calls).toHaveLength(1);
    const prompt = text([...calls[0]!.messages].reverse().find((m) => m.role === "user"));
    for (const m of members) {
      expect(prompt).toContain(JSON.stringify(m.text));
      expect(prompt).toContain(`"jobId":"${m.jobId}"`);
    }
    // The CLI printed the parent's record last.
    const printed = run.stdout.trim().split("\n").slice(-1)[0]!;
    expect((JSON.parse(printed) as ResultRecord).jobId).toBe("twenty-then");
  });

  it("status of a waiting parent shows its children's counts; it holds no worker slot while it waits", async () => {
    const handle = await stack.dispatcher.submitBatch(
      [{ prompt: "slow a [[delay:2500]]" }, { prompt: "slow b [[delay:2500]]" }],
      { id: "waiting-parent", defaults: { model: "fake/echo" }, then: "Compare a and b" },
    );
    expect(handle.receipt?.thenJobId).toBe("waiting-parent-then");
    const status = await until(
      "the parent to wait for its children",
      async () => {
        const s = await stack.dispatcher.status("waiting-parent-then");
        return s.state === "delayed" && s.waitingFor?.includes("waiting for its children") ? s : undefined;
      },
      30_000,
    );
    expect(status.children).toMatchObject({ batchId: "waiting-parent", total: 2 });
    expect(status.children!.counts.completed).toBe(0);
    const cli = await runCli(["status", "waiting-parent-then"], { env: stack.childEnv });
    expect(cli.stdout).toMatch(/children: batch waiting-parent {2}total=2/);
    const parent = await stack.dispatcher.wait("waiting-parent-then", { timeoutMs: 60_000 });
    expect(parent.state).toBe("completed");
    const after = (
      JSON.parse(
        (await runCli(["status", "waiting-parent-then", "--json"], { env: stack.childEnv })).stdout,
      ) as JobStatus
    ).children!;
    expect(after.counts).toEqual({ queued: 0, running: 0, completed: 2, failed: 0 });
  });

  it("with --then-on completed a failed task leaves the parent failed with the reason, and the model is not asked", async () => {
    const file = join(stack.opencode.root, "one-fails.jsonl");
    writeFileSync(
      file,
      [{ prompt: "fine" }, { prompt: "broken [[status:401]]", attempts: 1 }, { prompt: "fine too" }]
        .map((t) => JSON.stringify(t))
        .join("\n"),
    );
    const run = await runCli(
      [
        "batch",
        file,
        "--id",
        "one-fails",
        "--model",
        "fake/echo",
        "--then",
        "Rank them",
        "--then-on",
        "completed",
        "--wait",
      ],
      { env: stack.childEnv },
    );
    expect(run.code).toBe(1);
    const parent = await stack.dispatcher.result("one-fails-then");
    expect(parent.state).toBe("failed");
    expect(parent.error).toMatchObject({ name: "UpstreamFailed", retryable: false });
    expect(parent.error!.message).toContain("1 of 3 children of batch one-fails did not complete");
    expect(parent.error!.message).toContain("line 2 (one-fails-2) failed: APIError");
    expect(run.stdout).toContain("parent one-fails-then failed: UpstreamFailed");
    expect(callsStarting(stack, "Rank them")).toHaveLength(0);
  });

  it("with --then-on all (the default) the parent runs and sees the failure among the results", async () => {
    const handle = await stack.dispatcher.submitBatch(
      [{ prompt: "ok" }, { prompt: "no [[status:401]]", attempts: 1 }],
      {
        id: "all-ends",
        defaults: { model: "fake/echo" },
        then: { prompt: "Report on them", title: "report" },
      },
    );
    const parent = await stack.dispatcher.wait(handle.receipt!.thenJobId!, { timeoutMs: 60_000 });
    expect(parent.state).toBe("completed");
    expect(parent.children).toMatchObject({ total: 2, completed: 1, failed: 1 });
    const prompt = text(
      callsStarting(stack, "Report on them")[0]!
        .messages.filter((m) => m.role === "user")
        .at(-1),
    );
    expect(prompt).toContain('"state":"failed","error":{"name":"APIError"');
  });

  it("a task retried before the parent ran is waited for again", async () => {
    const handle = await stack.dispatcher.submitBatch(
      [{ prompt: "flaky [[status:401]]", attempts: 1 }, { prompt: "steady [[delay:3000]]" }],
      {
        id: "reopened",
        defaults: { model: "fake/echo" },
        then: "Gather after a retry",
      },
    );
    const failed = await stack.dispatcher.wait("reopened-1", { timeoutMs: 60_000 });
    expect(failed.state).toBe("failed");
    // The steady task's call is in (it answers after 3 s): the retry's is the only one left to come.
    await until("the steady task's model call", () => stack.fake.calls("steady") >= 1, 60_000);
    stack.fake.script({ delayMs: 6_000, text: "second time lucky" });
    // The record is final a moment before BullMQ moves the job to its failed set.
    await until(
      "the failed task to be retried",
      () =>
        stack.dispatcher.retry("reopened-1").then(
          () => true,
          () => false,
        ),
      10_000,
    );
    const parent = await stack.dispatcher.wait(handle.receipt!.thenJobId!, { timeoutMs: 60_000 });
    const retried = await stack.dispatcher.result("reopened-1");
    expect(retried.text).toBe("second time lucky");
    expect(Date.parse(parent.startedAt!)).toBeGreaterThanOrEqual(Date.parse(retried.finishedAt!));
    expect(parent.children).toMatchObject({ total: 2, completed: 2, failed: 0 });
  });

  it("large results travel as an attached results.jsonl file the model reads", async () => {
    const big = (n: number) => `${String(n).padStart(2, "0")}${"x".repeat(6_000)}`;
    const handle = await stack.dispatcher.submitBatch(
      Array.from({ length: 12 }, (_, i) => ({ prompt: `[[reply:${big(i + 1)}]]` })),
      { id: "big-results", defaults: { model: "fake/echo" }, then: "Digest the attachment" },
    );
    const parent = await stack.dispatcher.wait(handle.receipt!.thenJobId!, { timeoutMs: 60_000 });
    expect(parent.state).toBe("completed");
    const call = callsStarting(stack, "Digest the attachment")[0]!;
    const sent = call.messages.map(text).join("\n");
    expect(sent).toContain("are in the attached file results.jsonl");
    for (let n = 1; n <= 12; n++) expect(sent).toContain(big(n));
  });

  it("cancel of the parent cancels its unfinished children, and the parent never runs", async () => {
    const handle = await stack.dispatcher.submitBatch(
      Array.from({ length: 3 }, (_, i) => ({ prompt: `long ${i} [[delay:20000]]` })),
      { id: "cancelled-flow", defaults: { model: "fake/echo" }, then: "Never asked" },
    );
    await until(
      "a child to run",
      async () => (await (await stack.dispatcher.findBatch("cancelled-flow"))!.status()).counts.running > 0,
      30_000,
    );
    const run = await runCli(["cancel", handle.receipt!.thenJobId!], { env: stack.childEnv });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain("job cancelled-flow-then cancelled");
    expect(run.stdout).toMatch(/its children: \d removed from the queue, \d running aborted, 0 not confirmed yet/);
    const members = await Promise.all(
      [1, 2, 3].map((n) => stack.dispatcher.wait(`cancelled-flow-${n}`, { timeoutMs: 30_000 })),
    );
    expect(members.map((m) => m.error?.name)).toEqual(["Cancelled", "Cancelled", "Cancelled"]);
    const parent = await stack.dispatcher.result("cancelled-flow-then");
    expect(parent.error?.name).toBe("Cancelled");
    expect(callsStarting(stack, "Never asked")).toHaveLength(0);
  });

  it("flows nest: an inner parent is a child of the outer one, which gets the inner parent's answer", async () => {
    const receipt = await stack.dispatcher.flow({
      id: "nested",
      defaults: { model: "fake/echo" },
      then: "Overall verdict",
      children: [
        { then: "Sub-summary", children: [{ prompt: "leaf one" }, { prompt: "leaf two [[delay:800]]" }] },
        { prompt: "leaf three" },
      ],
    });
    expect(receipt).toMatchObject({
      jobId: "nested-then",
      batchId: "nested",
      flows: [{ jobId: "nested.1-then", batchId: "nested.1" }],
    });
    const outer = await stack.dispatcher.wait("nested-then", { timeoutMs: 60_000 });
    const inner = await stack.dispatcher.result("nested.1-then");
    expect(outer.state).toBe("completed");
    expect(outer.children).toMatchObject({ total: 2, completed: 2 });
    expect(Date.parse(outer.startedAt!)).toBeGreaterThanOrEqual(Date.parse(inner.finishedAt!));
    const prompt = text(
      callsStarting(stack, "Overall verdict")[0]!
        .messages.filter((m) => m.role === "user")
        .at(-1),
    );
    expect(prompt).toContain(JSON.stringify(inner.text)); // the inner parent's answer, which itself quotes the leaves
    expect(inner.text).toContain("echo: leaf two [[delay:800]]");
    expect(prompt).toContain('"answer":"echo: leaf three"');
  });

  it("refuses --then-on without --then, and a parent that continues a session", async () => {
    const file = join(stack.opencode.root, "x.txt");
    writeFileSync(file, "x\n");
    const noThen = await runCli(["batch", file, "--then-on", "completed"], { env: stack.childEnv });
    expect(noThen.code).toBe(2);
    expect(noThen.stderr).toContain("--then-model and --then-on apply to a batch with --then");
    await expect(
      stack.dispatcher.submitBatch([{ prompt: "x" }], { then: { prompt: "y", continue: "twenty-1" } }),
    ).rejects.toThrow(/then: a batch's parent starts its own session/);
  });
});

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { ResultRecord } from "../../src/shared/result";
import type { RunningWorker } from "../../src/worker/worker";
import { useStack } from "../support/stack";
import { until } from "../support/until";
import { makeGitRepo } from "../support/git-repo";

const transcriptOf = (text: string | null): string[] => JSON.parse(text!.replace(/^transcript: /, "")) as string[];

// One stack for the file (each spawned opencode server costs seconds); a test that replaces the
// worker leaves its successor to the tests after it.
let worker: RunningWorker;

const stack = useStack();
beforeAll(async () => {
  // Two slots: fewer than the follow-ups that wait in a chain below.
  worker = await stack.startWorker({ concurrency: 2 });
});

describe("sessions that continue anywhere", () => {
  it("a follow-up runs in the earlier job's session and the model sees the earlier turns", async () => {
    const first = await stack.dispatcher.run({ prompt: "my name is Zed", model: "fake/echo" }, { timeoutMs: 120_000 });
    expect(first.state).toBe("completed");
    const follow = await stack.dispatcher.run(
      { prompt: "what is my name? [[transcript]]", continue: first.jobId },
      { timeoutMs: 120_000 },
    );
    expect(follow.state).toBe("completed");
    expect(follow.sessionId).toBe(first.sessionId);
    expect(follow.continues).toBe(first.jobId);
    const seen = transcriptOf(follow.text);
    expect(seen[0]).toBe("my name is Zed");
    expect(seen.at(-1)).toContain("what is my name?");
  });

  it("three follow-ups submitted at once run one at a time, in order, each seeing the one before", async () => {
    const root = await stack.dispatcher.enqueue({ prompt: "root turn [[slow:600]]", model: "fake/echo" });
    const follows = [];
    for (const n of [1, 2, 3])
      follows.push(await stack.dispatcher.enqueue({ prompt: `follow ${n} [[transcript]]`, continue: root.jobId }));
    // Jobs on other sessions keep flowing while the chain waits.
    const other = await stack.dispatcher.enqueue({ prompt: "unrelated", model: "fake/echo" });
    const otherRecord = await stack.dispatcher.wait(other.jobId, { timeoutMs: 120_000 });
    const records = await Promise.all(follows.map((f) => stack.dispatcher.wait(f.jobId, { timeoutMs: 90_000 })));
    const rootRecord = await stack.dispatcher.result(root.jobId);
    expect(records.map((r) => r.state)).toEqual(["completed", "completed", "completed"]);
    expect(new Set(records.map((r) => r.sessionId))).toEqual(new Set([rootRecord.sessionId]));
    expect(new Set(records.map((r) => r.text)).size).toBe(3);
    records.forEach((record, i) => {
      const seen = transcriptOf(record.text);
      expect(seen).toHaveLength(i + 2); // the root turn, the follow-ups before, and this one
      expect(seen.slice(1).map((s) => s.replace(/ \[\[transcript\]\]$/, ""))).toEqual(
        [1, 2, 3].slice(0, i + 1).map((n) => `follow ${n}`),
      );
    });
    for (let i = 1; i < records.length; i++) {
      expect(Date.parse(records[i]!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(records[i - 1]!.finishedAt!));
    }
    expect(Date.parse(otherRecord.finishedAt!)).toBeLessThan(Date.parse(records[2]!.finishedAt!));
    // Three follow-ups wait on two slots, queued before it: it started while the root still ran,
    // so none held a slot while it waited (the root and a waiting follow-up would fill both).
    expect(Date.parse(otherRecord.startedAt!)).toBeLessThan(Date.parse(rootRecord.finishedAt!));
  });

  it("follow-ups by --session and by --continue of the job that opened the session share one order", async () => {
    const root = await stack.dispatcher.enqueue({ prompt: "mixed root [[delay:1500]]", model: "fake/echo" });
    const sessionId = await until(
      "the root's session",
      async () => (await stack.dispatcher.status(root.jobId)).result?.sessionId ?? undefined,
    );
    const bySession = await stack.dispatcher.enqueue({
      prompt: "by session [[slow:300]] [[transcript]]",
      session: sessionId,
    });
    const byContinue = await stack.dispatcher.enqueue({ prompt: "by continue [[transcript]]", continue: root.jobId });
    const bySessionAgain = await stack.dispatcher.enqueue({
      prompt: "by session again [[transcript]]",
      session: sessionId,
    });
    const ids = [root.jobId, bySession.jobId, byContinue.jobId, bySessionAgain.jobId];
    const records = await Promise.all(ids.map((id) => stack.dispatcher.wait(id, { timeoutMs: 120_000 })));
    expect(records.map((r) => r.state)).toEqual(["completed", "completed", "completed", "completed"]);
    expect(new Set(records.map((r) => r.sessionId))).toEqual(new Set([sessionId]));
    for (let i = 1; i < records.length; i++) {
      expect(Date.parse(records[i]!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(records[i - 1]!.finishedAt!));
    }
    const strip = (turns: string[]) => turns.map((t) => t.replace(/ \[\[.*$/, ""));
    expect(strip(transcriptOf(records[3]!.text))).toEqual([
      "mixed root",
      "by session",
      "by continue",
      "by session again",
    ]);
  });

  it("a batch continuing a job runs its lines one at a time, in order, in that session", async () => {
    const root = await stack.dispatcher.run({ prompt: "batch root", model: "fake/echo" }, { timeoutMs: 120_000 });
    const batch = await stack.dispatcher.submitBatch(
      [1, 2, 3].map((n) => ({ prompt: `line ${n} [[transcript]]` })),
      { defaults: { continue: root.jobId } },
    );
    const byLine = new Map<number, ResultRecord>();
    batch.on("result", (record, line) => byLine.set(line, record));
    const summary = await batch.wait({ timeoutMs: 90_000 });
    expect(summary.completed).toBe(3);
    const records = [...byLine.entries()].sort(([a], [b]) => a - b).map(([, record]) => record);
    expect(new Set(records.map((r) => r.sessionId))).toEqual(new Set([root.sessionId]));
    records.forEach((record, i) => {
      const seen = transcriptOf(record.text);
      expect(seen[0]).toBe("batch root");
      expect(seen.slice(1).map((s) => s.replace(/ \[\[transcript\]\]$/, ""))).toEqual(
        [1, 2, 3].slice(0, i + 1).map((n) => `line ${n}`),
      );
    });
  });

  it("continues a session after the worker that ran it, and its data folder, are gone", async () => {
    const first = await stack.dispatcher.run(
      { prompt: "remember the word pelican", model: "fake/echo" },
      { timeoutMs: 120_000 },
    );
    const dataDir = worker.server().dataDir!;
    expect(existsSync(dataDir)).toBe(true);
    await worker.close({ graceMs: 0 });
    expect(existsSync(dataDir)).toBe(false);
    worker = await stack.startWorker({ concurrency: 2 });
    const follow = await stack.dispatcher.run(
      { prompt: "which word? [[transcript]]", continue: first.jobId },
      { timeoutMs: 120_000 },
    );
    expect(follow.state).toBe("completed");
    expect(follow.sessionId).toBe(first.sessionId);
    expect(transcriptOf(follow.text)[0]).toBe("remember the word pelican");
    // --session names the session directly, too.
    const bySession = await stack.dispatcher.run(
      { prompt: "again [[transcript]]", session: first.sessionId! },
      { timeoutMs: 120_000 },
    );
    expect(bySession.sessionId).toBe(first.sessionId);
    expect(transcriptOf(bySession.text)).toHaveLength(3);
  }, 150_000);

  it("continuing an unknown job is an input error", async () => {
    await expect(stack.dispatcher.enqueue({ prompt: "x", continue: "no-such-job" })).rejects.toThrow(
      /continue: no job with ID "no-such-job"/,
    );
    await expect(stack.dispatcher.enqueue({ prompt: "x", continue: "a", session: "ses_x" })).rejects.toThrow(
      /either continue or session/,
    );
  });
});

describe("unattended runs that never hang", () => {
  it("rejects a permission ask by default and shows it in the result", async () => {
    const record = await stack.dispatcher.run(
      { prompt: 'peek [[tool:read:{"filePath":"/etc/hostname"}]]', model: "fake/echo", directory: stack.opencode.root },
      { timeoutMs: 120_000 },
    );
    expect(record.state).toBe("completed");
    expect(record.asks).toEqual([
      expect.objectContaining({ kind: "permission", what: "external_directory", answer: "reject" }),
    ]);
    // opencode ends the turn when a permission is rejected: no tool output reaches the model.
    expect(stack.fake.calls("peek [[tool")).toBe(1);
    expect(record.text).not.toContain(readFileSync("/etc/hostname", "utf8").trim());
  });

  it("answers a permission ask in a subagent's session too (rejected by default), without a hang", async () => {
    const inner = 'subpeek [[tool:read:{"filePath":"/etc/hostname"}]]';
    const args = JSON.stringify({ description: "peek at a file", prompt: inner, subagent_type: "general" });
    const record = await stack.dispatcher.run(
      { prompt: `delegate [[tool:task:${args}]]`, model: "fake/echo", directory: stack.opencode.root },
      { timeoutMs: 120_000 },
    );
    expect(record.state).toBe("completed");
    expect(stack.fake.calls("subpeek [[tool")).toBeGreaterThanOrEqual(1); // the subagent ran
    expect(record.asks).toEqual([
      expect.objectContaining({ kind: "permission", what: "external_directory", answer: "reject" }),
    ]);
  });

  it("approves it once with autoApprove", async () => {
    const record = await stack.dispatcher.run(
      {
        prompt: 'peek again [[tool:read:{"filePath":"/etc/hostname"}]]',
        model: "fake/echo",
        directory: stack.opencode.root,
        autoApprove: true,
      },
      { timeoutMs: 120_000 },
    );
    expect(record.state).toBe("completed");
    expect(record.asks).toEqual([
      expect.objectContaining({ kind: "permission", what: "external_directory", answer: "once" }),
    ]);
    expect(record.text).toContain(readFileSync("/etc/hostname", "utf8").trim());
  });

  it("rejects the question tool instead of waiting for an answer", async () => {
    const args = {
      questions: [{ question: "Which colour?", header: "Colour", options: [{ label: "red", description: "red" }] }],
    };
    const record = await stack.dispatcher.run(
      { prompt: `ask me [[tool:question:${JSON.stringify(args)}]]`, model: "fake/echo" },
      { timeoutMs: 120_000 },
    );
    expect(record.state).toBe("completed");
    expect(record.asks).toEqual([
      expect.objectContaining({ kind: "question", what: "Which colour?", answer: "reject" }),
    ]);
  });

  it("a budget cap aborts the run and fails the job without a retry", async () => {
    const byTokens = await stack.dispatcher.run(
      { prompt: "too long", model: "fake/echo", maxTokens: 100, attempts: 3 },
      { timeoutMs: 120_000 },
    );
    expect(byTokens.state).toBe("failed");
    expect(byTokens.attempts).toBe(1);
    expect(byTokens.error).toMatchObject({ name: "BudgetExceeded", retryable: false });
    expect(byTokens.error!.message).toMatch(/budget exceeded: \d+ tokens passed --max-tokens 100/);
    const byCost = await stack.dispatcher.run(
      { prompt: "too dear", model: "fake/priced", maxCost: 0.5 },
      { timeoutMs: 120_000 },
    );
    expect(byCost.error).toMatchObject({ name: "BudgetExceeded", retryable: false });
    expect(byCost.error!.message).toMatch(/passed --max-cost \$0.5/);
  });

  it("a step that passes the budget stops the run in flight, before the next step ends", async () => {
    const bash = (command: string) => ({ toolCall: { name: "bash", args: { command, description: "say hi" } } });
    // Uncapped, a tool call is followed by a second model call with its output.
    stack.fake.script(bash("echo hi"));
    const free = await stack.dispatcher.run(
      { prompt: "two steps uncapped", model: "fake/echo" },
      { timeoutMs: 120_000 },
    );
    expect(free.state).toBe("completed");
    expect(free.text).toMatch(/^tool done: hi/);
    expect(stack.fake.calls("two steps uncapped")).toBe(2);
    // Capped, the first step's usage (the ~2,400-token system prompt) already passes the cap. Were
    // the run let go on, the second step would answer after 15 s with another tool call, and a
    // third call would follow. opencode reports a step's usage once its tools have run and sends
    // the next call ~0.1 s later, so the abort may come just after that call was sent: it stops
    // it in flight. (With the budget guard no call follows: budget-guard.test.ts.)
    stack.fake.script(bash("echo hi"), { ...bash("echo again"), delayMs: 15_000 });
    const started = Date.now();
    try {
      const capped = await stack.dispatcher.run(
        { prompt: "steps capped", model: "fake/echo", maxTokens: 1_000 },
        { timeoutMs: 120_000 },
      );
      expect(capped.state).toBe("failed");
      expect(capped.error).toMatchObject({ name: "BudgetExceeded", retryable: false });
      expect(capped.error!.message).toMatch(/budget exceeded: \d+ tokens passed --max-tokens 1000/);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(stack.fake.calls("steps capped")).toBeGreaterThanOrEqual(1);
      expect(stack.fake.calls("steps capped")).toBeLessThanOrEqual(2);
    } finally {
      stack.fake.reset(); // the second step may not have been asked for
    }
  });

  it("shows progress (steps, tool calls, tokens) through status", async () => {
    const record = await stack.dispatcher.run(
      { prompt: 'work [[tool:bash:{"command":"echo hi","description":"say hi"}]]', model: "fake/echo" },
      { timeoutMs: 120_000 },
    );
    expect(record.state).toBe("completed");
    // The last progress update is written as the attempt ends; give it its round trip.
    await expect
      .poll(
        async () => ((await stack.dispatcher.status(record.jobId)).progress as { steps?: number } | null)?.steps ?? 0,
        { timeout: 5_000 },
      )
      .toBeGreaterThanOrEqual(1);
    const status = await stack.dispatcher.status(record.jobId);
    expect(status.progress).toMatchObject({ toolCalls: 1, lastTool: "bash" });
    expect((status.progress as { steps: number }).steps).toBeGreaterThanOrEqual(1);
    expect((status.progress as { tokens: number }).tokens).toBeGreaterThan(0);
  });

  it("two worktree tasks on one repository edit the same file without trampling each other", async () => {
    const repo = join(stack.opencode.root, "repo");
    const git = makeGitRepo(repo);
    const edit = (content: string) =>
      stack.dispatcher.enqueue({
        prompt: `edit [[tool:write:${JSON.stringify({ filePath: "notes.txt", content })}]]`,
        model: "fake/echo",
        directory: repo,
        worktree: true,
      });
    const [a, b] = await Promise.all([edit("from A\n"), edit("from B\n")]);
    const [ra, rb] = await Promise.all([a, b].map((j) => stack.dispatcher.wait(j.jobId, { timeoutMs: 90_000 })));
    for (const [record, content] of [
      [ra!, "from A\n"],
      [rb!, "from B\n"],
    ] as const) {
      expect(record.state).toBe("completed");
      expect(record.worktree).toMatchObject({ branch: `dispatch/${record.jobId}`, changedFiles: ["notes.txt"] });
      expect(readFileSync(join(record.worktree!.path, "notes.txt"), "utf8")).toBe(content);
      expect(git("show", `dispatch/${record.jobId}:notes.txt`)).toBe(content.trim());
    }
    expect(ra!.worktree!.path).not.toBe(rb!.worktree!.path);
    expect(readFileSync(join(repo, "notes.txt"), "utf8")).toBe("original\n");
  });
});

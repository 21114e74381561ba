import { describe, expect, it, onTestFinished } from "vitest";
import { InputError, NotFoundError } from "../../src/shared/errors";
import type { ScheduleSpec } from "../../src/producer/schedules";
import type { ResultRecord } from "../../src/shared/result";
import { runCli } from "../support/cli";
import { useStack } from "../support/stack";
import { until } from "../support/until";

const transcriptOf = (text: string | null): string[] => JSON.parse(text!.replace(/^transcript: /, "")) as string[];
const dueAt = (jobId: string) => new Date(Number(jobId.split(":").pop())).toISOString();

describe("schedules", () => {
  const stack = useStack({ worker: { concurrency: 4 } });

  /** The firings of a schedule BullMQ made (`repeat:<name>:<ms>`) that completed, oldest first, with their records. */
  async function completedFirings(name: string): Promise<ResultRecord[]> {
    const jobs = await stack.dispatcher.list({ state: "completed", limit: 500 });
    const ids = jobs.map((j) => j.jobId).filter((id) => id.startsWith(`repeat:${name}:`));
    const records = await Promise.all(ids.map((id) => stack.dispatcher.result(id)));
    return records.sort((a, b) => a.jobId.localeCompare(b.jobId));
  }

  /** Every job of the schedule the queue holds, in any state. */
  async function allFirings(name: string): Promise<string[]> {
    const jobs = await stack.dispatcher.list({ limit: 500 });
    return jobs
      .map((j) => j.jobId)
      .filter((id) => id.startsWith(`repeat:${name}:`))
      .sort();
  }

  it("an every-2s schedule fires again and again, survives a worker restart, and stops when removed", async () => {
    const added = await stack.dispatcher.schedules.add({
      name: "tick",
      every: "2s",
      task: { prompt: "scheduled tick", model: "fake/echo", metadata: { from: "schedule" } },
    });
    expect(added).toMatchObject({ name: "tick", every: 2_000, cron: null, sameSession: false, replaced: false });
    expect(added.task).toMatchObject({ prompt: "scheduled tick", model: "fake/echo" });

    const two = await until(
      "two firings completed",
      async () => {
        const done = await completedFirings("tick");
        return done.length >= 2 && done;
      },
      30_000,
    );
    for (const record of two) {
      expect(record).toMatchObject({
        state: "completed",
        schedule: "tick",
        text: "echo: scheduled tick",
        metadata: { from: "schedule" },
      });
      expect(record.enqueuedAt).toBe(dueAt(record.jobId)); // each firing's own time, not the schedule's
    }
    expect(new Set(two.map((r) => r.sessionId)).size).toBe(two.length); // a new session each
    expect((await stack.dispatcher.schedules.get("tick"))!.firings).toBeGreaterThanOrEqual(2);

    // No worker for a while: nothing runs; a new worker takes the schedule up again.
    await stack.worker.close({ graceMs: 0 });
    const before = (await completedFirings("tick")).length;
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect((await completedFirings("tick")).length).toBe(before);
    await stack.startWorker({ concurrency: 4 });
    await until("firings after the restart", async () => (await completedFirings("tick")).length >= before + 2, 30_000);

    await stack.dispatcher.schedules.remove("tick");
    expect(await stack.dispatcher.schedules.get("tick")).toBeNull();
    const atRemoval = await allFirings("tick");
    await new Promise((resolve) => setTimeout(resolve, 3_000)); // one and a half periods
    expect(await allFirings("tick")).toEqual(atRemoval);
    await expect(stack.dispatcher.schedules.remove("tick")).rejects.toThrow(NotFoundError);
  });

  it("run fires a cron schedule once now, as an ordinary job naming the schedule", async () => {
    const added = await stack.dispatcher.schedules.add({
      name: "yearly",
      cron: "0 0 1 1 *",
      tz: "Europe/Paris",
      task: { prompt: "new year report", model: "fake/echo" },
    });
    onTestFinished(() => stack.dispatcher.schedules.remove("yearly").catch(() => undefined));
    expect(added).toMatchObject({ cron: "0 0 1 1 *", tz: "Europe/Paris", every: null, firings: 0 });
    expect(new Date(added.next!).getUTCMonth()).toBe(11); // midnight in Paris is 23:00 UTC on Dec 31
    const startedAt = Date.now();
    const { jobId } = await stack.dispatcher.schedules.run("yearly");
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: 30_000 });
    expect(record).toMatchObject({ state: "completed", schedule: "yearly", text: "echo: new year report" });
    expect(Date.parse(record.enqueuedAt!)).toBeGreaterThanOrEqual(startedAt - 1_000);
    expect((await stack.dispatcher.status(jobId)).state).toBe("completed");
    await expect(stack.dispatcher.schedules.run("no-such-schedule")).rejects.toThrow(NotFoundError);
    expect((await stack.dispatcher.schedules.get("yearly"))!.firings).toBe(0); // run is besides the plan
  });

  // Needs the worker to call scheduledFiring (src/worker/queue/scheduled-session.ts) on each pickup.
  it("--same-session: each firing runs in the previous firing's session, one at a time", async () => {
    await stack.dispatcher.schedules.add({
      name: "diary",
      every: 2_000,
      sameSession: true,
      task: { prompt: "diary entry [[transcript]]", model: "fake/echo" },
    });
    onTestFinished(() => stack.dispatcher.schedules.remove("diary").catch(() => undefined));
    const records = await until(
      "three firings in one session",
      async () => {
        const done = await completedFirings("diary");
        return done.length >= 3 && done.slice(0, 3);
      },
      30_000,
    );
    expect(new Set(records.map((r) => r.sessionId)).size).toBe(1);
    records.forEach((record, i) => {
      expect(record.schedule).toBe("diary");
      expect(transcriptOf(record.text)).toHaveLength(i + 1); // it sees every firing before it
    });
    for (let i = 1; i < records.length; i++)
      expect(Date.parse(records[i]!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(records[i - 1]!.finishedAt!));
    expect((await stack.dispatcher.schedules.get("diary"))!.sessionId).toBe(records[0]!.sessionId);
    // A firing by `run` takes its turn in the same session.
    const ran = await stack.dispatcher.wait((await stack.dispatcher.schedules.run("diary")).jobId, {
      timeoutMs: 30_000,
    });
    expect(ran).toMatchObject({ state: "completed", schedule: "diary", sessionId: records[0]!.sessionId });
    expect(transcriptOf(ran.text).length).toBeGreaterThanOrEqual(4);
  });

  it("the CLI adds, lists, runs and removes schedules", async () => {
    const env = stack.childEnv;
    const add = await runCli(
      [
        "schedule",
        "add",
        "cli-nightly",
        "--cron",
        "0 2 * * *",
        "--tz",
        "Europe/Paris",
        "nightly review",
        "--model",
        "fake/echo",
      ],
      { env },
    );
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect(add.stdout).toMatch(
      /^schedule cli-nightly added: cron "0 2 \* \* \*" \(Europe\/Paris\); next firing \d{4}-/,
    );
    const [list, table] = await Promise.all([
      runCli(["schedule", "list", "--json"], { env }),
      runCli(["schedule", "list"], { env }),
    ]);
    expect(list.code).toBe(0);
    const listed = list.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { name: string; cron: string; tz: string; task: { prompt: string } });
    expect(listed.find((s) => s.name === "cli-nightly")).toMatchObject({
      cron: "0 2 * * *",
      tz: "Europe/Paris",
      task: { prompt: "nightly review" },
    });
    expect(table.stdout).toMatch(/cli-nightly\s+cron "0 2 \* \* \*" \(Europe\/Paris\)/);
    const run = await runCli(["schedule", "run", "cli-nightly", "--wait"], { env, timeoutMs: 60_000 });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("echo: nightly review\n");
    expect((await runCli(["schedule", "remove", "cli-nightly"], { env })).stdout).toBe(
      "schedule cli-nightly removed\n",
    );
    const again = await runCli(["schedule", "remove", "cli-nightly"], { env });
    expect(again.code).toBe(4);
    expect(again.stderr).toMatch(/no schedule named "cli-nightly"/);
  });

  it("bad input is refused with exit 2 and a message naming the field", async () => {
    const env = stack.childEnv;
    const cases: [string[], RegExp][] = [
      [["bad", "a prompt", "--cron", "0 2 * * *", "--every", "15m"], /cron: give either cron or every, not both/],
      [["bad", "a prompt", "--cron", "61 * * * *"], /cron: "61 \* \* \* \*" is not a cron pattern/],
      [["a:b", "a prompt", "--every", "1m"], /name: may hold only letters/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(["schedule", "add", ...args], { env })));
    results.forEach((result, i) => {
      expect(result.stderr).toMatch(cases[i]![1]);
      expect(result.code).toBe(2);
    });
    const refused: [Partial<ScheduleSpec>, RegExp][] = [
      [{}, /cron: give cron .* or every/],
      [{ cron: "0 2 * * *", tz: "Mars/Olympus" }, /tz: "Mars\/Olympus" is not a time zone/],
      [{ every: "1m", tz: "Europe/Paris" }, /tz: only with cron/],
      [{ every: "soon" }, /every: invalid duration "soon"/],
      [{ every: 10 }, /every: must be at least 1s/],
      [{ cron: " " }, /cron: must be a cron pattern/],
      [{ every: "1m", task: { prompt: "p", continue: "job-1" } }, /task\.continue: not in a schedule/],
      [{ every: "1m", task: { prompt: "" } }, /prompt: must not be empty/],
      [{ every: "1m", task: { prompt: "p", model: "no-slash" } }, /model: must be of the form/],
    ];
    for (const [spec, message] of refused) {
      const adding = stack.dispatcher.schedules.add({ name: "bad", task: { prompt: "a prompt" }, ...spec });
      await expect(adding).rejects.toThrow(InputError);
      await expect(adding).rejects.toThrow(message);
    }
    expect(await stack.dispatcher.schedules.list()).toEqual([]);
  });
});

/**
 * Live answers and whole-queue control on the real stack: a job's answer arrives as it is written
 * (library stream, resumable; `watch` and `enqueue --stream` in the CLI), `cancel <batchId>` ends
 * every member, `retry <batchId>` runs the failed ones again, `pause` / `resume` hold the queue.
 */
import { describe, expect, it } from "vitest";
import type { LiveEvent } from "../../src/shared/live";
import type { ResultRecord } from "../../src/shared/result";
import { runCli } from "../support/cli";
import { useStack } from "../support/stack";
import { until } from "../support/until";

const WAIT = 120_000;

async function collect(stream: AsyncIterable<LiveEvent>): Promise<LiveEvent[]> {
  const events: LiveEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

describe("live answers and queue control", () => {
  const stack = useStack({ worker: { concurrency: 2 } });

  it(
    "streams the answer as it is written, in order, resumable after any event without repeats",
    async () => {
      const { jobId } = await stack.dispatcher.enqueue({ prompt: "[[slow:400]] tell the story in pieces" });
      const events = await collect(stack.dispatcher.stream(jobId));
      const texts = events.filter((e) => e.type === "text").map((e) => String(e.data.text));
      expect(texts.length).toBeGreaterThan(1);
      const final = events.at(-1)!;
      expect(final.type).toBe("final");
      const record = final.data.record as ResultRecord;
      expect(record.state).toBe("completed");
      expect(texts.join("")).toBe(record.text);
      expect(events.find((e) => e.type === "state")?.data).toMatchObject({ state: "active", attempt: 1 });

      // Resuming after the second text event gives exactly what came after it.
      const at = events.findIndex((e) => e.type === "text") + 1;
      const resumed = await collect(stack.dispatcher.stream(jobId, { after: events[at]!.id }));
      expect(resumed.map((e) => e.id)).toEqual(events.slice(at + 1).map((e) => e.id));
    },
    WAIT,
  );

  it("watch and enqueue --stream print the answer piece by piece and exit as wait does", async () => {
    const streamed = await runCli(["enqueue", "[[slow:300]] stream this answer", "--stream"], {
      env: stack.childEnv,
      timeoutMs: WAIT,
    });
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stdout.trim()).toBe("echo: [[slow:300]] stream this answer");

    const { jobId } = await stack.dispatcher.enqueue({ prompt: "[[slow:300]] watch it come" });
    const watched = await runCli(["watch", jobId, "--json"], { env: stack.childEnv, timeoutMs: WAIT });
    expect(watched.code, watched.stderr).toBe(0);
    const events = watched.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as LiveEvent);
    expect(events.filter((e) => e.type === "text").length).toBeGreaterThan(1);
    expect(events.at(-1)).toMatchObject({ type: "final", data: { state: "completed" } });

    const failing = await stack.dispatcher.enqueue({ prompt: "[[status:401]] refused", attempts: 1 });
    const failed = await runCli(["watch", failing.jobId], { env: stack.childEnv, timeoutMs: WAIT });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/failed after 1 attempt\(s\): APIError/);
    const unknown = await runCli(["watch", "no-such-job"], { env: stack.childEnv, timeoutMs: WAIT });
    expect(unknown.code).toBe(4);
  }, 240_000);

  it("cancel <batchId> ends every member, running or waiting; retry <batchId> runs the failed ones again", async () => {
    const batch = await stack.dispatcher.submitBatch(
      [
        { prompt: "[[delay:60000]] a long member" },
        { prompt: "a member waiting", delay: 3_600_000 },
        { prompt: "another member waiting", delay: 3_600_000 },
      ],
      { id: "to-cancel" },
    );
    await until("the long member to run", () => stack.fake.calls("a long member") >= 1);
    const cancelled = await runCli(["cancel", batch.id, "--json"], { env: stack.childEnv, timeoutMs: WAIT });
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ batchId: "to-cancel", removed: 2, cancelled: 1, pending: 0 });
    const summary = await batch.wait({ timeoutMs: WAIT });
    expect(summary).toMatchObject({ total: 3, completed: 0, failed: 3 });
    expect(summary.failures.map((f) => f.error?.name)).toEqual(["Cancelled", "Cancelled", "Cancelled"]);

    const retried = await runCli(["retry", batch.id, "--failed", "--json"], { env: stack.childEnv, timeoutMs: WAIT });
    expect(retried.code, retried.stderr).toBe(0);
    expect(JSON.parse(retried.stdout)).toMatchObject({ batchId: "to-cancel", retried: 3, refused: [] });
    await until("the retried members to be back in the queue", async () => (await batch.status()).counts.failed === 0);
    await stack.dispatcher.cancelBatch(batch.id); // they would wait an hour (or a minute) again
  }, 240_000);

  it(
    "pause holds every job in the queue until resume",
    async () => {
      await runCli(["pause"], { env: stack.childEnv, timeoutMs: WAIT }).then((r) => expect(r.code, r.stderr).toBe(0));
      expect(await stack.dispatcher.isPaused()).toBe(true);
      const { jobId } = await stack.dispatcher.enqueue({ prompt: "held while paused" });
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(stack.fake.calls("held while paused")).toBe(0);
      expect((await stack.dispatcher.status(jobId)).state).toBe("waiting");
      await runCli(["resume"], { env: stack.childEnv, timeoutMs: WAIT }).then((r) => expect(r.code, r.stderr).toBe(0));
      expect((await stack.dispatcher.wait(jobId, { timeoutMs: WAIT })).state).toBe("completed");
    },
    WAIT,
  );
});

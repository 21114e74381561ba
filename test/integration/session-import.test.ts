/**
 * A worker whose opencode server holds an OLDER copy of a session (README: "A worker asked to
 * continue a session its own opencode server lacks, or holds an older copy of, imports it"):
 * worker A runs turn 1, worker B turn 2, then A turn 3, which must see turn 2. Which worker runs a
 * turn is decided by keeping the other one busy with a job that hangs until it is cancelled.
 */
import { describe, expect, it } from "vitest";
import { createClient } from "../../src/worker/server/opencode-client";
import type { RunningWorker } from "../../src/worker/worker";
import { useStack } from "../support/stack";
import { until } from "../support/until";

const WAIT = 60_000;
const transcriptOf = (text: string | null): string[] => JSON.parse(text!) as string[];

describe("continuing a session on a worker that holds an older copy of it", () => {
  const stack = useStack();

  /** Keeps a one-slot worker busy: a job whose model call hangs until the job is cancelled. */
  const occupy = async (name: string) => {
    const { jobId } = await stack.dispatcher.enqueue({ prompt: `[[hang]] ${name}`, model: "fake/echo", attempts: 1 });
    await until(`${name} to be running`, () => stack.fake.calls(name) >= 1, WAIT);
    return jobId;
  };
  const userTurns = async (worker: RunningWorker, sessionId: string) => {
    const messages = await createClient(worker.server()).session.messages({ sessionID: sessionId });
    return (messages.data ?? []).filter((m) => m.info.role === "user").length;
  };

  it("imports the stored session over its own copy before prompting, so the turn sees every earlier one", async () => {
    const a = await stack.startWorker({ concurrency: 1 });
    const first = await stack.dispatcher.run(
      { prompt: "remember the word heron", model: "fake/echo" },
      { timeoutMs: WAIT },
    );
    expect(first).toMatchObject({ state: "completed", worker: a.id });
    const busyA = await occupy("blocker on A");

    const b = await stack.startWorker({ concurrency: 1 });
    const second = await stack.dispatcher.run({ prompt: "second turn", continue: first.jobId }, { timeoutMs: WAIT });
    expect(second).toMatchObject({ state: "completed", worker: b.id, sessionId: first.sessionId });
    const busyB = await occupy("blocker on B");

    // A's server still has the session as it left it: one turn, not two.
    expect(await userTurns(a, first.sessionId!)).toBe(1);
    expect((await stack.dispatcher.cancel(busyA)).outcome).toBe("cancelled");
    const third = await stack.dispatcher.run(
      { prompt: "third turn [[transcript]]", continue: second.jobId },
      { timeoutMs: WAIT },
    );
    expect(third).toMatchObject({ state: "completed", worker: a.id, sessionId: first.sessionId });
    expect(transcriptOf(third.text)).toEqual(["remember the word heron", "second turn", "third turn [[transcript]]"]);
    expect(await userTurns(a, first.sessionId!)).toBe(3);
    expect((await stack.dispatcher.cancel(busyB)).outcome).toBe("cancelled");
  });
});

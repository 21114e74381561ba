/**
 * Any valid queue name works, also the names of the project's own keys (`result`, `cancel`,
 * `thread-of`): BullMQ's keys (`dispatch:{q}:<q>:…`) and the project's (`dispatch:{q}:#…`) never
 * meet. On each such queue a job completes, a follow-up continues its session, and a waiting job
 * is cancelled — real worker, real opencode, fake model.
 */
import { afterAll, describe, expect, it } from "vitest";
import { queueKeys } from "../../src/shared/keys";
import { deleteQueueKeys, startStack, type Stack } from "../support/stack";

const WAIT = 120_000;

const NAMES = ["result", "cancel", "thread-of"];

describe("queues named like the project's keys", () => {
  const stacks: Stack[] = [];
  afterAll(async () => {
    await Promise.all(stacks.map((stack) => stack.close()));
    await Promise.all(stacks.map((stack) => deleteQueueKeys(stack.redisUrl, stack.dispatcher.queueName)));
  });

  /** On the queue `name`: a job completes, a follow-up continues its session, a waiting job is cancelled. */
  const exercise = async (name: string) => {
    expect(queueKeys(name).bull).toBe(`dispatch:{${name}}:${name}:`);
    const stack = await startStack({ configEnv: { DISPATCH_QUEUE: name } });
    stacks.push(stack);
    await deleteQueueKeys(stack.redisUrl, name); // leftovers of an earlier run
    expect(stack.dispatcher.queueName).toBe(name);
    await stack.startWorker({ concurrency: 2 });
    const first = await stack.dispatcher.run({ prompt: `first on ${name} [[reply:one]]` }, { timeoutMs: WAIT });
    expect(first).toMatchObject({ state: "completed", text: "one" });
    const follow = await stack.dispatcher.run(
      { prompt: `second on ${name} [[reply:two]]`, continue: first.jobId },
      { timeoutMs: WAIT },
    );
    expect(follow).toMatchObject({
      state: "completed",
      text: "two",
      sessionId: first.sessionId,
      continues: first.jobId,
    });
    const later = await stack.dispatcher.enqueue({ prompt: "later", delay: 3_600_000 });
    expect((await stack.dispatcher.cancel(later.jobId, { timeoutMs: 15_000 })).outcome).toBe("removed");
    expect((await stack.dispatcher.result(later.jobId)).error).toMatchObject({ name: "Cancelled" });
  };

  it(
    "jobs, follow-ups and cancels work on queues named result, cancel and thread-of",
    async () => {
      await Promise.all(NAMES.map(exercise));
    },
    2 * WAIT,
  );
});

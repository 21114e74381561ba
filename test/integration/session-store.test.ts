/**
 * Storing a job's session is part of its attempt. Redis refuses the worker's writes of session
 * copies (an ACL user that may write every key of the queue but those), as a full or failing Redis
 * would: the answered attempt fails and is retried without asking the model again, and a
 * follow-up never runs on a transcript older than the job before it.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { deleteQueueKeys, useStack } from "../support/stack";
import { until } from "../support/until";
import { queueKeys } from "../../src/shared/keys";

/** A literal for an ACL key pattern (glob). */
const escapeGlob = (text: string) => text.replace(/[*?[\]\\]/g, "\\$&");

const WAIT = 120_000;

describe("storing the session is part of the attempt", () => {
  const adminUrl = inject("redisUrl");
  const queue = `store-${randomUUID().slice(0, 8)}`;
  const user = `worker-${queue}`;
  const password = randomUUID();
  let admin: Redis;

  /** Every key of the queue is writable except the session copies (QueueKeys.sessionExport). */
  const denySessionWrites = async () => {
    const base = `dispatch:{${queue}}:`;
    const copies = queueKeys(queue).sessionExport("");
    expect(copies.startsWith(base)).toBe(true);
    const word = copies.slice(base.length);
    const writable = [...word].map((ch, i) => `%RW~${base}${escapeGlob(word.slice(0, i))}[^${ch}]*`);
    await admin.call("ACL", "SETUSER", user, "resetkeys", "%R~*", ...writable);
  };
  const allowAll = () => admin.call("ACL", "SETUSER", user, "resetkeys", "allkeys");
  const storedCopy = (sessionId: string) => admin.exists(queueKeys(queue).sessionExport(sessionId));

  beforeAll(async () => {
    admin = new Redis(adminUrl);
    await admin.call("ACL", "SETUSER", user, "reset", "on", `>${password}`, "allkeys", "allchannels", "+@all");
  });
  afterAll(async () => {
    await deleteQueueKeys(adminUrl, queue);
    await admin?.call("ACL", "DELUSER", user).catch(() => undefined);
    admin?.disconnect();
  });
  const url = new URL(adminUrl);
  url.username = user;
  url.password = password;
  /** Its worker is started once for both tests (each spawned opencode server costs seconds); the second replaces it. */
  const stack = useStack({
    configEnv: { REDIS_URL: url.toString(), DISPATCH_QUEUE: queue, DISPATCH_PROVIDER_RETRIES: "0" },
    worker: { concurrency: 1 },
  });

  it("an answer whose session could not be stored is kept, the session stored on retry, the model asked once", async () => {
    await denySessionWrites();
    const { jobId } = await stack.dispatcher.enqueue({ prompt: "answer once [[reply:the only answer]]", attempts: 3 });
    const retrying = await until("the attempt that could not store its session", async () => {
      const { result } = await stack.dispatcher.status(jobId);
      return result?.state === "retrying" ? result : undefined;
    });
    expect(retrying.error).toMatchObject({ name: "SessionNotStored", retryable: true });
    expect(retrying.text).toBe("the only answer");
    expect(retrying.messageId).toMatch(/^msg_/);
    expect(retrying.sessionStored).toBe(false);
    expect(await storedCopy(retrying.sessionId!)).toBe(0);

    await allowAll();
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: WAIT });
    expect(record).toMatchObject({
      state: "completed",
      text: "the only answer",
      sessionId: retrying.sessionId,
      messageId: retrying.messageId,
    });
    expect(record.attempts).toBeGreaterThanOrEqual(2);
    expect(record.sessionStored).toBe(true);
    expect(stack.fake.calls("answer once")).toBe(1);
    expect(await storedCopy(record.sessionId!)).toBe(1);
  }, 240_000);

  it("a follow-up never runs on a transcript older than the job before it", async () => {
    await allowAll();
    const first = stack.worker;
    const opening = await stack.dispatcher.enqueue({ prompt: "opening turn" });
    const opened = await stack.dispatcher.wait(opening.jobId, { timeoutMs: WAIT });
    expect(opened.state).toBe("completed");

    // The second turn is answered on this worker's server, but its session never reaches Redis.
    await denySessionWrites();
    const second = await stack.dispatcher.enqueue({ prompt: "second turn", continue: opening.jobId, attempts: 1 });
    const unstored = await stack.dispatcher.wait(second.jobId, { timeoutMs: WAIT });
    expect(unstored).toMatchObject({ state: "failed", sessionId: opened.sessionId, text: "echo: second turn" });
    expect(unstored.error?.name).toBe("SessionNotStored");

    // Only the first turn's copy is in Redis; another worker, whose server lacks the second turn, gets the third.
    await first.close({ graceMs: 0 });
    await allowAll();
    await stack.startWorker({ concurrency: 1 });
    const third = await stack.dispatcher.enqueue({ prompt: "third turn", continue: second.jobId, attempts: 1 });
    const refused = await stack.dispatcher.wait(third.jobId, { timeoutMs: WAIT });
    expect(refused.state).toBe("failed");
    expect(refused.error?.name).toBe("SessionBehind");
    expect(refused.error?.message).toContain(second.jobId);
    expect(stack.fake.calls("third turn")).toBe(0);
  }, 240_000);
});

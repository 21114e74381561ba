/**
 * A job's transcript is built from the session's events, not read again from opencode: what the
 * queue stores is exactly what `GET /session/{id}/message` gives, for a one-step answer, a turn of
 * several tool steps and a follow-up in an existing session — and the worker asks opencode for the
 * messages only where it must (a follow-up checks the server's copy before its turn). Whatever is
 * in doubt (a follow-up whose stored copy is not the server's, an event lost, idle not seen) is
 * read from the server instead.
 */
import { join } from "node:path";
import { promisify } from "node:util";
import { gunzip, gzipSync } from "node:zlib";
import { createOpencodeClient, type AssistantMessage, type OpencodeClient } from "@opencode-ai/sdk/v2";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countingProxy } from "../../bench/measure";
import { queueKeys } from "../../src/shared/keys";
import { createLogger } from "../../src/shared/logger";
import type { ResultRecord } from "../../src/shared/result";
import { EventHub, type ServerEvent } from "../../src/worker/server/event-hub";
import type { RunningWorker } from "../../src/worker/worker";
import { TurnTranscript } from "../../src/worker/session/turn-transcript";
import { until } from "../support/until";
import { startOpencodeServer, type OpencodeServer } from "../support/opencode-server";
import { useStack } from "../support/stack";

const unzip = promisify(gunzip);
const MESSAGES = "GET /session/:id/message";

describe("the transcript built from events", () => {
  const stack = useStack();
  let server: OpencodeServer;
  let proxy: Awaited<ReturnType<typeof countingProxy>>;
  let direct: OpencodeClient;
  let redis: Redis;
  let worker: RunningWorker;

  beforeAll(async () => {
    server = await startOpencodeServer({ env: stack.opencode.env, cwd: join(stack.opencode.root, "project") });
    // The worker talks to opencode through a proxy that counts its calls; the test reads past it.
    proxy = await countingProxy(server.url);
    direct = createOpencodeClient({ baseUrl: server.url });
    redis = new Redis(stack.redisUrl);
    worker = await stack.startWorker({ concurrency: 1, attach: proxy.url });
  });
  afterAll(async () => {
    await worker?.close({ graceMs: 0 }); // before its server goes; the stack is closed after this hook
    await proxy?.close();
    await server?.stop();
    redis?.disconnect();
  });

  /** Runs one job; the opencode calls it made, and its record. */
  const run = async (task: {
    prompt: string;
    continue?: string;
  }): Promise<{ record: ResultRecord; calls: Map<string, number> }> => {
    proxy.reset();
    const { jobId } = await stack.dispatcher.enqueue({ ...task, model: "fake/priced" });
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: 120_000 });
    expect(record.state, JSON.stringify(record.error)).toBe("completed");
    return { record, calls: new Map(proxy.counts) };
  };

  /** The stored copy and the server's messages, read now. */
  const bothCopies = async (sessionId: string) => {
    const raw = await redis.getBuffer(queueKeys(stack.queue).sessionExport(sessionId));
    expect(raw).not.toBeNull();
    const stored = JSON.parse((await unzip(raw!)).toString("utf8")) as { info: { id: string }; messages: unknown[] };
    const read = await direct.session.messages({ sessionID: sessionId }, { signal: AbortSignal.timeout(10_000) });
    expect(read.response.ok).toBe(true);
    return { stored, server: read.data! };
  };

  /**
   * The stored transcript is the server's, and the record's usage is that of the turn's steps
   * (the assistant messages answering its user message) as the server has them. Gives the messages.
   */
  const expectStoredAsServer = async (record: ResultRecord, steps: number) => {
    const { stored, server: messages } = await bothCopies(record.sessionId!);
    expect(stored.info.id).toBe(record.sessionId);
    expect(stored.messages).toStrictEqual(messages);
    const parent = messages.find((m) => m.info.id === record.messageId)!.info as { parentID: string };
    const turn = messages
      .map((m) => m.info)
      .filter((m): m is AssistantMessage => m.role === "assistant" && m.parentID === parent.parentID);
    expect(turn).toHaveLength(steps);
    const sum = (of: (m: (typeof turn)[number]) => number) => turn.reduce((a, m) => a + of(m), 0);
    expect(record.tokens).toMatchObject({ input: sum((m) => m.tokens.input), output: sum((m) => m.tokens.output) });
    expect(record.cost).toBeCloseTo(
      sum((m) => m.cost),
      9,
    );
    return messages;
  };

  let first: ResultRecord;

  it("a one-step answer: the stored transcript is the server's, and the messages were never read", async () => {
    const { record, calls } = await run({ prompt: "one step [[reply:just this]]" });
    first = record;
    expect(record.text).toBe("just this");
    expect(calls.get(MESSAGES) ?? 0).toBe(0);
    const messages = await expectStoredAsServer(record, 1);
    expect(messages).toHaveLength(2);
  });

  it("a turn of several tool steps: every step's message and part is stored as the server has it", async () => {
    const { record, calls } = await run({
      prompt: 'several steps [[tool:bash:{"command":"echo hi","description":"x"}]]',
    });
    expect(record.text).toBe("tool done: hi");
    expect(calls.get(MESSAGES) ?? 0).toBe(0);
    // Usage covers both steps, from the same built messages.
    const messages = await expectStoredAsServer(record, 2);
    expect(messages.map((m) => m.info.role)).toEqual(["user", "assistant", "assistant"]);
    expect(messages[1]!.parts.some((p) => p.type === "tool" && p.state.status === "completed")).toBe(true);
  });

  it("a follow-up in an existing session: stored messages and this turn's, as the server has them; one read, before the turn", async () => {
    const { record, calls } = await run({ prompt: "and then [[reply:the second answer]]", continue: first.jobId });
    expect(record.sessionId).toBe(first.sessionId);
    expect(record.text).toBe("the second answer");
    expect(calls.get(MESSAGES) ?? 0).toBe(1); // the check that the server's copy is the stored one
    expect(await expectStoredAsServer(record, 1)).toHaveLength(4);
  });

  it("a follow-up whose stored copy is not exactly the server's: the messages are read, and stored as the server has them", async () => {
    const key = queueKeys(stack.queue).sessionExport(first.sessionId!);
    const { stored } = await bothCopies(first.sessionId!);
    const copy = stored as { messages: { info: { time: { created: number } } }[] };
    copy.messages[0]!.info.time.created += 1; // same messages, one field unlike the server's
    await redis.set(key, gzipSync(JSON.stringify(copy)));
    const { record, calls } = await run({ prompt: "once more [[reply:the third answer]]", continue: first.jobId });
    expect(record.sessionId).toBe(first.sessionId);
    expect(calls.get(MESSAGES) ?? 0).toBe(2); // the check before the turn, then the messages after it
    expect(await expectStoredAsServer(record, 1)).toHaveLength(copy.messages.length + 2);
  });
});

describe("a transcript in doubt gives way to reading the messages", () => {
  const stack = useStack();
  let server: OpencodeServer;
  let client: OpencodeClient;
  let hub: EventHub;

  beforeAll(async () => {
    server = await startOpencodeServer({ env: stack.opencode.env, cwd: join(stack.opencode.root, "project") });
    client = createOpencodeClient({ baseUrl: server.url });
    hub = new EventHub(client, createLogger("warn")).start();
    await until("the event stream", () => hub.connections > 0 || undefined);
  });
  afterAll(async () => {
    hub?.close();
    await server?.stop();
  });

  /** A new session's turn followed through the server's real stream, less the events `drop` takes out. */
  const turn = async (prompt: string, drop: (event: ServerEvent) => boolean) => {
    const session = (await client.session.create({ title: "doubt" }, { signal: AbortSignal.timeout(10_000) })).data!;
    const filtered = {
      get connections() {
        return hub.connections;
      },
      subscribe: (id: string, handler: (event: ServerEvent, directory: string) => void) =>
        hub.subscribe(id, (e, d) => drop(e) || handler(e, d)),
    } as unknown as EventHub;
    const transcript = new TurnTranscript(filtered, session.id, [], true);
    const answer = (
      await client.session.prompt(
        {
          sessionID: session.id,
          model: { providerID: "fake", modelID: "echo" },
          parts: [{ type: "text", text: prompt }],
        },
        { signal: AbortSignal.timeout(60_000) },
      )
    ).data!;
    const settled = await transcript.settle(answer, AbortSignal.timeout(10_000));
    transcript.close();
    const messages = (await client.session.messages({ sessionID: session.id }, { signal: AbortSignal.timeout(10_000) }))
      .data!;
    return { settled, messages };
  };
  const isPart = (type: string) => (e: ServerEvent) =>
    e.type === "sync" && e.syncEvent.type === "message.part.updated.1" && e.syncEvent.data.part.type === type;

  it("nothing lost: the built messages are the server's", async () => {
    const { settled, messages } = await turn(
      'all there [[tool:bash:{"command":"echo hi","description":"x"}]]',
      () => false,
    );
    expect(settled.why).toBeUndefined();
    expect(settled.messages).toStrictEqual(messages);
  });

  it("a lost event (a step's finish) is seen as a gap", async () => {
    let dropped = 0;
    const { settled } = await turn(
      'lost step [[tool:bash:{"command":"echo hi","description":"x"}]]',
      (e) => isPart("step-finish")(e) && dropped++ === 0,
    );
    expect(dropped).toBeGreaterThan(0);
    expect(settled.messages).toBeUndefined();
    expect(settled.why).toMatch(/missing/);
  });

  it("the idle status never seen: no transcript, after a short wait", async () => {
    const started = Date.now();
    const { settled } = await turn("no idle", (e) => e.type === "session.status" || e.type === "session.idle");
    expect(settled.messages).toBeUndefined();
    expect(settled.why).toMatch(/idle/);
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

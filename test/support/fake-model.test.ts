/**
 * Smoke test of the test infrastructure on real parts: the fake model behind a real
 * `opencode serve`, driven through the v2 SDK, plus a real redis-server crash/restart.
 */
import { createOpencodeClient, type Part } from "@opencode-ai/sdk/v2";
import { Redis } from "ioredis";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeModel, type FakeModel } from "./fake-model";
import { makeOpencodeEnv, type OpencodeEnv } from "./opencode-env";
import { startOpencodeServer, type OpencodeServer } from "./opencode-server";
import { startRedisServer } from "./redis";

type Client = ReturnType<typeof createOpencodeClient>;

function textOf(parts: Part[]): string {
  return parts.flatMap((p) => (p.type === "text" ? [p.text] : [])).join("");
}

describe("fake model behind a real opencode serve", () => {
  let model: FakeModel;
  let ocEnv: OpencodeEnv;
  let server: OpencodeServer;
  let client: Client;
  let directory: string;

  beforeAll(async () => {
    model = await startFakeModel();
    ocEnv = await makeOpencodeEnv(model.url);
    directory = join(ocEnv.root, "project");
    server = await startOpencodeServer({ env: ocEnv.env, cwd: directory });
    client = createOpencodeClient({ baseUrl: server.url, directory });
  }, 120_000); // a cold first start on a loaded 2-core machine can pass 30 s

  afterAll(async () => {
    await server?.stop();
    await model?.close();
    await ocEnv?.cleanup();
  }, 15_000);

  async function prompt(sessionID: string, text: string, modelID = "echo") {
    const started = Date.now();
    const res = await client.session.prompt({
      sessionID,
      model: { providerID: "fake", modelID },
      parts: [{ type: "text", text }],
    });
    if (!res.data) throw new Error(`prompt failed: ${JSON.stringify(res.error)}`);
    return { info: res.data.info, parts: res.data.parts, ms: Date.now() - started };
  }

  async function newSession(): Promise<string> {
    const res = await client.session.create({});
    if (!res.data) throw new Error(`session.create failed: ${JSON.stringify(res.error)}`);
    return res.data.id;
  }

  it("(a) echoes the prompt with token counts, and title requests are not recorded", async () => {
    model.reset();
    const sessionID = await newSession();
    const { info, parts, ms } = await prompt(sessionID, "hello fake model", "priced");
    console.log(
      `[smoke] first prompt on a fresh server took ${ms} ms; tokens ${JSON.stringify(info.tokens)} cost ${info.cost}`,
    );
    expect(info.error).toBeUndefined();
    expect(textOf(parts)).toBe("echo: hello fake model");
    expect(info.tokens.input).toBeGreaterThan(0);
    expect(info.tokens.output).toBeGreaterThan(0);
    expect(info.cost).toBeGreaterThan(0);
    expect(model.calls("hello fake model")).toBe(1);
    expect(model.requests).toHaveLength(1);
  }, 20_000);

  it("(b) a 401 comes back as info.error without retries", async () => {
    model.reset();
    const sessionID = await newSession();
    const { info, ms } = await prompt(sessionID, "[[status:401]] nope");
    console.log(
      `[smoke] 401 returned after ${ms} ms, model calls: ${model.calls("nope")}, error: ${JSON.stringify(info.error)}`,
    );
    expect(info.error?.name).toBe("APIError");
    expect(info.error?.data).toMatchObject({ statusCode: 401, isRetryable: false });
    expect(model.calls("nope")).toBe(1);
  }, 20_000);

  it("(c) runs a bash tool call, then answers with the tool result", async () => {
    model.reset();
    const sessionID = await newSession();
    const { info, parts } = await prompt(sessionID, '[[tool:bash:{"command":"echo hi","description":"say hi"}]]');
    expect(info.error).toBeUndefined();
    expect(textOf(parts)).toMatch(/^tool done: hi/);
    const messages = await client.session.messages({ sessionID });
    const toolParts = (messages.data ?? []).flatMap((m) => m.parts).filter((p) => p.type === "tool");
    expect(toolParts).toHaveLength(1);
    expect(toolParts[0]).toMatchObject({ tool: "bash", state: { status: "completed" } });
    expect(model.requests).toHaveLength(2);
    expect(model.requests[1]?.messages.at(-1)?.role).toBe("tool");
  }, 20_000);

  it("[[rounds:3]] runs three bash rounds, one per model call, then answers", async () => {
    model.reset();
    const sessionID = await newSession();
    const { parts } = await prompt(sessionID, "work in rounds [[rounds:3]]");
    expect(textOf(parts)).toMatch(/^tool done: round 3/);
    const messages = await client.session.messages({ sessionID });
    const commands = (messages.data ?? [])
      .flatMap((m) => m.parts)
      .flatMap((p) => (p.type === "tool" ? [(p.state as { input?: { command?: string } }).input?.command] : []));
    expect(commands).toEqual(["echo round 1", "echo round 2", "echo round 3"]);
    expect(model.requests).toHaveLength(4);
  }, 30_000);

  it("(d) the model sees earlier turns of the same session", async () => {
    model.reset();
    const sessionID = await newSession();
    await prompt(sessionID, "first turn alpha");
    const { parts } = await prompt(sessionID, "second turn [[transcript]]");
    const seen = JSON.parse(textOf(parts)) as string[];
    expect(seen).toContain("first turn alpha");
    expect(seen.at(-1)).toBe("second turn [[transcript]]");
  }, 20_000);

  it("scripted steps take precedence over directives", async () => {
    model.reset();
    model.script({ text: "scripted!" });
    const sessionID = await newSession();
    const first = await prompt(sessionID, "[[reply:directive]]");
    const second = await prompt(sessionID, "[[reply:directive]]");
    expect(textOf(first.parts)).toBe("scripted!");
    expect(textOf(second.parts)).toBe("directive");
  }, 20_000);
});

describe("redis-server with appendonly", () => {
  it("(e) keeps a key across kill -9 and restart", async () => {
    const redis = await startRedisServer({ appendonly: true });
    try {
      const before = new Redis(redis.url, { maxRetriesPerRequest: 0, lazyConnect: true });
      await before.connect();
      await before.set("smoke:key", "still here");
      before.disconnect();
      await redis.kill("SIGKILL");
      await redis.start();
      const after = new Redis(redis.url, { maxRetriesPerRequest: 0, lazyConnect: true });
      await after.connect();
      expect(await after.get("smoke:key")).toBe("still here");
      after.disconnect();
    } finally {
      await redis.close();
    }
  }, 20_000);
});

describe("fake model over plain HTTP", () => {
  let model: FakeModel;
  beforeAll(async () => {
    model = await startFakeModel();
  });
  afterAll(() => model.close());

  const chat = (text: string, stream = false, signal?: AbortSignal) =>
    fetch(`${model.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "echo", stream, messages: [{ role: "user", content: text }] }),
      signal,
    });

  it("lists models and answers non-streaming requests with usage", async () => {
    const models = (await (await fetch(`${model.url}/models`)).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toEqual(["echo", "priced"]);
    const body = (await (await chat("plain")).json()) as {
      choices: Array<{ message: { content: string } }>;
      usage: { total_tokens: number };
    };
    expect(body.choices[0]?.message.content).toBe("echo: plain");
    expect(body.usage.total_tokens).toBeGreaterThan(0);
  });

  it("streams slowly in several chunks ending with usage and [DONE]", async () => {
    const started = Date.now();
    const sse = await (await chat("[[slow:50]] [[reply:abcdefghij]]", true)).text();
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    const events = sse.split("\n\n").filter(Boolean);
    expect(events.at(-1)).toBe("data: [DONE]");
    const chunks = events.slice(0, -1).map(
      (e) =>
        JSON.parse(e.slice("data: ".length)) as {
          choices: Array<{ delta: { content?: string } }>;
          usage?: unknown;
        },
    );
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("abcdefghij");
    expect(chunks.at(-1)?.usage).toBeDefined();
  });

  it("applies status, retry-after and delay directives, and scripted steps", async () => {
    const limited = await chat("[[status:429:retry-after=2]]");
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("2");
    expect(await limited.json()).toMatchObject({ error: { message: "fake error 429" } });

    const started = Date.now();
    await (await chat("[[delay:200]]")).text();
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);

    model.script({ status: 503 }, { text: "ok now" });
    expect((await chat("x")).status).toBe(503);
    const body = (await (await chat("x")).json()) as { choices: Array<{ message: { content: string } }> };
    expect(body.choices[0]?.message.content).toBe("ok now");
    expect(model.calls("x")).toBe(2);
  });

  it("hangs until aborted", async () => {
    const controller = new AbortController();
    const pending = chat("[[hang]]", true, controller.signal);
    const outcome = await Promise.race([
      pending.then(() => "answered"),
      new Promise((r) => setTimeout(() => r("hanging"), 300)),
    ]);
    expect(outcome).toBe("hanging");
    controller.abort();
    await expect(pending).rejects.toThrow();
  });

  it("close() ends hanging responses and is idempotent", async () => {
    const other = await startFakeModel();
    const pending = fetch(`${other.url}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "echo", stream: true, messages: [{ role: "user", content: "[[hang]]" }] }),
    });
    await new Promise((r) => setTimeout(r, 100));
    await Promise.all([other.close(), other.close()]);
    await expect(pending).rejects.toThrow();
  });
});

describe("fake model provider quota (sliding window, over plain HTTP)", () => {
  let model: FakeModel;
  beforeAll(async () => {
    model = await startFakeModel();
  });
  afterAll(() => model.close());

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const chat = (text: string) =>
    fetch(`${model.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "echo", messages: [{ role: "user", content: text }] }),
    });
  const title = () =>
    fetch(`${model.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "echo",
        messages: [
          { role: "system", content: "You are a title generator. You output ONLY a thread title." },
          { role: "user", content: "Generate a title for this conversation:\n" },
          { role: "user", content: "some prompt" },
        ],
      }),
    });
  const textOf = async (res: Response) =>
    ((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content;

  it("answers 429 + retry-after beyond the quota, spares title calls, keeps steps, slides", async () => {
    model.reset();
    model.quota({ calls: 2, perMs: 1000 });
    const t0 = Date.now();
    expect((await chat("q one")).status).toBe(200);
    await sleep(500);
    expect((await chat("q two [[status:500]]")).status).toBe(500); // admitted calls count whatever their answer

    model.script({ text: "kept for later" });
    const limited = await chat("q three");
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("1"); // whole seconds, rounded up, at least 1
    expect(await limited.json()).toEqual({
      error: { message: "fake quota exceeded", type: "rate_limit_error", code: "429" },
    });

    // title generation bypasses the quota and does not use it up
    const titled = await title();
    expect(titled.status).toBe(200);
    expect(await textOf(titled)).toBe("Fake title");

    expect(model.calls()).toBe(2); // rejected calls are not in requests/calls()
    expect(model.requests.map((r) => r.messages[0]?.content)).toEqual(["q one", "q two [[status:500]]"]);
    expect(model.rejected()).toBe(1);
    expect(model.rejected("q three")).toBe(1);
    expect(model.rejectedRequests).toHaveLength(1);

    // sliding window: once "q one" (t0) is 1 s old, exactly one slot is free ("q two" still counts)
    await sleep(Math.max(0, t0 + 1050 - Date.now()));
    const retried = await chat("q three");
    expect(retried.status).toBe(200);
    expect(await textOf(retried)).toBe("kept for later"); // the 429 did not consume the step
    const again = await chat("q four");
    expect(again.status).toBe(429);
    expect(model.calls("q three")).toBe(1);
    expect(model.rejected()).toBe(2);
  });

  it("computes retry-after from the window, and quota(null) / reset() turn it off", async () => {
    model.reset();
    model.quota({ calls: 0, perMs: 2500 }); // nothing admitted: come back after a whole window
    const limited = await chat("q zero");
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("3");
    model.quota(null);
    expect((await chat("q free")).status).toBe(200);

    model.quota({ calls: 1, perMs: 60_000 });
    expect((await chat("q a")).status).toBe(200);
    const long = await chat("q b");
    expect(long.status).toBe(429);
    expect(Number(long.headers.get("retry-after"))).toBeGreaterThanOrEqual(59);
    expect(Number(long.headers.get("retry-after"))).toBeLessThanOrEqual(60);

    model.reset(); // clears requests, rejected count and the quota
    expect(model.rejected()).toBe(0);
    expect(model.calls()).toBe(0);
    expect((await chat("q b")).status).toBe(200);
    expect(() => model.quota({ calls: -1, perMs: 1000 })).toThrow();
    expect(() => model.quota({ calls: 1, perMs: 0 })).toThrow();
  });

  it("can start with a quota in force", async () => {
    const other = await startFakeModel({ quota: { calls: 1, perMs: 5000 } });
    try {
      const post = () =>
        fetch(`${other.url}/chat/completions`, {
          method: "POST",
          body: JSON.stringify({ model: "echo", stream: true, messages: [{ role: "user", content: "s" }] }),
        });
      const first = await post();
      expect(first.status).toBe(200);
      await first.text();
      const second = await post();
      expect(second.status).toBe(429);
      expect(second.headers.get("retry-after")).toBe("5");
      expect([other.calls(), other.rejected()]).toEqual([1, 1]);
    } finally {
      await other.close();
    }
  });
});

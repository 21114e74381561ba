import { truncateSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import type { Progress, ResultRecord } from "../../src/shared/result";
import { verifySignature } from "../../src/shared/webhook";
import { runCli } from "../support/cli";
import { lastUserText, messageText } from "../support/fake-model";
import { captureLogs } from "../support/logs";
import { useStack, type Stack } from "../support/stack";

const SECRET = "test-webhook-secret-4f9c";
const structured = (args: unknown) => ({ toolCall: { name: "StructuredOutput", args } });
const PERSON = {
  type: "object",
  properties: { name: { type: "string" }, age: { type: "number" } },
  required: ["name", "age"],
};

/** Every text the model saw in a request, user parts included. */
const requestText = (req: Stack["fake"]["requests"][number]) => req.messages.map((m) => messageText(m)).join("\n");

describe("for apps: structured results, files, listeners, webhooks", () => {
  const logs = captureLogs("debug");

  const stack = useStack({
    configEnv: { DISPATCH_WEBHOOK_SECRET: SECRET, DISPATCH_WEBHOOK_BACKOFF: "200ms", DISPATCH_WEBHOOK_TIMEOUT: "2s" },
    worker: { concurrency: 4, log: logs.log },
  });

  it("returns a structured answer that matches, typed by the zod schema it was asked with", async () => {
    const Person = z.object({ name: z.string(), age: z.number(), tags: z.array(z.string()).optional() });
    const record = await stack.dispatcher.run(
      { prompt: 'who? [[tool:StructuredOutput:{"name":"Ada","age":36}]]', model: "fake/echo", schema: Person },
      { timeoutMs: 60_000 },
    );
    expect(record.state).toBe("completed");
    if (record.state !== "completed") return;
    const name: string = record.structured.name; // typed by the schema
    expect(name).toBe("Ada");
    expect(record.structured).toEqual({ name: "Ada", age: 36 });
    // opencode offered the StructuredOutput tool with the schema zod produced.
    const tool = (
      stack.fake.requests.at(-1)!.tools as { function: { name: string; parameters: { required: string[] } } }[]
    ).find((t) => t.function.name === "StructuredOutput");
    expect(tool?.function.parameters.required).toEqual(["name", "age"]);
    expect((await stack.dispatcher.result(record.jobId)).structured).toEqual({ name: "Ada", age: 36 });
  });

  it("repairs an answer that misses a required field by telling the model in the same session", async () => {
    stack.fake.reset();
    stack.fake.script(structured({ name: "Ada" }), structured({ name: "Ada", age: 36 }));
    const record = await stack.dispatcher.run(
      { prompt: "who, with repair?", model: "fake/echo", schema: PERSON },
      { timeoutMs: 60_000 },
    );
    expect(record.state).toBe("completed");
    expect(record.attempts).toBe(1);
    expect(record.structured).toEqual({ name: "Ada", age: 36 });
    expect(stack.fake.requests).toHaveLength(2);
    expect(lastUserText(stack.fake.requests[1]!)).toContain("age: is required");
    // the repair went to the same session: the first turn is in the second request
    expect(requestText(stack.fake.requests[1]!)).toContain("who, with repair?");
  });

  it("fails without a retry, naming the field, when the repairs do not help", async () => {
    stack.fake.reset();
    stack.fake.script(structured({ name: "Ada" }), structured({ name: "Ada", age: "old" }));
    const record = await stack.dispatcher.run(
      { prompt: "who, hopeless?", model: "fake/echo", schema: PERSON, schemaRetries: 1, attempts: 3 },
      { timeoutMs: 60_000 },
    );
    expect(record.state).toBe("failed");
    expect(record.attempts).toBe(1);
    expect(record.error).toMatchObject({ name: "SchemaMismatch", retryable: false });
    expect(record.error!.message).toContain("age: must be number");
    expect(record.structured).toEqual({ name: "Ada", age: "old" }); // the last answer, for inspection
    expect(stack.fake.requests).toHaveLength(2);
  });

  it("attaches files: their content reaches the model; a missing or too large file is an input error", async () => {
    const file = join(stack.opencode.root, "brief.txt");
    writeFileSync(file, "the secret word is aubergine\n");
    stack.fake.reset();
    const record = await stack.dispatcher.run(
      { prompt: "read the attachment", model: "fake/echo", files: [file] },
      { timeoutMs: 60_000 },
    );
    expect(record.state).toBe("completed");
    expect(requestText(stack.fake.requests[0]!)).toContain("the secret word is aubergine");

    const missing = join(stack.opencode.root, "nope.txt");
    await expect(stack.dispatcher.enqueue({ prompt: "x", files: [missing] })).rejects.toThrow(
      `files.0: "${missing}": no such file`,
    );
    const big = join(stack.opencode.root, "big.txt");
    writeFileSync(big, "");
    truncateSync(big, 5 * 1024 * 1024 + 1);
    await expect(stack.dispatcher.enqueue({ prompt: "x", files: [file, big] })).rejects.toThrow(
      /files\.1: ".*big\.txt": 5242881 bytes, more than/,
    );
  });

  it("tells listeners of a job, a batch and the whole queue, over one shared subscription", async () => {
    const queueWide: string[] = [];
    const failed: string[] = [];
    const progress: [string, Progress][] = [];
    const sub = await stack.dispatcher.subscribe({
      completed: (r) => queueWide.push(r.jobId),
      failed: (r) => failed.push(r.jobId),
      progress: (jobId, p) => progress.push([jobId, p]),
    });
    const batchId = `apps-batch-${Date.now()}`;
    const inBatch: ResultRecord[] = [];
    const offBatch = await stack.dispatcher.on("completed", (r) => inBatch.push(r), { batchId });

    const job = await stack.dispatcher.enqueue({
      prompt: 'work [[tool:bash:{"command":"echo hi","description":"say hi"}]]',
      model: "fake/echo",
    });
    const mine: ResultRecord[] = [];
    await stack.dispatcher.on("completed", (r) => mine.push(r), { jobId: job.jobId });
    const bad = await stack.dispatcher.enqueue({ prompt: "no [[status:401]]", model: "fake/echo" });
    await stack.dispatcher.wait(job.jobId, { timeoutMs: 60_000 });
    await stack.dispatcher.wait(bad.jobId, { timeoutMs: 60_000 });

    // one subscriber on the events channel however many listeners and waits
    const redis = new Redis(stack.redisUrl);
    const [, subscribers] = (await redis.pubsub("NUMSUB", `dispatch:{${stack.queue}}:events`)) as [string, number];
    redis.disconnect();
    expect(subscribers).toBe(1);

    const batch = await stack.dispatcher.submitBatch([{ prompt: "batch one" }, { prompt: "batch two" }], {
      id: batchId,
      defaults: { model: "fake/echo" },
    });
    await batch.wait({ timeoutMs: 60_000 });
    await expect.poll(() => inBatch.length, { timeout: 5_000 }).toBe(2);

    expect(mine.map((r) => [r.jobId, r.state])).toEqual([[job.jobId, "completed"]]);
    expect(queueWide).toContain(job.jobId);
    expect(failed).toEqual([bad.jobId]);
    expect(inBatch.every((r) => r.prompt.startsWith("batch ") && r.state === "completed")).toBe(true);
    expect(inBatch.map((r) => r.jobId)).not.toContain(job.jobId);
    expect(progress.some(([id, p]) => id === job.jobId && p.toolCalls === 1 && p.lastTool === "bash")).toBe(true);
    sub.close();
    offBatch();
  });

  it("a webhook receiver that is down at first still gets every notification, signed, with one delivery ID per notification", async () => {
    // A port that refuses connections for now.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const token = "tok-7d1e-url-secret";
    const webhook = `http://127.0.0.1:${port}/hooks/dispatch?token=${token}`;

    const jobs = await Promise.all([
      stack.dispatcher.enqueue({ prompt: "notify one", model: "fake/echo", webhook }),
      stack.dispatcher.enqueue({ prompt: "notify two", model: "fake/echo", webhook }),
      stack.dispatcher.enqueue({ prompt: "notify three [[status:401]]", model: "fake/echo", webhook }),
    ]);
    // The jobs end while nobody listens: the notifications wait in their own queue, not in a slot.
    const records = await Promise.all(jobs.map((j) => stack.dispatcher.wait(j.jobId, { timeoutMs: 60_000 })));
    expect(records.map((r) => r.state)).toEqual(["completed", "completed", "failed"]);
    await new Promise((r) => setTimeout(r, 1_000));

    /** Every delivery attempt the receiver saw, answered or not, by job. */
    const attempts = new Map<string, { delivery: string; body: Buffer; signature: string }[]>();
    const received = new Map<string, { record: ResultRecord; signed: boolean; headers: http.IncomingHttpHeaders }>();
    const receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const record = JSON.parse(body.toString("utf8")) as ResultRecord;
        const seen = attempts.get(record.jobId) ?? [];
        seen.push({
          delivery: String(req.headers["x-dispatch-delivery"]),
          body,
          signature: String(req.headers["x-dispatch-signature"]),
        });
        attempts.set(record.jobId, seen);
        // Each notification's first try reaches a receiver that is not ready yet.
        if (seen.length === 1) {
          res.writeHead(503).end("busy");
          return;
        }
        received.set(record.jobId, {
          record,
          signed: verifySignature(SECRET, body, req.headers["x-dispatch-signature"] as string),
          headers: req.headers,
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(port, "127.0.0.1", resolve));
    try {
      await expect.poll(() => received.size, { timeout: 30_000, interval: 200 }).toBe(3);
    } finally {
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
    for (const record of records) {
      const got = received.get(record.jobId)!;
      expect(got.signed).toBe(true);
      expect(got.record).toMatchObject({ jobId: record.jobId, state: record.state, text: record.text, webhook });
      expect(got.headers["x-dispatch-event"]).toBe(record.state);
      expect(Number(got.headers["x-dispatch-timestamp"])).toBeGreaterThan(Date.now() / 1000 - 120);
      // The retry after the 503 carried the same delivery ID as the first try.
      const tries = attempts.get(record.jobId)!;
      expect(tries.length).toBeGreaterThanOrEqual(2);
      expect(tries.map((t) => t.delivery)).toEqual(
        tries.map(() => `wh-${record.jobId}-${record.state}-a${record.attempts}-r0`),
      );
    }
    // The signature holds only for that body under that key.
    const [first, second] = records.map((r) => attempts.get(r.jobId)!.at(-1)!);
    expect(verifySignature(SECRET, first!.body, first!.signature)).toBe(true);
    expect(verifySignature("another secret", first!.body, first!.signature)).toBe(false);
    const tampered = Buffer.from(first!.body.toString("utf8").replace("notify one", "notify 0ne"));
    expect(tampered.length).toBe(first!.body.length);
    expect(verifySignature(SECRET, tampered, first!.signature)).toBe(false);
    expect(verifySignature(SECRET, first!.body, second!.signature)).toBe(false);

    // The worker logged the webhook's origin, never its path, query (the token) or the secret.
    const lines = logs.lines();
    for (const line of lines) {
      expect(line).not.toContain(token);
      expect(line).not.toContain("/hooks/dispatch");
      expect(line).not.toContain(SECRET);
    }
    expect(
      lines.some((line) => line.includes("webhook delivered") && line.includes(`"webhook":"http://127.0.0.1:${port}"`)),
    ).toBe(true);
    expect(lines.some((line) => line.includes("webhook delivery failed; will retry"))).toBe(true);
  });

  it("CLI: --schema and --file attach to the task; a missing or bad file is exit 2 with nothing enqueued", async () => {
    const dir = stack.opencode.root;
    const schemaFile = join(dir, "person.schema.json");
    writeFileSync(schemaFile, JSON.stringify(PERSON));
    const notes = join(dir, "cli-notes.txt");
    writeFileSync(notes, "cli attachment: quince\n");
    stack.fake.reset();
    const ok = await runCli(
      [
        "enqueue",
        'cli structured [[tool:StructuredOutput:{"name":"Cy","age":3}]]',
        "--model",
        "fake/echo",
        "--schema",
        schemaFile,
        "--file",
        notes,
        "--wait",
        "--json",
      ],
      { env: stack.childEnv },
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).structured).toEqual({ name: "Cy", age: 3 });
    expect(requestText(stack.fake.requests[0]!)).toContain("cli attachment: quince");

    const before = (await stack.dispatcher.list({ limit: 1000 })).length;
    const noSchema = await runCli(["enqueue", "x", "--schema", join(dir, "missing.json")], { env: stack.childEnv });
    expect(noSchema.code).toBe(2);
    expect(noSchema.stderr).toContain("missing.json");
    const notObject = join(dir, "list.json");
    writeFileSync(notObject, "[1,2]");
    const badSchema = await runCli(["enqueue", "x", "--schema", notObject], { env: stack.childEnv });
    expect(badSchema.code).toBe(2);
    expect(badSchema.stderr).toContain("must hold a JSON object");
    const noFile = await runCli(["enqueue", "x", "--file", notes, "--file", join(dir, "gone.txt")], {
      env: stack.childEnv,
    });
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toMatch(/files\.1: ".*gone\.txt": no such file/);
    const badHook = await runCli(["enqueue", "x", "--webhook", "ftp://example.com/x"], { env: stack.childEnv });
    expect(badHook.code).toBe(2);
    expect(badHook.stderr).toContain("webhook");
    expect((await stack.dispatcher.list({ limit: 1000 })).length).toBe(before);
  });

  it("CLI: batch lines inherit --webhook and --schema", async () => {
    const got: ResultRecord[] = [];
    const receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        if (verifySignature(SECRET, body, req.headers["x-dispatch-signature"] as string))
          got.push(JSON.parse(body.toString("utf8")) as ResultRecord);
        res.writeHead(200).end("ok");
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = receiver.address() as AddressInfo;
      const schemaFile = join(stack.opencode.root, "batch.schema.json");
      writeFileSync(schemaFile, JSON.stringify(PERSON));
      const lines = [
        { prompt: 'b1 [[tool:StructuredOutput:{"name":"B","age":1}]]' },
        { prompt: 'b2 [[tool:StructuredOutput:{"name":"C","age":2}]]' },
      ].map((task) => JSON.stringify(task));
      const file = join(stack.opencode.root, "hooks.jsonl");
      writeFileSync(file, lines.join("\n") + "\n");
      const run = await runCli(
        [
          "batch",
          file,
          "--model",
          "fake/echo",
          "--schema",
          schemaFile,
          "--webhook",
          `http://127.0.0.1:${port}/b`,
          "--wait",
        ],
        { env: stack.childEnv },
      );
      expect(run.code, run.stderr).toBe(0);
      await expect.poll(() => got.length, { timeout: 15_000 }).toBe(2);
      expect(got.map((r) => r.structured).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))).toEqual([
        { name: "B", age: 1 },
        { name: "C", age: 2 },
      ]);
    } finally {
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  });
});

/**
 * The HTTP API on the real stack (the real CLI's `api` command, a worker on a real opencode
 * server, the fake model), driven by real clients: curl, and a Python script using only the
 * standard library, as an app in another language would.
 */
import { execFile } from "node:child_process";
import { writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, startCli, type CliProcess } from "../support/cli";
import { freePort } from "../support/redis";
import { useStack } from "../support/stack";

const run = promisify(execFile);
const ENQUEUE = "enqueue-token-0123456789";
const READER = "read-token-0123456789ab";
const ADMIN = "admin-token-0123456789a";

async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const { stdout } = await run("curl", ["-sS", "-w", "\n%{http_code}", ...args], { maxBuffer: 16 * 1024 * 1024 });
  const at = stdout.lastIndexOf("\n");
  return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
}

/** Reads an SSE stream with curl until it ends; returns the events. */
async function sse(url: string, headers: string[] = []): Promise<{ id: string; event: string; data: unknown }[]> {
  const { stdout } = await run("curl", ["-sSN", "--max-time", "90", ...headers.flatMap((h) => ["-H", h]), url], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout
    .split("\n\n")
    .map((block) => block.split("\n").filter((l) => !l.startsWith(":")))
    .filter((lines) => lines.some((l) => l.startsWith("event: ")))
    .map((lines) => ({
      id: lines.find((l) => l.startsWith("id: "))!.slice(4),
      event: lines.find((l) => l.startsWith("event: "))!.slice(7),
      data: JSON.parse(lines.find((l) => l.startsWith("data: "))!.slice(6)) as unknown,
    }));
}

const PYTHON_CLIENT = String.raw`
import json, sys, urllib.request, urllib.error

base, token = sys.argv[1], sys.argv[2]

def call(method, path, body=None, headers={}):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())

status, receipt = call("POST", "/v1/jobs", {"prompt": "hello from python", "model": "fake/echo"}, {"Idempotency-Key": "py-job-1"})
assert status == 201, (status, receipt)
status, again = call("POST", "/v1/jobs", {"prompt": "hello from python", "model": "fake/echo"}, {"Idempotency-Key": "py-job-1"})
assert status == 201 and again["duplicate"] is True, (status, again)
status, record = call("GET", "/v1/jobs/py-job-1/result?wait=60s")
assert status == 200, (status, record)
status, bad = call("POST", "/v1/jobs", {"prompt": "x", "model": "no-slash"})

# Stream a job's answer as server-sent events, then cancel a job that waits.
call("POST", "/v1/jobs", {"prompt": "[[slow:200]] python streams this", "model": "fake/echo"}, {"Idempotency-Key": "py-stream-1"})
req = urllib.request.Request(base + "/v1/jobs/py-stream-1/events", headers={"Authorization": "Bearer " + token})
pieces, event = [], None
with urllib.request.urlopen(req, timeout=120) as resp:
    for raw in resp:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "text":
            pieces.append(json.loads(line[6:])["text"])
        elif line.startswith("data: ") and event == "final":
            final = json.loads(line[6:])
            break
call("POST", "/v1/jobs", {"prompt": "waits an hour", "delay": 3600000}, {"Idempotency-Key": "py-cancel-1"})
cancel_status, cancelled = call("POST", "/v1/jobs/py-cancel-1/cancel")
print(json.dumps({"receipt": receipt, "text": record["text"], "state": record["state"], "badStatus": status, "badField": bad["error"].get("field"),
    "pieces": len(pieces), "streamed": "".join(pieces) == final["record"]["text"], "cancel": [cancel_status, cancelled["outcome"]]}))
`;

describe("the HTTP API", () => {
  const stack = useStack({ worker: { concurrency: 2 } });
  let api: CliProcess;
  let base: string;
  let dir: string;

  beforeAll(async () => {
    const port = await freePort();
    api = startCli(["api", "--port", String(port)], {
      env: { ...stack.childEnv, DISPATCH_API_TOKENS: `${ENQUEUE}:enqueue,${READER}:read,${ADMIN}:admin` },
    });
    await api.waitFor(/API: http/, 60_000);
    base = `http://127.0.0.1:${port}`;
    dir = await mkdtemp(join(tmpdir(), "ocd-api-"));
  }, 120_000);
  afterAll(async () => {
    await api?.stop("SIGTERM");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("refuses requests without a token, with an unknown one, or without the scope", async () => {
    const none = await curl([`${base}/v1/jobs/x`]);
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body).error).toMatchObject({ name: "Unauthorized" });
    expect((await curl(["-H", "Authorization: Bearer not-a-token-at-all", `${base}/v1/jobs/x`])).status).toBe(401);
    const noScope = await curl([
      "-X",
      "POST",
      "-H",
      `Authorization: Bearer ${READER}`,
      "-d",
      '{"prompt":"x"}',
      `${base}/v1/jobs`,
    ]);
    expect(noScope.status).toBe(403);
    expect(JSON.parse(noScope.body).error.message).toMatch(/lacks the "enqueue" scope/);
    expect(
      (await curl(["-X", "POST", "-H", `Authorization: Bearer ${ENQUEUE}`, `${base}/v1/jobs/x/cancel`])).status,
    ).toBe(403);
    // The OpenAPI document needs no token.
    expect((await curl([`${base}/v1/openapi.json`])).status).toBe(200);
  });

  it("curl enqueues with an Idempotency-Key, long-polls the result, and gets 400 naming the field for bad input", async () => {
    const auth = ["-H", `Authorization: Bearer ${ADMIN}`];
    const posted = await curl([
      "-X",
      "POST",
      ...auth,
      "-H",
      "Idempotency-Key: curl-job-1",
      "-d",
      '{"prompt":"hello from curl","model":"fake/echo"}',
      `${base}/v1/jobs`,
    ]);
    expect(posted.status, posted.body).toBe(201);
    expect(JSON.parse(posted.body)).toEqual({ jobId: "curl-job-1", duplicate: false });
    const result = await curl([...auth, `${base}/v1/jobs/curl-job-1/result?wait=60s`]);
    expect(result.status, result.body).toBe(200);
    expect(JSON.parse(result.body)).toMatchObject({
      jobId: "curl-job-1",
      state: "completed",
      text: "echo: hello from curl",
    });
    const status = JSON.parse((await curl([...auth, `${base}/v1/jobs/curl-job-1`])).body);
    expect(status).toMatchObject({ jobId: "curl-job-1", state: "completed", attempts: 1 });

    const bad = await curl([
      "-X",
      "POST",
      ...auth,
      "-d",
      '{"prompt":"x","model":"fake/echo","timeout":"forever"}',
      `${base}/v1/jobs`,
    ]);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error).toMatchObject({ name: "InputError", field: "timeout" });
    const notJson = await curl(["-X", "POST", ...auth, "-d", "{not json", `${base}/v1/jobs`]);
    expect(JSON.parse(notJson.body).error).toMatchObject({ field: "body" });
    expect((await curl([...auth, `${base}/v1/jobs/no-such-job`])).status).toBe(404);
    const pending = await curl([
      "-X",
      "POST",
      ...auth,
      "-d",
      '{"prompt":"later","delay":3600000}',
      "-H",
      "Idempotency-Key: later-1",
      `${base}/v1/jobs`,
    ]);
    expect(pending.status).toBe(201);
    expect((await curl([...auth, `${base}/v1/jobs/later-1/result?wait=1s`])).status).toBe(202);
    const cancelled = await curl(["-X", "POST", ...auth, `${base}/v1/jobs/later-1/cancel`]);
    expect(JSON.parse(cancelled.body)).toMatchObject({ jobId: "later-1", outcome: "removed" });
    expect((await curl(["-X", "POST", ...auth, `${base}/v1/jobs/later-1/cancel`])).status).toBe(409);
    const retried = await curl(["-X", "POST", ...auth, `${base}/v1/jobs/later-1/retry`]);
    expect(JSON.parse(retried.body)).toMatchObject({ jobId: "later-1" });
    await curl(["-X", "POST", ...auth, `${base}/v1/jobs/later-1/cancel`]);
  }, 180_000);

  it("a Python client using only the standard library enqueues, waits, streams, cancels and is told which field is wrong", async () => {
    const script = join(dir, "client.py");
    await writeFile(script, PYTHON_CLIENT);
    const { stdout } = await run("python3", [script, base, ADMIN], { timeout: 150_000 });
    expect(JSON.parse(stdout)).toEqual({
      receipt: { jobId: "py-job-1", duplicate: false },
      text: "echo: hello from python",
      state: "completed",
      badStatus: 400,
      badField: "model",
      pieces: expect.any(Number),
      streamed: true,
      cancel: [200, "removed"],
    });
    expect(JSON.parse(stdout).pieces).toBeGreaterThan(1);
  }, 180_000);

  it("server-sent events deliver the answer as it is written and resume with Last-Event-ID without loss or repeats", async () => {
    const auth = `Authorization: Bearer ${READER}`;
    const posted = await curl([
      "-X",
      "POST",
      "-H",
      `Authorization: Bearer ${ENQUEUE}`,
      "-d",
      '{"prompt":"[[slow:300]] an answer in pieces","model":"fake/echo"}',
      `${base}/v1/jobs`,
    ]);
    const { jobId } = JSON.parse(posted.body) as { jobId: string };
    const events = await sse(`${base}/v1/jobs/${jobId}/events`, [auth]);
    const texts = events.filter((e) => e.event === "text").map((e) => (e.data as { text: string }).text);
    expect(texts.length).toBeGreaterThan(1);
    const final = events.at(-1)!;
    expect(final.event).toBe("final");
    const record = (final.data as { record: { text: string; state: string } }).record;
    expect(record.state).toBe("completed");
    expect(texts.join("")).toBe(record.text);

    const cut = events.findIndex((e) => e.event === "text");
    const resumed = await sse(`${base}/v1/jobs/${jobId}/events`, [auth, `Last-Event-ID: ${events[cut]!.id}`]);
    expect(resumed.map((e) => e.id)).toEqual(events.slice(cut + 1).map((e) => e.id));
  }, 180_000);

  it("batches: a JSON Lines body in, the receipt, status, results as JSON Lines, cancel and retry", async () => {
    const auth = ["-H", `Authorization: Bearer ${ADMIN}`];
    const file = join(dir, "batch.jsonl");
    await writeFile(
      file,
      [
        '{"prompt":"api batch one","model":"fake/echo"}',
        '{"prompt":"api batch two","model":"fake/echo"}',
        '{"prompt":"api batch three","delay":3600000}',
      ].join("\n"),
    );
    const posted = await curl([
      "-X",
      "POST",
      ...auth,
      "-H",
      "content-type: application/x-ndjson",
      "--data-binary",
      `@${file}`,
      `${base}/v1/batches?id=api-batch`,
    ]);
    expect(posted.status, posted.body).toBe(201);
    expect(JSON.parse(posted.body)).toMatchObject({ batchId: "api-batch", total: 3, enqueued: 3 });
    const again = await curl(["-X", "POST", ...auth, "--data-binary", `@${file}`, `${base}/v1/batches?id=api-batch`]);
    expect(JSON.parse(again.body)).toMatchObject({ enqueued: 0, duplicates: 3 });

    const invalid = await curl([
      "-X",
      "POST",
      ...auth,
      "--data-binary",
      '{"prompt":"ok"}\n{"model":"x"}',
      `${base}/v1/batches`,
    ]);
    expect(invalid.status).toBe(400);
    expect(JSON.parse(invalid.body).error).toMatchObject({ field: "line 2" });

    const cancelled = await curl(["-X", "POST", ...auth, `${base}/v1/batches/api-batch/cancel`]);
    expect(cancelled.status).toBe(200);
    const status = JSON.parse((await curl([...auth, `${base}/v1/batches/api-batch`])).body);
    expect(status).toMatchObject({ batchId: "api-batch", total: 3 });
    expect(status.counts.queued + status.counts.running).toBe(0);
    const results = (await curl([...auth, `${base}/v1/batches/api-batch/results`])).body
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { jobId: string; state: string });
    expect(results).toHaveLength(3);
    expect(results.find((r) => r.jobId === "api-batch-3")).toMatchObject({ state: "failed" });
    const retried = JSON.parse((await curl(["-X", "POST", ...auth, `${base}/v1/batches/api-batch/retry`])).body);
    expect(retried.retried).toBeGreaterThanOrEqual(1);
    await curl(["-X", "POST", ...auth, `${base}/v1/batches/api-batch/cancel`]);
    expect((await curl([...auth, `${base}/v1/batches/no-such-batch`])).status).toBe(404);
  }, 180_000);

  it("flows over HTTP: a batch with a parent (then, thenModel, thenOn) and a fork", async () => {
    const auth = ["-H", `Authorization: Bearer ${ADMIN}`];
    const body = ['{"prompt":"flow one","model":"fake/echo"}', '{"prompt":"flow two","model":"fake/echo"}'].join("\n");
    const posted = await curl([
      "-X",
      "POST",
      ...auth,
      "--data-binary",
      body,
      `${base}/v1/batches?id=api-flow&then=${encodeURIComponent("Sum up the flow")}&thenModel=fake/echo&thenOn=completed`,
    ]);
    expect(posted.status, posted.body).toBe(201);
    const receipt = JSON.parse(posted.body) as { thenJobId: string };
    expect(receipt.thenJobId).toBe("api-flow-then");
    const parent = await stack.dispatcher.wait(receipt.thenJobId, { timeoutMs: 120_000 });
    expect(parent).toMatchObject({ state: "completed", model: "fake/echo", children: { total: 2, completed: 2 } });
    expect(parent.text).toContain('"answer":"echo: flow two"');
    const bad = await curl([
      "-X",
      "POST",
      ...auth,
      "--data-binary",
      body,
      `${base}/v1/batches?thenOn=sometimes&then=x`,
    ]);
    expect(bad.status).toBe(400);

    const forked = await curl([
      "-X",
      "POST",
      ...auth,
      "-H",
      "content-type: application/json",
      "--data-binary",
      JSON.stringify({ prompt: "fork over http [[transcript]]", fork: "api-flow-1" }),
      `${base}/v1/jobs`,
    ]);
    expect(forked.status, forked.body).toBe(201);
    const fork = await stack.dispatcher.wait((JSON.parse(forked.body) as { jobId: string }).jobId, {
      timeoutMs: 120_000,
    });
    expect(fork.forkedFrom).toBe("api-flow-1");
    expect(JSON.parse(fork.text!)).toEqual(["flow one", "fork over http [[transcript]]"]);
  }, 180_000);

  it("pause and resume the queue over HTTP", async () => {
    const auth = ["-H", `Authorization: Bearer ${ADMIN}`];
    expect(JSON.parse((await curl(["-X", "POST", ...auth, `${base}/v1/queue/pause`])).body)).toMatchObject({
      paused: true,
    });
    expect(await stack.dispatcher.isPaused()).toBe(true);
    expect(JSON.parse((await curl([...auth, `${base}/v1/queue`])).body)).toMatchObject({ paused: true });
    expect(JSON.parse((await curl(["-X", "POST", ...auth, `${base}/v1/queue/resume`])).body)).toMatchObject({
      paused: false,
    });
    expect(await stack.dispatcher.isPaused()).toBe(false);
  });

  it("schedules over HTTP: add, list, fire now, remove; bad input names the field", async () => {
    const auth = ["-H", `Authorization: Bearer ${ADMIN}`];
    const added = await curl([
      "-X",
      "POST",
      ...auth,
      "-d",
      '{"name":"api-nightly","cron":"0 2 * * *","tz":"Europe/Paris","task":{"prompt":"nightly over http","model":"fake/echo"}}',
      `${base}/v1/schedules`,
    ]);
    expect(added.status, added.body).toBe(201);
    expect(JSON.parse(added.body)).toMatchObject({
      name: "api-nightly",
      cron: "0 2 * * *",
      tz: "Europe/Paris",
      replaced: false,
    });
    const list = JSON.parse((await curl([...auth, `${base}/v1/schedules`])).body) as { schedules: { name: string }[] };
    expect(list.schedules.map((x) => x.name)).toContain("api-nightly");
    const fired = await curl(["-X", "POST", ...auth, `${base}/v1/schedules/api-nightly/run`]);
    expect(fired.status, fired.body).toBe(201);
    const { jobId } = JSON.parse(fired.body) as { jobId: string };
    const record = JSON.parse((await curl([...auth, `${base}/v1/jobs/${jobId}/result?wait=60s`])).body);
    expect(record).toMatchObject({ state: "completed", text: "echo: nightly over http", schedule: "api-nightly" });
    const bad = await curl([
      "-X",
      "POST",
      ...auth,
      "-d",
      '{"name":"api-bad","cron":"not a cron","task":{"prompt":"x"}}',
      `${base}/v1/schedules`,
    ]);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.field).toBe("cron");
    expect((await curl(["-X", "DELETE", ...auth, `${base}/v1/schedules/api-nightly`])).status).toBe(200);
    expect((await curl(["-X", "DELETE", ...auth, `${base}/v1/schedules/api-nightly`])).status).toBe(404);
    expect((await curl([...auth, `${base}/v1/schedules/api-nightly`])).status).toBe(404);
  }, 120_000);

  it("serves an OpenAPI 3.1 document that validates and names every route", async () => {
    const document = JSON.parse((await curl([`${base}/v1/openapi.json`])).body) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
    };
    expect(document.openapi).toBe("3.1.0");
    const validator = new Validator();
    const result = await validator.validate(document);
    expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
    expect(result.valid).toBe(true);
    const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`),
    );
    for (const expected of [
      "POST /v1/jobs",
      "GET /v1/jobs/{id}",
      "GET /v1/jobs/{id}/result",
      "GET /v1/jobs/{id}/events",
      "POST /v1/jobs/{id}/cancel",
      "POST /v1/jobs/{id}/retry",
      "POST /v1/batches",
      "GET /v1/batches/{id}",
      "GET /v1/batches/{id}/results",
      "POST /v1/batches/{id}/cancel",
      "POST /v1/batches/{id}/retry",
      "GET /v1/schedules",
      "POST /v1/schedules",
      "DELETE /v1/schedules/{name}",
      "POST /v1/schedules/{name}/run",
    ]) {
      expect(operations).toContain(expected);
    }
    // Every documented operation answers (not 404 "no route"), here without a token: 401.
    for (const op of operations) {
      const [method, path] = op.split(" ") as [string, string];
      const res = await curl(["-X", method, `${base}${path.replace(/\{\w+\}/g, "x")}`]);
      expect(res.status, op).toBe(401);
    }
  });
});

describe("the HTTP API without tokens", () => {
  const stack = useStack();
  let api: CliProcess;
  let base: string;
  beforeAll(async () => {
    const port = await freePort();
    api = startCli(["api", "--port", String(port)], { env: { ...stack.childEnv, DISPATCH_API_TOKENS: "" } });
    await api.waitFor(/API: http/, 60_000);
    base = `http://127.0.0.1:${port}`;
  }, 120_000);
  afterAll(async () => {
    await api?.stop("SIGTERM");
  });

  it("serves local processes but no web page: a foreign Host (DNS rebinding) or any Origin is refused", async () => {
    expect((await curl([`${base}/v1/queue`])).status).toBe(200);
    const rebound = await curl(["-H", `Host: attacker.example:${new URL(base).port}`, `${base}/v1/queue`]);
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.body).error.message).toMatch(/without tokens the API answers only/);
    const fromPage = await curl([
      "-X",
      "POST",
      "-H",
      "Origin: http://attacker.example",
      "-H",
      "content-type: text/plain",
      "-d",
      '{"prompt":"x"}',
      `${base}/v1/jobs`,
    ]);
    expect(fromPage.status).toBe(403);
    expect(await stack.dispatcher.list()).toEqual([]);
    // Beyond loopback it will not start without tokens.
    const refused = await runCli(["api", "--host", "0.0.0.0", "--port", "0"], {
      env: { ...stack.childEnv, DISPATCH_API_TOKENS: "" },
      timeoutMs: 30_000,
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/beyond loopback the API needs tokens/);
  }, 60_000);
});

/**
 * Security: Redis ACL users and TLS through REDIS_URL, and secrets kept out of the logs. The
 * Redis here lets only user `dispatch` in, on the `dispatch:*` keys and channels alone.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dispatcher } from "../../src/producer/dispatcher";
import { loadConfig } from "../../src/shared/config";
import { RedisUnavailableError } from "../../src/shared/errors";
import { freePort } from "../support/redis";
import { startSecureRedis, type SecureRedis } from "../support/redis-secure";
import { startOpencodeServer, type OpencodeServer } from "../support/opencode-server";
import { runCli } from "../support/cli";
import { useStack } from "../support/stack";

const OPENCODE_PASSWORD = "oc-server-secret-7f3k";

describe("Redis ACL users and TLS, and secrets in logs", () => {
  let redis: SecureRedis;
  let aclUrl: string;
  let tlsUrl: string;

  beforeAll(async () => {
    redis = await startSecureRedis();
    aclUrl = `redis://${redis.user}:${redis.password}@127.0.0.1:${redis.port}`;
    tlsUrl = `rediss://${redis.user}:${redis.password}@127.0.0.1:${redis.tlsPort}`;
  });
  afterAll(async () => {
    await redis?.close();
  });
  const stack = useStack(() => ({ configEnv: { REDIS_URL: aclUrl } }));

  it("runs a job as an ACL user restricted to the dispatch:* keys and channels", async () => {
    const worker = await stack.startWorker({ concurrency: 1 });
    const record = await stack.dispatcher.run({ prompt: "acl hello", model: "fake/echo" }, { timeoutMs: 120_000 });
    expect(record).toMatchObject({ state: "completed", text: "echo: acl hello" });
    await worker.close({ graceMs: 0 }); // the CLI worker below must be the only one on the queue
  }, 120_000);

  it("refuses a wrong password at once, without printing it", async () => {
    const bad = `redis://${redis.user}:wrong-pass-xyz@127.0.0.1:${redis.port}`;
    const dispatcher = new Dispatcher({ config: loadConfig({ REDIS_URL: bad }) });
    const started = Date.now();
    try {
      const error = await dispatcher.status("anything").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RedisUnavailableError);
      expect((error as Error).message).toMatch(/WRONGPASS/);
      expect((error as Error).message).not.toContain("wrong-pass-xyz");
      expect(Date.now() - started).toBeLessThan(4_000);
    } finally {
      await dispatcher.close();
    }
  });

  it("runs the CLI worker and enqueue over rediss:// with an ACL user; no secret reaches the logs", async () => {
    const server: OpencodeServer = await startOpencodeServer({
      env: { ...stack.opencode.env, OPENCODE_SERVER_PASSWORD: OPENCODE_PASSWORD },
      cwd: `${stack.opencode.root}/project`,
      timeoutMs: 60_000,
    });
    const metricsPort = await freePort();
    const env = {
      ...stack.childEnv,
      REDIS_URL: tlsUrl,
      NODE_EXTRA_CA_CERTS: redis.caFile,
      OPENCODE_SERVER_PASSWORD: OPENCODE_PASSWORD,
      LOG_LEVEL: "debug",
    };
    let worker: ChildProcess | undefined;
    let stderr = "";
    try {
      worker = spawn(
        process.execPath,
        ["bin/opencode-dispatch.js", "worker", "--attach", server.url, "--metrics-port", String(metricsPort)],
        {
          env,
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      worker.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
      const deadline = Date.now() + 60_000;
      while (!stderr.includes("metrics served")) {
        if (worker.exitCode !== null || Date.now() > deadline) throw new Error(`worker did not start:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }

      const enqueue = await runCli(["enqueue", "tls hello", "--model", "fake/echo", "--wait", "--json"], {
        env,
        timeoutMs: 60_000,
      });
      expect(enqueue.code, `${enqueue.stderr}\nworker:\n${stderr.slice(-4_000)}`).toBe(0);
      const record = JSON.parse(enqueue.stdout) as { state: string; text: string; sessionId: string; jobId: string };
      expect(record).toMatchObject({ state: "completed", text: "echo: tls hello" });

      const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ ok: true, opencode: "ok", redis: "ready" });
      // The worker counts the job on BullMQ's "completed" event, just after the record is stored.
      await expect
        .poll(async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(), { timeout: 10_000 })
        .toMatch(/dispatch_jobs_completed_total\{[^}]*model="fake\/echo"[^}]*\} 1/);

      // Without the CA the TLS handshake fails: exit 3, Redis unreachable.
      const untrusted = await runCli(["status", record.jobId], {
        env: { ...env, NODE_EXTRA_CA_CERTS: "" },
        timeoutMs: 30_000,
      });
      expect(untrusted.code).toBe(3);

      worker.kill("SIGTERM");
      await new Promise<void>((resolve) =>
        worker!.exitCode !== null ? resolve() : worker!.once("exit", () => resolve()),
      );
      const outputs = [stderr, enqueue.stdout, enqueue.stderr, untrusted.stderr];
      for (const text of outputs) {
        expect(text).not.toContain(redis.password);
        expect(text).not.toContain(OPENCODE_PASSWORD);
        expect(text).not.toContain(Buffer.from(`opencode:${OPENCODE_PASSWORD}`).toString("base64"));
      }
      // Every log line is JSON; every job line carries jobId and worker, and the finished one the session.
      const lines = stderr
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const jobLines = lines.filter((l) => l.jobId === record.jobId);
      expect(jobLines.length).toBeGreaterThanOrEqual(2);
      for (const line of jobLines) expect(line.worker).toEqual(expect.any(String));
      expect(jobLines.find((l) => l.msg === "job completed")).toMatchObject({ sessionId: record.sessionId });
    } finally {
      if (worker && worker.exitCode === null) worker.kill("SIGKILL");
      await server.stop();
    }
  }, 150_000);
});

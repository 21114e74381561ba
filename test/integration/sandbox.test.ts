/**
 * `DISPATCH_SANDBOX=true` (worker --sandbox): the agent's tools run under bubblewrap. A job's
 * bash tool, using computed paths (a literal `/proc` path would meet the external-directory ask),
 * cannot read the worker's REDIS_URL password or webhook secret — not from its environment, not
 * from the worker's /proc, not from a file outside the job's directory — while it still edits files
 * in its directory; a job whose directory lies outside the sandbox fails at pickup.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useStack } from "../support/stack";

const SECRET = "hunter2-sandbox-secret";

describe("a sandboxed worker", () => {
  const stack = useStack({ configEnv: { DISPATCH_SANDBOX: "true", DISPATCH_WEBHOOK_SECRET: `whsec-${SECRET}` } });
  let jobs: string;
  const saved = { REDIS_URL: process.env.REDIS_URL, DISPATCH_WEBHOOK_SECRET: process.env.DISPATCH_WEBHOOK_SECRET };

  beforeAll(async () => {
    jobs = join(stack.opencode.root, "jobs");
    mkdirSync(join(jobs, "project"), { recursive: true });
    writeFileSync(join(stack.opencode.root, "worker-secrets.env"), `REDIS_URL=redis://:${SECRET}@db:6379\n`);
    stack.config.sandbox.dirs.push(jobs);
    // The worker's own environment holds the secrets, as a real worker's would.
    process.env.REDIS_URL = `redis://:${SECRET}@127.0.0.1:1`;
    process.env.DISPATCH_WEBHOOK_SECRET = `whsec-${SECRET}`;
    await stack.startWorker({ concurrency: 1 });
  });
  afterAll(() => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });

  it("keeps the worker's secrets from a job's bash tool, which still edits its directory", async () => {
    const directory = join(jobs, "project");
    const secretsFile = join(stack.opencode.root, "worker-secrets.env").replace(/^\/tmp/, "");
    const script = [
      "P=pr; T=/t",
      `{ env; cat /\${P}oc/${process.pid}/environ; cat \${T}mp${secretsFile}; ls /\${P}oc; } > seen.txt 2>&1`,
      "echo edited > edited.txt",
    ].join("; ");
    const command = JSON.stringify({ command: script, description: "look around" });
    const record = await stack.dispatcher.run(
      { prompt: `look [[tool:bash:${command}]]`, directory },
      { timeoutMs: 120_000 },
    );
    expect(record.state, JSON.stringify(record.error)).toBe("completed");
    expect(readFileSync(join(directory, "edited.txt"), "utf8")).toBe("edited\n");
    const seen = readFileSync(join(directory, "seen.txt"), "utf8");
    expect(seen).toContain("PATH="); // the environment was printed
    expect(seen).not.toContain(SECRET);
    expect(seen).toMatch(/environ: No such file or directory/);
    expect(seen).toMatch(/worker-secrets\.env: No such file or directory/);
  });

  it("fails a job whose directory lies outside the sandbox at pickup", async () => {
    const record = await stack.dispatcher.run(
      { prompt: "outside", directory: stack.opencode.root },
      { timeoutMs: 60_000 },
    );
    expect(record.state).toBe("failed");
    expect(record.error).toMatchObject({ name: "OutsideSandbox", retryable: false });
    expect(record.error!.message).toContain("outside the worker's sandbox");
    expect(stack.fake.calls("outside")).toBe(0);
    expect(existsSync(join(stack.opencode.root, "seen.txt"))).toBe(false);
  });
});

/**
 * A wedged opencode server — alive, its port open, answering nothing (here: SIGSTOPped while it
 * runs a job) — is found out and replaced: the stalled job's worker checks the server's health
 * (with a timeout), treats the silent server as dead, kills it, starts a fresh one, and the job's
 * retry completes there, within the stall timeout plus a margin. And a `--worktree` job's
 * directory instance is disposed on the server when the job ends.
 */
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { afterAll, describe, expect, it } from "vitest";
import { makeGitRepo } from "../support/git-repo";
import { useStack } from "../support/stack";
import { alive, until } from "../support/until";

const STALL_MS = 5_000;
/** Measured: 22 s from the stop alone, 40 s beside other test files on 2 cores. */
const MARGIN_MS = 60_000;

describe("a wedged opencode server", () => {
  const stack = useStack({ configEnv: { DISPATCH_STALL_TIMEOUT: `${STALL_MS}ms` }, worker: { concurrency: 1 } });
  let stopped: number | undefined;
  afterAll(() => {
    if (stopped !== undefined && alive(stopped)) process.kill(stopped, "SIGKILL");
  });

  it("is replaced, and its job completes on the new server", async () => {
    const wedged = stack.worker.server().pid!;
    const { jobId } = await stack.dispatcher.enqueue({
      prompt: "wedge me [[delay:1500]] [[reply:done anyway]]",
      attempts: 3,
    });
    await until("the model call of the first attempt", () => stack.fake.calls("wedge me") >= 1, 60_000);
    process.kill(wedged, "SIGSTOP");
    stopped = wedged;
    const since = Date.now();
    const record = await stack.dispatcher.wait(jobId, { timeoutMs: STALL_MS + MARGIN_MS });
    const took = Date.now() - since;
    expect(record).toMatchObject({ state: "completed", text: "done anyway" });
    expect(record.attempts).toBeGreaterThanOrEqual(2);
    expect(took).toBeLessThan(STALL_MS + MARGIN_MS);
    expect(stack.worker.server().pid).not.toBe(wedged);
    await until("the wedged server to be gone", () => !alive(wedged), 15_000);
    console.info(`wedged server replaced; job completed ${took} ms after the SIGSTOP`);
  }, 120_000);

  it("disposes the opencode instance of a finished worktree job's directory", async () => {
    const server = stack.worker.server();
    const client = createOpencodeClient({
      baseUrl: server.url,
      headers: server.authorization ? { authorization: server.authorization } : {},
    });
    const listening = new AbortController();
    const disposed: string[] = [];
    const { stream } = await client.global.event({ signal: listening.signal });
    const reading = (async () => {
      for await (const item of stream) {
        const event = item.payload;
        if (event?.type === "server.instance.disposed") disposed.push(event.properties.directory);
      }
    })().catch(() => undefined);
    try {
      const repo = join(stack.opencode.root, "dispose-repo");
      makeGitRepo(repo);
      const record = await stack.dispatcher.run(
        { prompt: "in a worktree [[reply:ok]]", directory: repo, worktree: true },
        { timeoutMs: 60_000 },
      );
      expect(record.state).toBe("completed");
      const tree = record.worktree!.path;
      await until("the worktree's instance to be disposed", () => disposed.includes(tree), 15_000);
      expect(disposed).not.toContain(repo);
    } finally {
      listening.abort();
      await reading;
    }
  });
});

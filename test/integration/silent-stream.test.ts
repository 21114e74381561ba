/**
 * An event stream that stays silent while a session is busy (opencode has had releases whose
 * `/event` sent only heartbeats) does not leave an ask waiting for ever: the session watch polls
 * the pending permissions and questions and the session status once the stream has been quiet.
 * Real opencode and the real watch; the watch's event hub is simply never started, so it hears
 * nothing from the server.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/shared/logger";
import { EventHub } from "../../src/worker/server/event-hub";
import { createClient } from "../../src/worker/server/opencode-client";
import { createSession, promptSession } from "../../src/worker/session/run-prompt";
import { SessionWatch } from "../../src/worker/session/session-watch";
import { JobPayload } from "../../src/shared/task";
import { startFakeModel, type FakeModel } from "../support/fake-model";
import { makeOpencodeEnv, type OpencodeEnv } from "../support/opencode-env";
import { startOpencodeServer, type OpencodeServer } from "../support/opencode-server";

describe("a silent event stream", () => {
  let fake: FakeModel;
  let env: OpencodeEnv;
  let server: OpencodeServer;

  beforeAll(async () => {
    fake = await startFakeModel();
    env = await makeOpencodeEnv(fake.url);
    const cwd = join(env.root, "silent");
    mkdirSync(cwd, { recursive: true });
    server = await startOpencodeServer({ env: env.env, cwd });
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await fake?.close();
    await env?.cleanup();
  });

  it("still gets a permission ask answered, by polling", async () => {
    const client = createClient({ url: server.url, authorization: undefined });
    const log = createLogger("warn");
    const hub = new EventHub(client, log); // never started: no event arrives
    const directory = join(env.root, "silent");
    const payload = JobPayload.parse({
      prompt: 'peek [[tool:read:{"filePath":"/etc/hostname"}]]',
      timeoutMs: 60_000,
      enqueuedAt: new Date().toISOString(),
      v: 1,
    });
    const control = new AbortController();
    const session = await createSession(client, payload, directory, control.signal);
    const watch = new SessionWatch({
      client,
      hub,
      sessionId: session.id,
      directory,
      log,
      approval: "reject",
      stallMs: 60_000,
      providerRetries: 2,
      abort: (reason) => control.abort(reason),
    });
    const started = Date.now();
    try {
      const timer = setTimeout(() => control.abort(new Error("the ask was never answered")), 40_000);
      await promptSession(client, session.id, payload, { directory, signal: control.signal, log }).finally(() =>
        clearTimeout(timer),
      );
    } finally {
      watch.close();
      hub.close();
    }
    expect(watch.asks).toEqual([
      expect.objectContaining({ kind: "permission", what: "external_directory", answer: "reject" }),
    ]);
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 90_000);
});

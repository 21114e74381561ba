import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gunzip, gzip } from "node:zlib";
import type { Redis } from "ioredis";
import type { Logger } from "../shared/logger.js";
import type { QueueKeys } from "../shared/keys.js";
import { OpencodeHttpError } from "./failures.js";
import type { OpencodeClient } from "./opencode-client.js";
import type { OpencodeServer } from "./opencode-server.js";

const zip = promisify(gzip);
const unzip = promisify(gunzip);

interface SessionExport {
  info: { id: string; directory: string };
  messages: { info: { id: string }; parts: unknown[] }[];
}

/**
 * Sessions are not tied to one worker's disk: after every job the worker stores the session's
 * transcript in Redis (the shape `opencode export` writes), and a worker asked to continue a
 * session it does not hold (or holds an older copy of) imports it with `opencode import`, which
 * keeps the session ID.
 */
export class SessionTransfer {
  constructor(
    private readonly redis: Redis,
    private readonly keys: QueueKeys,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  async save(client: OpencodeClient, sessionId: string, signal: AbortSignal): Promise<void> {
    const [info, messages] = await Promise.all([
      client.session.get({ sessionID: sessionId }, { signal }),
      client.session.messages({ sessionID: sessionId }, { signal }),
    ]);
    if (!info.data || !messages.data) throw new Error(`could not export session ${sessionId}`);
    const body = await zip(JSON.stringify({ info: info.data, messages: messages.data }));
    if (this.ttlMs > 0) await this.redis.set(this.keys.sessionExport(sessionId), body, "PX", this.ttlMs);
    else await this.redis.set(this.keys.sessionExport(sessionId), body);
  }

  /**
   * Records the thread (chain of jobs, see scheduling/placement.ts) a session belongs to, the
   * first time a job runs in it, so that `session: S` follow-ups queue behind that thread.
   */
  async claimThread(sessionId: string, thread: string): Promise<void> {
    const key = this.keys.sessionThread(sessionId);
    const multi = this.redis.multi().set(key, thread, "NX");
    if (this.ttlMs > 0) multi.pexpire(key, this.ttlMs); // kept as long as the session is in use
    await multi.exec();
  }

  private async load(sessionId: string): Promise<SessionExport | null> {
    const raw = await this.redis.getBuffer(this.keys.sessionExport(sessionId));
    return raw ? (JSON.parse((await unzip(raw)).toString("utf8")) as SessionExport) : null;
  }

  /**
   * Makes sure the server holds the session with every stored message; imports it when not.
   * Returns the session's directory. Throws OpencodeHttpError(404) when no copy exists anywhere.
   */
  async ensureLocal(server: OpencodeServer, client: OpencodeClient, sessionId: string, signal: AbortSignal): Promise<string | undefined> {
    const [stored, local] = await Promise.all([
      this.load(sessionId),
      client.session.messages({ sessionID: sessionId }, { signal }),
    ]);
    const localIds = new Set((local.data ?? []).map((m) => m.info.id));
    const localOk = local.response?.ok === true && local.data !== undefined;
    if (!stored) {
      if (localOk) return (await client.session.get({ sessionID: sessionId }, { signal })).data?.directory;
      throw new OpencodeHttpError("session.get", 404, `session ${sessionId} is not known to this opencode server or to the queue`);
    }
    const missing = stored.messages.filter((m) => !localIds.has(m.info.id)).length;
    if (localOk && missing === 0) return stored.info.directory;
    if (!server.runCli) {
      throw new OpencodeHttpError("session import", 404, `session ${sessionId} is missing on the attached server and only a spawned server can import it`);
    }
    this.log.info({ sessionId, missing }, "importing the session from the queue");
    const dir = await mkdtemp(join(tmpdir(), "dispatch-session-"));
    try {
      const file = join(dir, `${sessionId}.json`);
      await writeFile(file, JSON.stringify(stored));
      if (localOk) await client.session.delete({ sessionID: sessionId }, { signal }); // an import does not refresh old copies
      const cwd = existsSync(stored.info.directory) ? stored.info.directory : process.cwd();
      await server.runCli(["import", file], { cwd, signal });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return stored.info.directory;
  }
}

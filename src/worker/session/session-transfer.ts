import { existsSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gunzip, gzip } from "node:zlib";
import type { Redis } from "ioredis";
import type { Logger } from "../../shared/logger.js";
import type { QueueKeys } from "../../shared/keys.js";
import { NotRunnableError, SessionBehindError, SessionNotStoredError, StoppedError } from "../failures.js";
import type { OpencodeClient } from "../server/opencode-client.js";
import type { OpencodeServer } from "../server/opencode-server.js";
import type { SessionMessage } from "./turn-transcript.js";

const zip = promisify(gzip);
const unzip = promisify(gunzip);

/** BullMQ's lock on the job and the token of the attempt that must still hold it. */
export interface Fence {
  lockKey: string;
  token: string;
}

/** Stores a transcript, only while the fence holds. KEYS: export, lock (any key when unfenced). ARGV: body, ttl ms, token. */
const SAVE = `
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) else redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`;

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
/** A session this worker's server holds (see ensureLocal). */
export interface LocalSession {
  directory: string | undefined;
  /** The message after the given turn in the server's copy (a later turn's), if any: where a fork of that turn stops. */
  nextMessageId: string | undefined;
  /** The session's messages, when the stored copy is exactly the server's (what a turn's transcript builds on). */
  messages?: SessionMessage[];
}

export class SessionTransfer {
  constructor(
    private readonly redis: Redis,
    private readonly keys: QueueKeys,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  /**
   * Stores the session's transcript as this server holds it. With `turn`, only a transcript that
   * holds that message (the job's answer) is stored; else SessionNotStoredError. With `fence`,
   * only while the attempt owns its job; else StoppedError("lock-lost").
   */
  async save(
    client: OpencodeClient,
    sessionId: string,
    signal: AbortSignal,
    opts: {
      turn?: string;
      fence?: Fence;
      known?: { info?: unknown; messages?: unknown[] };
      server?: OpencodeServer;
    } = {},
  ): Promise<void> {
    const { turn, fence, known } = opts;
    // What the attempt already read from the server (the session from its events, the messages
    // read for the turn's usage) is not asked for again.
    let [info, messages] = await Promise.all([
      known?.info
        ? { data: known.info as SessionExport["info"] }
        : client.session.get({ sessionID: sessionId }, { signal }),
      known?.messages
        ? { data: known.messages as SessionExport["messages"] }
        : client.session.messages({ sessionID: sessionId }, { signal }),
    ]);
    if ((!info.data || !messages.data) && opts.server?.runCli) {
      // opencode 1.18 cannot answer GET …/message for a session whose prompt asked for structured
      // output (400 "Expected OutputFormatJsonSchema"); its own `opencode export` reads the storage.
      // It finds a session in the project of the directory it runs in: the session's own.
      const directory = info.data?.directory;
      const cwd = directory && existsSync(directory) ? directory : process.cwd();
      const exported = JSON.parse(await opts.server.runCli(["export", sessionId], { cwd, signal })) as SessionExport;
      info = { data: exported.info };
      messages = { data: exported.messages };
    }
    if (!info.data || !messages.data)
      throw new SessionNotStoredError(`could not read session ${sessionId} from this worker's opencode server`, true);
    if (turn && !messages.data.some((m) => m.info.id === turn)) {
      throw new SessionNotStoredError(
        `this worker's opencode server does not hold message ${turn} of session ${sessionId} (the turn was answered on another server)`,
        true,
      );
    }
    const body = await zip(JSON.stringify({ info: info.data, messages: messages.data }));
    const key = this.keys.sessionExport(sessionId);
    const written = await this.redis.eval(SAVE, 2, key, fence?.lockKey ?? key, body, this.ttlMs, fence?.token ?? "");
    if (written !== 1)
      throw new StoppedError(
        "lock-lost",
        "another worker took the job over (this worker lost its lock); its session is not stored from here",
      );
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
   * With `after` (the turn of the job before this one), never settles for a transcript without
   * that message: SessionBehindError when neither this server nor the stored copy holds it.
   */
  async ensureLocal(
    server: OpencodeServer,
    client: OpencodeClient,
    sessionId: string,
    signal: AbortSignal,
    after?: { jobId: string; messageId: string },
  ): Promise<LocalSession> {
    const [stored, local] = await Promise.all([
      this.load(sessionId),
      client.session.messages({ sessionID: sessionId }, { signal }),
    ]);
    const localIds = new Set((local.data ?? []).map((m) => m.info.id));
    const localOk = local.response?.ok === true && local.data !== undefined;
    const localHasTurn = !after || localIds.has(after.messageId);
    const storedHasTurn = !after || stored?.messages.some((m) => m.info.id === after.messageId) === true;
    if (after && !(localOk && localHasTurn) && !storedHasTurn) {
      throw new SessionBehindError(
        `the transcript of session ${sessionId} that ${localOk ? "this worker's opencode server holds" : "the queue holds"} lacks the turn of job ${after.jobId} (message ${after.messageId}): its worker could not store it, and a follow-up never runs on an older transcript`,
      );
    }
    const held = (directory: string | undefined, messages: readonly { info: { id: string } }[]): LocalSession => {
      const at = after ? messages.findIndex((m) => m.info.id === after.messageId) : -1;
      return { directory, nextMessageId: at >= 0 ? messages[at + 1]?.info.id : undefined };
    };
    if (!stored) {
      if (localOk)
        return held((await client.session.get({ sessionID: sessionId }, { signal })).data?.directory, local.data);
      throw new NotRunnableError(`session ${sessionId} is not known to this opencode server or to the queue`);
    }
    const missing = stored.messages.filter((m) => !localIds.has(m.info.id)).length;
    // The server's copy is current when it holds every stored message, or when only it holds the turn before.
    if (localOk && (missing === 0 || (localHasTurn && !storedHasTurn))) {
      const same = isDeepStrictEqual(local.data, stored.messages);
      return { ...held(stored.info.directory, local.data), ...(same ? { messages: local.data } : {}) };
    }
    if (!server.runCli) {
      throw new NotRunnableError(
        `session ${sessionId} is missing on the attached server and only a spawned server can import it`,
      );
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
    return held(stored.info.directory, stored.messages);
  }
}

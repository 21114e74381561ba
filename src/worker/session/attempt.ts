/**
 * One attempt on the worker's opencode server: which session (new, continued, forked, resumed
 * after an approval, imported when this server lacks it), the directory (a worktree), the watch
 * and the live stream while the prompt runs, and storing the session for other workers as part
 * of the attempt. One file because these steps share the attempt's trace and session state.
 */
import type { Config } from "../../shared/config.js";
import { rootOfThread, rootThread, sessionOfThread } from "../../shared/keys.js";
import type { Logger } from "../../shared/logger.js";
import { emptyTokens, type Ask, type Progress, type ResultRecord } from "../../shared/result.js";
import type { ResultStore } from "../../shared/result-store.js";
import type { JobPayload } from "../../shared/task.js";
import type { Redis } from "ioredis";
import type { EventHub } from "../server/event-hub.js";
import { LivePublisher } from "./live-publisher.js";
import { NotRunnableError, SessionNotStoredError, StoppedError, UpstreamError } from "../failures.js";
import type { OpencodeClient } from "../server/opencode-client.js";
import type { OpencodeServer } from "../server/opencode-server.js";
import { ABORT_IDLE_MS, createSession, forkSession, type PromptOutcome } from "./run-prompt.js";
import { BudgetGuard, sessionIdle } from "./budget-guard.js";
import { SessionWatch } from "./session-watch.js";
import type { Fence, SessionTransfer } from "./session-transfer.js";
import { promptChecked } from "./structured.js";
import { ApprovalNeededError, parkSession, type Grant } from "./approvals.js";
import type { TextPartInput } from "@opencode-ai/sdk/v2";
import type { ApprovalPolicy } from "../../shared/task.js";
import { finishWorktree, prepareWorktree } from "./worktree.js";
import { TurnTranscript, type SessionMessage } from "./turn-transcript.js";

/** The worker's current opencode server and what talks to it (replaced when the server is). */
export interface ServerHandle {
  server: OpencodeServer;
  client: OpencodeClient;
  hub: EventHub;
}

export interface AttemptDeps {
  current: () => ServerHandle;
  store: ResultStore;
  /** The worker's Redis connection (the job's live stream is written with it). */
  connection: Redis;
  transfer: SessionTransfer;
  config: Pick<Config, "stallMs" | "providerRetries" | "approval" | "approvalTimeoutMs">;
}

/** What an attempt learned, kept for the result record whether it succeeds or fails. */
export interface AttemptTrace {
  sessionId: string | null;
  continues: string | null;
  forkedFrom: string | null;
  directory: string | null;
  asks: Ask[];
  worktree: ResultRecord["worktree"];
  /** The last structured answer, also when it missed the schema. */
  structured?: unknown;
  /** The turn's answer, once it came (kept on the record however the attempt then ends). */
  answer?: PromptOutcome;
}

/**
 * One attempt of a job on the worker's opencode server: picks the session (new, or the one of
 * the job it continues, imported if this server lacks it), the directory (a fresh worktree when
 * asked), watches the session while the prompt runs, and stores the session for other workers.
 */
export async function runAttempt(
  deps: AttemptDeps,
  jobId: string,
  payload: JobPayload,
  opts: {
    signal: AbortSignal;
    abort: (reason: Error) => void;
    log: Logger;
    trace: AttemptTrace;
    onSession: () => Promise<void>;
    onProgress: (progress: Progress) => void;
    /** The attempt's hold on the job: a stale attempt must not overwrite the stored session. */
    fence?: Fence;
    /** A job parked for approval resumes its session with this turn, under these grants (see approvals.ts). */
    resume?: { sessionId: string; parts: TextPartInput[]; grants: Grant[] };
    /** Asks a person approved for the rest of the job (a resumed attempt has its own, in `resume`). */
    grants?: Grant[];
    /** What earlier attempts spent (the budget counts them); this attempt's own spend is added to `spend`. */
    spentBefore?: { tokens: number; cost: number };
    spend?: { tokens: number; cost: number };
  },
): Promise<PromptOutcome> {
  const { server, client, hub } = deps.current();
  const { signal, trace } = opts;
  let directory = payload.directory;
  let sessionId: string | undefined;
  let after: { jobId: string; messageId: string } | undefined;
  /** The session's exact messages before the turn, when the worker knows them (a new session's: none). */
  let prior: SessionMessage[] | undefined;

  if (opts.resume) {
    sessionId = opts.resume.sessionId; // the session parked for approval, whichever worker parked it
  } else if (payload.session) {
    sessionId = payload.session; // it may also wait `after` a job of the thread that session is in
    const previous = payload.after ? await deps.store.get(payload.after) : null;
    if (previous?.sessionId === sessionId && previous.messageId)
      after = { jobId: payload.after!, messageId: previous.messageId };
  } else if (payload.after) {
    trace.continues = payload.after;
    ({
      sessionId,
      worktree: trace.worktree,
      after,
    } = await threadSession(deps.store, payload.after, payload.thread ?? ""));
  }
  let forkAt: { source: string; before: string | undefined } | undefined;
  if (payload.fork && !opts.resume) {
    trace.forkedFrom = payload.fork;
    const source = await deps.store.get(payload.fork);
    if (source?.state !== "completed" || !source.sessionId) {
      throw new UpstreamError(
        `job ${payload.fork} ${source ? `ended ${source.state}` : "left no record"}: it has no finished session to fork`,
      );
    }
    after = source.messageId ? { jobId: payload.fork, messageId: source.messageId } : undefined;
    const local = await deps.transfer.ensureLocal(server, client, source.sessionId, signal, after);
    directory = local.directory ?? directory;
    // The copy stops at the source job's turn, whatever turns its session took since.
    forkAt = { source: source.sessionId, before: local.nextMessageId };
  } else if (sessionId) {
    const local = await deps.transfer.ensureLocal(server, client, sessionId, signal, after);
    directory = local.directory ?? directory;
    prior = local.messages;
  } else if (payload.worktree && payload.directory) {
    const tree = await prepareWorktree(payload.directory, jobId, trace.worktree?.base, signal);
    trace.worktree = { ...tree, changedFiles: trace.worktree?.changedFiles ?? [] };
    directory = tree.path;
  }
  // What the attempt learns of the session (its info, its messages after the turn) is stored without asking again.
  const known: { info?: unknown; messages?: unknown[] } = {};
  if (forkAt) {
    const forked = await forkSession(client, forkAt.source, forkAt.before, payload, directory, signal);
    known.info = forked;
    sessionId = forked.id;
  } else if (!sessionId) {
    const created = await createSession(client, payload, directory, signal);
    known.info = created;
    sessionId = created.id;
    prior = [];
  }
  trace.sessionId = sessionId;
  trace.directory = directory ?? null;
  // Before the record shows the session: a producer that reads it there finds its thread too.
  await deps.transfer.claimThread(sessionId, payload.thread ?? rootThread(jobId));
  await opts.onSession();

  const log = opts.log.child({ sessionId });
  const live = new LivePublisher(deps.connection, deps.store.keys.live(jobId), hub, sessionId, log, opts.fence);
  const offInfo = hub.subscribe(sessionId, (event) => {
    const info = event.type === "session.updated" ? (event.properties as { info?: { id?: string } }).info : undefined;
    if (info?.id === sessionId) known.info = info;
  });
  // A structured-output session's messages are read with `opencode export` (see SessionTransfer.save).
  const transcript =
    prior && !payload.schema ? new TurnTranscript(hub, sessionId, prior, prior.length === 0) : undefined;
  const budgeted = payload.maxCost !== undefined || payload.maxTokens !== undefined;
  const guard = budgeted && server.guardDir ? new BudgetGuard(server.guardDir) : undefined;
  const watch = new SessionWatch({
    client,
    hub,
    sessionId,
    directory,
    log,
    approval: approvalPolicy(payload, deps.config),
    approvalTimeoutMs: payload.approvalTimeout ?? deps.config.approvalTimeoutMs,
    grants: opts.resume?.grants ?? opts.grants ?? [],
    maxCost: payload.maxCost,
    maxTokens: payload.maxTokens,
    ...(guard ? { guard } : {}),
    ...(opts.spentBefore ? { spentBefore: opts.spentBefore } : {}),
    stallMs: deps.config.stallMs,
    providerRetries: deps.config.providerRetries,
    abort: opts.abort,
    onProgress: (progress) => {
      opts.onProgress(progress);
      live.progress(progress);
      void deps.store.publishProgress(jobId, progress).catch(() => undefined);
    },
  });
  let outcome: PromptOutcome | undefined;
  try {
    outcome = await promptChecked(client, sessionId, payload, {
      directory,
      signal,
      log,
      onStructured: (value) => (trace.structured = value),
      onMessages: (messages) => (known.messages = messages),
      ...(transcript ? { transcript } : {}),
      ...(opts.resume ? { parts: opts.resume.parts } : {}),
    });
  } finally {
    offInfo();
    transcript?.close();
    watch.close();
    // A spent budget's refusals hold until opencode has taken in the abort.
    if (guard?.stopped) await sessionIdle(hub, client, sessionId, directory, ABORT_IDLE_MS);
    await guard?.close();
    await live.close();
    trace.asks = watch.asks;
    if (opts.spend) {
      opts.spend.tokens = watch.progress.tokens;
      opts.spend.cost = watch.progress.cost;
    }
    await commitWorktree(trace, jobId, payload, log);
    const parking = !outcome && signal.reason instanceof ApprovalNeededError ? signal.reason : undefined;
    if (parking) {
      // Parked for a person: the session must be stored (any worker resumes it), or the job cannot wait.
      const callSignal = AbortSignal.timeout(30_000);
      const messages = await parkSession(client, sessionId, directory, parking, log, callSignal);
      await deps.transfer.save(client, sessionId, callSignal, {
        server,
        ...(opts.fence ? { fence: opts.fence } : {}),
        ...(messages && known.info ? { known: { info: known.info, messages } } : {}),
      });
      parking.stored = true;
    } else if (!outcome) {
      // A failed turn's session is still worth storing (it may be continued); nothing waits on it.
      await deps.transfer
        .save(client, sessionId, AbortSignal.timeout(30_000), { server, ...(opts.fence ? { fence: opts.fence } : {}) })
        .catch((error: unknown) => log.warn({ err: error }, "could not store the session"));
    }
  }
  trace.answer = outcome;
  await storeTurn(deps, client, outcome, signal, log, opts.fence, known.info && known.messages ? known : undefined);
  trace.answer = undefined; // stored: nothing is pending any more
  return outcome;
}

/** What a job's permission asks get: its own `approval` (or older `autoApprove`), else the worker's. */
export function approvalPolicy(payload: JobPayload, config: Pick<Config, "approval">): ApprovalPolicy {
  if (payload.approval) return payload.approval;
  if (payload.autoApprove !== undefined) return payload.autoApprove ? "approve" : "reject";
  return config.approval;
}

/**
 * The retry of an attempt whose turn was answered but whose session was not stored: stores the
 * session from this worker's server and returns the answer kept on the record. Asks the model nothing.
 */
export async function storeAnsweredTurn(
  deps: AttemptDeps,
  answered: ResultRecord & { sessionId: string; messageId: string; text: string },
  signal: AbortSignal,
  log: Logger,
  fence?: Fence,
): Promise<PromptOutcome> {
  const outcome: PromptOutcome = {
    sessionId: answered.sessionId,
    text: answered.text,
    model: answered.model ?? "",
    tokens: answered.tokens ?? emptyTokens(),
    cost: answered.cost ?? 0,
    structured: answered.structured,
    messageId: answered.messageId,
  };
  log.info({ sessionId: answered.sessionId }, "the turn was answered before; storing its session");
  try {
    await storeTurn(deps, deps.current().client, outcome, signal, log.child({ sessionId: answered.sessionId }), fence);
  } catch (error) {
    // This server does not hold the turn (another one answered it, or its server is gone): the job
    // completes with its answer, its session unstored, rather than fail or ask again; a follow-up
    // runs only where the turn is (else SessionBehind).
    if (!(error instanceof SessionNotStoredError && error.unreadable)) throw error;
    log.warn(
      { err: error, sessionId: answered.sessionId },
      "the session's turn is not on this worker's server; the job completes with the answer kept, its session not stored",
    );
    return { ...outcome, sessionStored: false };
  }
  return outcome;
}

/** Whether a record is that of a turn answered whose session was not stored (see storeAnsweredTurn). */
export function answeredNotStored(
  record: ResultRecord | null,
): record is ResultRecord & { sessionId: string; messageId: string; text: string } {
  return (
    !!record &&
    record.state !== "completed" &&
    record.sessionStored === false &&
    !!record.sessionId &&
    !!record.messageId &&
    record.text !== null
  );
}

/** Tries to store a session this many times within an attempt before the attempt fails. */
const STORE_TRIES = 3;

/**
 * Stores the session of an answered turn, as part of the attempt: a follow-up on another worker
 * needs it. Tries again briefly; then SessionNotStoredError (with the answer) fails the attempt.
 */
async function storeTurn(
  deps: AttemptDeps,
  client: OpencodeClient,
  outcome: PromptOutcome,
  signal: AbortSignal,
  log: Logger,
  fence?: Fence,
  known?: { info?: unknown; messages?: unknown[] },
): Promise<void> {
  for (let tries = 1; ; tries++) {
    try {
      const callSignal = AbortSignal.any([signal, AbortSignal.timeout(30_000)]);
      // A second try reads the session afresh.
      const server = deps.current().server;
      await deps.transfer.save(client, outcome.sessionId, callSignal, {
        turn: outcome.messageId,
        server,
        ...(fence ? { fence } : {}),
        ...(known && tries === 1 ? { known } : {}),
      });
      return;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (error instanceof StoppedError) throw error; // the job is another worker's now
      if (error instanceof SessionNotStoredError && error.unreadable && !deps.current().server.runCli) {
        // An attached server that cannot give the transcript (structured output, see
        // SessionTransfer.save) keeps it itself; a follow-up elsewhere fails SessionBehind.
        log.warn(
          { err: error },
          "the attached opencode server cannot give the session's transcript; it is not stored in the queue",
        );
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      // A server that lacks the turn will not grow it: no point trying again here.
      if (tries >= STORE_TRIES || error instanceof SessionNotStoredError) {
        const unreadable = error instanceof SessionNotStoredError && error.unreadable;
        throw new SessionNotStoredError(
          `the turn was answered but its session could not be stored: ${message}`,
          unreadable,
        );
      }
      log.warn({ err: error, tries }, "could not store the session; trying again");
      await delay(tries * 500, signal);
    }
  }
}

const delay = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal.removeEventListener("abort", stop);
      resolve();
    }
    function stop() {
      clearTimeout(timer);
      reject(signal.reason as Error); // the abort's reason as given (a StoppedError), for the failure's classification
    }
    signal.addEventListener("abort", stop, { once: true });
  });

/** Commits a worktree job's changes (a follow-up commits in the same worktree); never throws. */
async function commitWorktree(trace: AttemptTrace, jobId: string, payload: JobPayload, log: Logger): Promise<void> {
  if (!trace.worktree) return;
  try {
    const message = `opencode-dispatch job ${jobId}${payload.title ? `: ${payload.title}` : ""}`;
    const changedFiles = await finishWorktree(trace.worktree, message, AbortSignal.timeout(30_000));
    trace.worktree = { ...trace.worktree, changedFiles };
  } catch (error) {
    log.warn({ err: error }, "could not commit the worktree's changes");
  }
}

/**
 * The session a follow-up runs in: that of the job before it in its thread, or, when that job
 * opened none (it failed first, or its enqueue failed after it took its place), the session of the
 * thread itself (of the job that began it, or the session it was given).
 */
async function threadSession(
  store: ResultStore,
  after: string,
  thread: string,
): Promise<{ sessionId: string; worktree: ResultRecord["worktree"]; after?: { jobId: string; messageId: string } }> {
  const previous = await store.get(after);
  if (previous?.sessionId) {
    const turn = previous.messageId ? { after: { jobId: after, messageId: previous.messageId } } : {};
    return { sessionId: previous.sessionId, worktree: previous.worktree, ...turn };
  }
  const root = rootOfThread(thread);
  const origin = root && root !== after ? await store.get(root) : null;
  const sessionId = origin?.sessionId ?? sessionOfThread(thread);
  if (!sessionId) {
    throw new NotRunnableError(
      `continue: job ${after} has no session to continue (it ${previous ? `ended ${previous.state} before opening one` : "left no record"})`,
    );
  }
  return { sessionId, worktree: origin?.worktree ?? null };
}

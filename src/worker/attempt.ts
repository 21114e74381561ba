import type { Config } from "../shared/config.js";
import { rootOfThread, rootThread, sessionOfThread } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import type { Ask, Progress, ResultRecord } from "../shared/result.js";
import type { ResultStore } from "../shared/result-store.js";
import type { JobPayload } from "../shared/task.js";
import type { EventHub } from "./event-hub.js";
import { OpencodeHttpError } from "./failures.js";
import type { OpencodeClient } from "./opencode-client.js";
import type { OpencodeServer } from "./opencode-server.js";
import { createSession, type PromptOutcome } from "./run-prompt.js";
import { SessionWatch } from "./session-watch.js";
import type { SessionTransfer } from "./session-transfer.js";
import { promptChecked } from "./structured.js";
import { finishWorktree, prepareWorktree } from "./worktree.js";

/** The worker's current opencode server and what talks to it (replaced when the server is). */
export interface ServerHandle {
  server: OpencodeServer;
  client: OpencodeClient;
  hub: EventHub;
}

export interface AttemptDeps {
  current: () => ServerHandle;
  store: ResultStore;
  transfer: SessionTransfer;
  config: Pick<Config, "stallMs" | "providerRetries" | "autoApprove">;
}

/** What an attempt learned, kept for the result record whether it succeeds or fails. */
export interface AttemptTrace {
  sessionId: string | null;
  continues: string | null;
  directory: string | null;
  asks: Ask[];
  worktree: ResultRecord["worktree"];
  /** The last structured answer, also when it missed the schema. */
  structured?: unknown;
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
    /** Whether the attempt still owns the job (a stale one must not overwrite the stored session). */
    owns?: () => Promise<boolean>;
    /** What earlier attempts spent (the budget counts them); this attempt's own spend is added to `spend`. */
    spentBefore?: { tokens: number; cost: number };
    spend?: { tokens: number; cost: number };
  },
): Promise<PromptOutcome> {
  const { server, client, hub } = deps.current();
  const { signal, trace } = opts;
  let directory = payload.directory;
  let sessionId: string | undefined;

  if (payload.session) {
    sessionId = payload.session; // it may also wait `after` a job of the thread that session is in
  } else if (payload.after) {
    trace.continues = payload.after;
    ({ sessionId, worktree: trace.worktree } = await threadSession(deps.store, payload.after, payload.thread ?? ""));
  }
  if (sessionId) {
    directory = (await deps.transfer.ensureLocal(server, client, sessionId, signal)) ?? directory;
  } else if (payload.worktree && payload.directory) {
    const tree = await prepareWorktree(payload.directory, jobId, trace.worktree?.base, signal);
    trace.worktree = { ...tree, changedFiles: trace.worktree?.changedFiles ?? [] };
    directory = tree.path;
  }
  sessionId ??= await createSession(client, payload, directory, signal);
  trace.sessionId = sessionId;
  trace.directory = directory ?? null;
  // Before the record shows the session: a producer that reads it there finds its thread too.
  await deps.transfer.claimThread(sessionId, payload.thread ?? rootThread(jobId));
  await opts.onSession();

  const log = opts.log.child({ sessionId });
  const watch = new SessionWatch({
    client,
    hub,
    sessionId,
    directory,
    log,
    autoApprove: payload.autoApprove ?? deps.config.autoApprove,
    maxCost: payload.maxCost,
    maxTokens: payload.maxTokens,
    ...(opts.spentBefore ? { spentBefore: opts.spentBefore } : {}),
    stallMs: deps.config.stallMs,
    providerRetries: deps.config.providerRetries,
    abort: opts.abort,
    onProgress: (progress) => {
      opts.onProgress(progress);
      void deps.store.publishProgress(jobId, progress).catch(() => undefined);
    },
  });
  try {
    return await promptChecked(client, sessionId, payload, { directory, signal, log, onStructured: (value) => (trace.structured = value) });
  } finally {
    watch.close();
    trace.asks = watch.asks;
    if (opts.spend) {
      opts.spend.tokens = watch.progress.tokens;
      opts.spend.cost = watch.progress.cost;
    }
    await afterPrompt(deps, client, trace, jobId, payload, log, opts.owns);
  }
}

/** Commits a worktree job's changes and stores the session for other workers; never throws. */
async function afterPrompt(
  deps: AttemptDeps,
  client: OpencodeClient,
  trace: AttemptTrace,
  jobId: string,
  payload: JobPayload,
  log: Logger,
  owns: () => Promise<boolean> = async () => true,
): Promise<void> {
  const signal = AbortSignal.timeout(30_000);
  if (trace.worktree) {
    // A follow-up of a worktree job runs (and commits) in the same worktree.
    try {
      const changedFiles = await finishWorktree(trace.worktree, `opencode-dispatch job ${jobId}${payload.title ? `: ${payload.title}` : ""}`, signal);
      trace.worktree = { ...trace.worktree, changedFiles };
    } catch (error) {
      log.warn({ err: error }, "could not commit the worktree's changes");
    }
  }
  if (trace.sessionId && !(await owns())) {
    log.warn("another worker took the job over; its session is not stored from here");
  } else if (trace.sessionId) {
    await deps.transfer.save(client, trace.sessionId, signal).catch((error: unknown) => log.warn({ err: error }, "could not store the session"));
  }
}

/**
 * The session a follow-up runs in: that of the job before it in its thread, or, when that job
 * opened none (it failed first, or its enqueue failed after it took its place), the session of the
 * thread itself (of the job that began it, or the session it was given).
 */
async function threadSession(store: ResultStore, after: string, thread: string): Promise<{ sessionId: string; worktree: ResultRecord["worktree"] }> {
  const previous = await store.get(after);
  if (previous?.sessionId) return { sessionId: previous.sessionId, worktree: previous.worktree };
  const root = rootOfThread(thread);
  const origin = root && root !== after ? await store.get(root) : null;
  const sessionId = origin?.sessionId ?? sessionOfThread(thread);
  if (!sessionId) {
    throw new OpencodeHttpError("continue", 404, `job ${after} has no session to continue (it ${previous ? `ended ${previous.state} before opening one` : "left no record"})`);
  }
  return { sessionId, worktree: origin?.worktree ?? null };
}

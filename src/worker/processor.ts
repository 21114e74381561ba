import { DelayedError, UnrecoverableError, WaitingError, type Job } from "bullmq";
import type { Logger } from "../shared/logger.js";
import { baseRecord } from "../shared/record.js";
import type { ResultRecord } from "../shared/result.js";
import type { ResultStore } from "../shared/result-store.js";
import { describeIssues, JobPayload } from "../shared/task.js";
import { checkBudget, PayloadError, StoppedError, type StopReason } from "./failures.js";
import type { FlowControl } from "./flow-control.js";
import { runAttempt, type AttemptDeps, type AttemptTrace } from "./attempt.js";
import { classifyFailure, type FailureDecision } from "./retry-policy.js";

export interface ProcessorDeps extends AttemptDeps {
  /** Shared rate and concurrency caps (see flow-control.ts). */
  flow: FlowControl;
  /** BullMQ's state of another job of the queue ("unknown" when BullMQ no longer has it). */
  jobState: (jobId: string) => Promise<string>;
  workerId: string;
  log: Logger;
}

/** How often a follow-up whose predecessor has not finished looks again (it holds no slot meanwhile). */
const CHAIN_POLL_MS = 500;

/** What BullMQ keeps as the job's return value (the full answer lives in the result record). */
export interface JobReturn {
  sessionId: string;
}

/** The failure decision travels on the thrown error to the worker's backoff strategy. */
export type DecidedError = Error & { decision?: FailureDecision };

/**
 * One attempt of one job: parse the payload, run the prompt, write the result record, and turn
 * any failure into BullMQ's language (retry, fail now, or hand back on shutdown).
 */
export function createProcessor(deps: ProcessorDeps) {
  return async function process(job: Job, token?: string, bullSignal?: AbortSignal): Promise<JobReturn> {
    const jobId = job.id!;
    const log = deps.log.child({ jobId });
    const attempt = job.attemptsMade + 1;
    const previous = await deps.store.get(jobId);
    if (previous?.state === "completed" && previous.sessionId) {
      // An earlier attempt finished and stored its answer, then its worker died before BullMQ
      // heard of it: never run the model twice for one job.
      log.info({ sessionId: previous.sessionId }, "job already completed; keeping the stored answer");
      return { sessionId: previous.sessionId };
    }

    let started = new Date();
    let record: ResultRecord = {
      ...(previous ?? baseRecord(jobId, job.data, "active")),
      state: "active",
      attempts: attempt,
      startedAt: started.toISOString(),
      finishedAt: null,
      durationMs: null,
      worker: deps.workerId,
      error: null,
    };

    const parsed = JobPayload.safeParse(job.data);
    if (!parsed.success) {
      const error = new PayloadError(`invalid job payload: ${describeIssues(parsed.error)}`);
      await finish(deps.store, record, started, "failed", classifyFailure(error));
      log.error({ err: error }, "job failed: invalid payload");
      throw new UnrecoverableError(error.message);
    }
    const payload = parsed.data;
    if (payload.after && payload.after !== jobId && token && !(await finished(deps, payload.after))) {
      // A follow-up waits for the job it continues, in the queue rather than in a worker slot.
      await job.moveToDelayed(Date.now() + CHAIN_POLL_MS, token);
      throw new DelayedError();
    }
    const flow = { jobId, model: payload.model, concurrencyKey: payload.concurrencyKey, leaseMs: payload.timeoutMs + 60_000 };
    const wait = token ? await deps.flow.acquire(flow) : 0;
    if (wait > 0) {
      // Over a model's rate or concurrency cap, or its key is busy: back to the queue, no slot held.
      await job.moveToDelayed(Date.now() + wait + Math.floor(Math.random() * 100), token);
      throw new DelayedError();
    }
    started = new Date();
    record.startedAt = started.toISOString();

    const control = new AbortController();
    const timer = setTimeout(
      () => control.abort(new StoppedError("timeout", `attempt timed out after ${payload.timeoutMs} ms`)),
      payload.timeoutMs,
    );
    const onBullAbort = () => control.abort(stopFor(String(bullSignal?.reason ?? "")));
    bullSignal?.addEventListener("abort", onBullAbort, { once: true });
    if (bullSignal?.aborted) onBullAbort(); // cancelled before the listener was in place

    const trace: AttemptTrace = {
      sessionId: record.sessionId,
      continues: record.continues,
      directory: record.directory,
      asks: [],
      worktree: record.worktree,
    };
    const earlierAsks = record.asks;
    const traced = (): ResultRecord => ({ ...record, ...trace, asks: [...earlierAsks, ...trace.asks] });
    try {
      await deps.store.put(record); // inside the try: the flow slots taken above are released whatever happens
      log.info({ attempt, model: payload.model }, "job started");
      const outcome = await runAttempt(deps, jobId, payload, {
        signal: control.signal,
        abort: (reason) => control.abort(reason),
        log,
        trace,
        onSession: async () => {
          record = { ...record, ...trace };
          await deps.store.put(record);
        },
        onProgress: (progress) => void job.updateProgress(progress).catch(() => undefined),
      });
      record = { ...traced(), ...outcome };
      // The watch stops a run that passes its budget; a turn that ended first is checked here.
      const overBudget = checkBudget(payload, outcome.tokens.total, outcome.cost);
      if (overBudget) throw overBudget;
      await finish(deps.store, record, started, "completed");
      log.info({ sessionId: outcome.sessionId, tokens: outcome.tokens.total, cost: outcome.cost }, "job completed");
      return { sessionId: outcome.sessionId };
    } catch (thrown) {
      record = traced();
      // Whatever a call reported once the attempt was stopped, the reason it was stopped is the cause.
      const error: unknown = control.signal.aborted ? control.signal.reason : thrown;
      const decision = classifyFailure(error);
      const logCtx = { sessionId: record.sessionId, attempt, err: error, decision: decision.name };
      if (error instanceof StoppedError && error.reason === "shutdown" && token) {
        await deps.store.put({ ...record, state: "waiting", error: null });
        await job.moveToWait(token);
        log.info(logCtx, "job handed back to the queue for another worker");
        throw new WaitingError();
      }
      const final = !decision.retryable || attempt >= (job.opts.attempts ?? 1);
      await finish(deps.store, record, started, final ? "failed" : "retrying", decision);
      log.warn({ ...logCtx, retryable: decision.retryable, final }, final ? "job failed" : "attempt failed; will retry");
      if (!decision.retryable) throw new UnrecoverableError(`${decision.name}: ${decision.message}`);
      const decided: DecidedError = error instanceof Error ? error : new Error(decision.message);
      decided.decision = decision;
      throw decided;
    } finally {
      clearTimeout(timer);
      bullSignal?.removeEventListener("abort", onBullAbort);
      await deps.flow.release(flow).catch((error: unknown) => log.warn({ err: error }, "could not release flow-control slots"));
    }
  };
}

const STOP_MESSAGES: Record<string, [StopReason, string]> = {
  shutdown: ["shutdown", "the worker is shutting down"],
  "server-died": ["server-died", "the opencode server died"],
  stall: ["stall", "no progress"],
};

/** Maps the reason given to BullMQ's cancelJob / cancelAllJobs to why the attempt stopped. */
function stopFor(reason: string): StoppedError {
  const [kind, message] = STOP_MESSAGES[reason] ?? ["cancelled", `cancelled${reason && reason !== "cancelled" ? `: ${reason}` : ""}`];
  return new StoppedError(kind, message);
}

/** Whether a job has ended for good: completed, failed (also when BullMQ failed it), or gone. */
async function finished(deps: ProcessorDeps, jobId: string): Promise<boolean> {
  const record = await deps.store.get(jobId);
  if (record?.state === "completed" || record?.state === "failed") return true;
  const state = await deps.jobState(jobId);
  // "unknown": BullMQ no longer has it (removed, or trimmed after failing on its own).
  return state === "failed" || state === "unknown";
}

async function finish(
  store: ResultStore,
  record: ResultRecord,
  started: Date,
  state: "completed" | "failed" | "retrying",
  decision?: FailureDecision,
): Promise<void> {
  const now = new Date();
  await store.put({
    ...record,
    state,
    finishedAt: state === "retrying" ? null : now.toISOString(),
    durationMs: now.getTime() - started.getTime(),
    error: decision
      ? {
          name: decision.name,
          message: decision.message,
          retryable: decision.retryable,
          ...(decision.statusCode !== undefined ? { statusCode: decision.statusCode } : {}),
        }
      : null,
  });
}

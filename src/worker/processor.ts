import { UnrecoverableError, WaitingError, type Job } from "bullmq";
import type { Logger } from "../shared/logger.js";
import { baseRecord } from "../shared/record.js";
import type { ResultRecord } from "../shared/result.js";
import type { ResultStore } from "../shared/result-store.js";
import { describeIssues, JobPayload } from "../shared/task.js";
import { PayloadError, StoppedError, type StopReason } from "./failures.js";
import type { OpencodeClient } from "./opencode-client.js";
import { classifyFailure, type FailureDecision } from "./retry-policy.js";
import { runPrompt } from "./run-prompt.js";

export interface ProcessorDeps {
  store: ResultStore;
  /** The client of the worker's current opencode server. */
  client: () => OpencodeClient;
  workerId: string;
  log: Logger;
}

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

    const started = new Date();
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
    await deps.store.put(record);

    const control = new AbortController();
    const timer = setTimeout(
      () => control.abort(new StoppedError("timeout", `attempt timed out after ${payload.timeoutMs} ms`)),
      payload.timeoutMs,
    );
    const onBullAbort = () => control.abort(stopFor(String(bullSignal?.reason ?? "")));
    bullSignal?.addEventListener("abort", onBullAbort, { once: true });

    try {
      log.info({ attempt, model: payload.model }, "job started");
      const outcome = await runPrompt(deps.client(), payload, {
        signal: control.signal,
        log,
        onSession: async (sessionId) => {
          record = { ...record, sessionId };
          await deps.store.put(record);
        },
      });
      record = { ...record, ...outcome };
      await finish(deps.store, record, started, "completed");
      log.info({ sessionId: outcome.sessionId, tokens: outcome.tokens.total, cost: outcome.cost }, "job completed");
      return { sessionId: outcome.sessionId };
    } catch (error) {
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
      const thrown: DecidedError = error instanceof Error ? error : new Error(decision.message);
      thrown.decision = decision;
      throw thrown;
    } finally {
      clearTimeout(timer);
      bullSignal?.removeEventListener("abort", onBullAbort);
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

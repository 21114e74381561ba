/**
 * One attempt of one job in BullMQ's terms: what the queue decides around the model call (a
 * finished record wins, admission by the scheduling core, budgets, the fenced record writes, and
 * turning every failure into retry, fail now, wait, park for approval or hand back). Kept in one
 * function so that each exit path of an attempt is visible next to the others; the model call
 * itself is attempt.ts.
 */
import { DelayedError, UnrecoverableError, WaitingError, type Job } from "bullmq";
import type { Logger } from "../../shared/logger.js";
import { setLongTimeout } from "../../shared/timers.js";
import { baseRecord } from "../../shared/record.js";
import type { ResultRecord } from "../../shared/result.js";
import { describeIssues, JobPayload } from "../../shared/task.js";
import type { FlowSettings } from "../../shared/flow-limits.js";
import { gatesFor, providerOf, slotGates } from "../../scheduling/gates.js";
import type { LeaseKeeper } from "../../scheduling/leases.js";
import type { Scheduler } from "../../scheduling/scheduler.js";
import {
  BudgetExceededError,
  checkBudget,
  checkBudgetLeft,
  PayloadError,
  StoppedError,
  type StopReason,
} from "../failures.js";
import type { BatchBudgets } from "./batch-budget.js";
import { scheduledFiring } from "./scheduled-session.js";
import { checkAllCompleted, childResults, endedMembers, withResults } from "./gather.js";
import {
  answeredNotStored,
  runAttempt,
  storeAnsweredTurn,
  type AttemptDeps,
  type AttemptTrace,
} from "../session/attempt.js";
import {
  addUsage,
  answerOf,
  ApprovalNeededError,
  grantsFor,
  parkedRecord,
  parkJob,
  resumeFrom,
  type Resume,
} from "../session/approvals.js";
import { classifyFailure, providerBusyUntil, type FailureDecision } from "./retry-policy.js";

export interface ProcessorDeps extends AttemptDeps {
  /** Decides when a job may start and wakes it when it may (see src/scheduling). */
  scheduler: Scheduler;
  leases: LeaseKeeper;
  /** Budgets of whole batches (a batch submitted with maxCost / maxTokens). */
  budgets: BatchBudgets;
  /** Caps shared by all workers (DISPATCH_CONCURRENCY_LIMITS, DISPATCH_RATE_LIMITS, DISPATCH_KEY_CONCURRENCY). */
  flow: FlowSettings;
  workerId: string;
  log: Logger;
}

/** A job the provider turns away this many times in a row fails as any other retryable error would. */
const MAX_PROVIDER_HOLDS = 50;

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
    if (previous?.state === "failed" && job.attemptsMade < previous.attempts) {
      // Final means final: it was cancelled, or failed for good (over budget, schema missed, …),
      // and its worker died before BullMQ heard of it (BullMQ never counted that attempt). A job
      // BullMQ itself retried after the failure (the dashboard's retry) has counted it, and runs.
      log.info(
        { sessionId: previous.sessionId, error: previous.error?.name },
        "job already failed for good; keeping the stored outcome",
      );
      throw new UnrecoverableError(
        `${previous.error?.name ?? "Failed"}: ${previous.error?.message ?? "failed before"}`,
      );
    }
    // A job parked for approval goes on in its session once its ask is answered (or timed out).
    let resume: Resume | undefined;
    if (previous?.state === "awaiting-approval" && previous.approval && previous.sessionId && token) {
      const decision = await answerOf(deps.connection, deps.store.keys, jobId, previous.approval);
      if (!decision) {
        log.info({ sessionId: previous.sessionId }, "job woke before its ask was answered; it waits on");
        return parkJob(job, token, previous.approval, deps.connection, deps.store.keys);
      }
      resume = resumeFrom(previous, previous.sessionId, previous.approval, decision);
      log.info(
        { sessionId: previous.sessionId, answer: decision.answer, by: decision.by },
        "the ask was answered; the job resumes its session",
      );
    }
    // A schedule's firing runs with what its schedule gives it (its due time, its session).
    const data = await scheduledFiring(deps.store, deps.connection, job);
    /** Writes a record of this attempt, only while it still owns the job (see ResultStore.putFenced). */
    const write = async (next: ResultRecord): Promise<void> => {
      if (!token) return deps.store.put(next);
      if (!(await deps.store.putFenced(next, token)))
        throw new StoppedError("lock-lost", "another worker took the job over (this worker lost its lock)");
    };

    let started = new Date();
    let record: ResultRecord = {
      ...(previous ?? baseRecord(jobId, data, "active")),
      state: "active",
      attempts: attempt,
      startedAt: started.toISOString(),
      finishedAt: null,
      durationMs: null,
      worker: deps.workerId,
      error: null,
    };
    if (resume) record = { ...record, asks: [...record.asks, resume.answered], approval: null };
    // What the job's parked turns spent: its record's tokens and cost are those of every turn.
    const parkedSpend = resume ? { tokens: previous!.tokens, cost: previous!.cost } : undefined;

    const parsed = JobPayload.safeParse(data);
    if (!parsed.success) {
      const error = new PayloadError(`invalid job payload: ${describeIssues(parsed.error)}`);
      await finish(write, record, started, "failed", classifyFailure(error));
      log.error({ err: error }, "job failed: invalid payload");
      throw new UnrecoverableError(error.message);
    }
    const payload = parsed.data;
    const gates = gatesFor(jobId, payload, deps.flow);
    const member = `${jobId}@${token ?? "-"}`;
    // An earlier attempt got the answer but could not store its session: this one only stores it.
    const answered = answeredNotStored(previous) ? previous : undefined;
    if (token && !answered) {
      const admission = await deps.scheduler.admit(jobId, member, gates, deps.leases.leaseMs);
      if (!admission.admitted) {
        // A batch's parent finds its batch unfinished: count the members that ended without counting themselves.
        if (payload.gather && admission.gate.startsWith("g:")) {
          await deps.scheduler.ended(
            payload.gather.batch,
            await endedMembers(deps.connection, deps.store, payload.gather.batch),
          );
        }
        log.debug({ gate: admission.gate, why: admission.why }, "job waits");
        return sleep(deps.scheduler, job, token, admission.delayUntil);
      }
    }
    const slots = answered ? [] : slotGates(gates);
    const untrack = deps.leases.track(member, slots);
    started = new Date();
    record.startedAt = started.toISOString();

    const control = new AbortController();
    const timer = setLongTimeout(
      () => control.abort(new StoppedError("timeout", `attempt timed out after ${payload.timeoutMs} ms`)),
      payload.timeoutMs,
    );
    // A member of a batch with a budget counts what it spends there, and stops when the batch has spent it.
    const meter =
      payload.batchBudget && !answered
        ? deps.budgets.meter(payload.batchBudget, (error) => control.abort(error))
        : undefined;
    const onBullAbort = () => control.abort(stopFor(String(bullSignal?.reason ?? "")));
    bullSignal?.addEventListener("abort", onBullAbort, { once: true });
    if (bullSignal?.aborted) onBullAbort(); // cancelled before the listener was in place

    // A budget holds for all attempts of the job together.
    const budgeted = payload.maxCost !== undefined || payload.maxTokens !== undefined;
    let spentBefore = { tokens: 0, cost: 0, attempts: 0 };
    const spend = { tokens: 0, cost: 0 };
    const trace: AttemptTrace = {
      sessionId: record.sessionId,
      continues: record.continues,
      forkedFrom: record.forkedFrom,
      directory: record.directory,
      asks: [],
      worktree: record.worktree,
    };
    const earlierAsks = record.asks;
    const traced = (): ResultRecord => {
      const { answer: _answer, ...learned } = trace; // the answer goes on the record by its fields
      return { ...record, ...learned, asks: [...earlierAsks, ...trace.asks] };
    };
    try {
      // Inside the try: the flow slots taken above are released whatever happens.
      if (budgeted) spentBefore = await deps.store.spent(jobId);
      await write(record);
      log.info({ attempt, model: payload.model }, "job started");
      // Its batch has spent its budget: no member starts any more. (Checked once admitted, so that
      // it ends like any job that ran: the next job of its lane is let in.)
      const batchStop = meter ? await deps.budgets.exceeded(payload.batchBudget!) : null;
      if (batchStop) throw new BudgetExceededError(batchStop);
      const leftShort = budgeted && !answered ? checkBudgetLeft(payload, spentBefore) : undefined;
      if (leftShort) throw leftShort;
      const fence = token ? { lockKey: deps.store.lockKey(jobId), token } : undefined;
      // A batch's parent: its prompt gets what its children left.
      let work = payload;
      if (payload.gather && !answered) {
        const { results, counts } = await childResults(deps.connection, deps.store, payload.gather.batch);
        record = { ...record, children: counts };
        await write(record);
        if (payload.gather.on === "completed") checkAllCompleted(results, payload.gather.batch);
        work = withResults(payload, results, payload.gather.batch);
      }
      const outcome = answered
        ? await storeAnsweredTurn(deps, answered, control.signal, log, fence)
        : await runAttempt(deps, jobId, work, {
            spentBefore,
            spend,
            signal: control.signal,
            abort: (reason) => control.abort(reason),
            log,
            trace,
            onSession: async () => {
              record = { ...record, ...trace };
              await write(record);
            },
            ...(fence ? { fence } : {}),
            ...(resume ? { resume } : { grants: grantsFor(record.asks) }), // `always` holds for every later attempt
            onProgress: (progress) => {
              void job.updateProgress(progress).catch(() => undefined);
              meter?.report(progress);
            },
          });
      record = { ...traced(), ...outcome, sessionStored: outcome.sessionStored ?? true };
      // The watch stops a run that passes its budget; a turn that ended first is checked here.
      // (An answer stored before was spent by an earlier attempt, and is counted in spentBefore.)
      const overBudget = answered
        ? checkBudget(
            payload,
            Math.max(outcome.tokens.total, spentBefore.tokens),
            Math.max(outcome.cost, spentBefore.cost),
          )
        : checkBudget(payload, outcome.tokens.total + spentBefore.tokens, outcome.cost + spentBefore.cost);
      if (!answered) {
        spend.tokens = Math.max(spend.tokens, outcome.tokens.total);
        spend.cost = Math.max(spend.cost, outcome.cost);
      }
      if (overBudget) throw overBudget;
      if (parkedSpend) record = { ...record, ...addUsage(parkedSpend, outcome) };
      await finish(write, record, started, "completed");
      log.info({ sessionId: outcome.sessionId, tokens: outcome.tokens.total, cost: outcome.cost }, "job completed");
      return { sessionId: outcome.sessionId };
    } catch (thrown) {
      // An answer whose session could not be stored is kept: the next attempt only stores the session.
      // (However the attempt ended after it: a store that failed, a timeout or shutdown while storing.)
      record = trace.answer ? { ...traced(), ...trace.answer, sessionStored: false } : traced();
      // Whatever a call reported once the attempt was stopped, the reason it was stopped is the cause.
      let error: unknown = control.signal.aborted ? control.signal.reason : thrown;
      // A job that could not be parked (its session not stored) fails with what went wrong.
      if (error instanceof ApprovalNeededError && !error.stored && thrown !== error) error = thrown;
      const decision = classifyFailure(error);
      const logCtx = { sessionId: record.sessionId, attempt, err: error, decision: decision.name };
      if (lockLost(error)) {
        // Another worker owns the job now: this attempt writes nothing and leaves the job alone.
        log.warn(logCtx, "job taken over by another worker; this attempt stops and writes nothing");
        throw new DelayedError();
      }
      if (error instanceof ApprovalNeededError && error.stored && token) {
        // Parked for a person: it holds no worker slot (this attempt ends) and no flow-control
        // slot (released below); its attempt is not spent. Any worker resumes it once answered.
        try {
          await write(parkedRecord(record, error.ask, addUsage(parkedSpend, error.usage)));
        } catch (lost) {
          if (!lockLost(lost)) throw lost;
          log.warn(logCtx, "job taken over by another worker; it is not parked from here");
          throw new DelayedError();
        }
        log.info(
          {
            ...logCtx,
            err: undefined,
            permission: error.ask.permission,
            patterns: error.ask.patterns,
            until: error.ask.timeoutAt,
          },
          "job parked: its ask waits for a person",
        );
        return parkJob(job, token, error.ask, deps.connection, deps.store.keys);
      }
      const busyUntil = providerBusyUntil(error);
      if (busyUntil !== undefined && token && (await deps.scheduler.turnedAway(jobId)) <= MAX_PROVIDER_HOLDS) {
        // The provider is over its quota: hold it for every worker; this job waits its turn again.
        const provider = providerOf(payload.model);
        const limit = await deps.scheduler.hold(provider, busyUntil, member);
        await write({ ...record, state: "delayed", error: null });
        // It waits in line at the hold like any job that meets it (one waiter keeps the timer).
        const admission = await deps.scheduler.admit(
          jobId,
          member,
          gates.filter((g) => g.kind === "h"),
          deps.leases.leaseMs,
        );
        log.info(
          { ...logCtx, provider, until: new Date(busyUntil).toISOString(), learnedRate: limit },
          "provider is busy; job waits for it without spending an attempt",
        );
        return sleep(deps.scheduler, job, token, admission.admitted ? Date.now() : admission.delayUntil);
      }
      if (error instanceof StoppedError && error.reason === "shutdown" && token) {
        await write({ ...record, state: "waiting", error: null });
        await job.moveToWait(token);
        log.info(logCtx, "job handed back to the queue for another worker");
        throw new WaitingError();
      }
      const final = !decision.retryable || attempt >= (job.opts.attempts ?? 1);
      try {
        await finish(write, record, started, final ? "failed" : "retrying", decision);
        if (final) await deps.store.keepTask(job);
      } catch (lost) {
        if (!lockLost(lost)) throw lost;
        log.warn(logCtx, "job taken over by another worker; this attempt's failure is not recorded");
        throw new DelayedError();
      }
      log.warn(
        { ...logCtx, retryable: decision.retryable, final },
        final ? "job failed" : "attempt failed; will retry",
      );
      if (!decision.retryable) throw new UnrecoverableError(`${decision.name}: ${decision.message}`);
      const decided: DecidedError = error instanceof Error ? error : new Error(decision.message);
      decided.decision = decision;
      throw decided;
    } finally {
      timer.clear();
      bullSignal?.removeEventListener("abort", onBullAbort);
      untrack();
      await meter?.settle(spend);
      if (budgeted && (spend.tokens > 0 || spend.cost > 0)) {
        await deps.store
          .addSpent(jobId, spend.tokens, spend.cost)
          .catch((error: unknown) => log.warn({ err: error }, "could not count what the attempt spent"));
      }
      if (slots.length > 0)
        await deps.scheduler
          .release(member, slots)
          .catch((error: unknown) => log.warn({ err: error }, "could not release flow-control slots"));
    }
  };
}

const STOP_MESSAGES: Record<string, [StopReason, string]> = {
  shutdown: ["shutdown", "the worker is shutting down"],
  "server-died": ["server-died", "the opencode server died"],
  stall: ["stall", "no progress"],
  "lock-lost": ["lock-lost", "the worker lost the job's lock (another worker may run it)"],
};

/** Maps the reason given to BullMQ's cancelJob / cancelAllJobs to why the attempt stopped. */
function stopFor(reason: string): StoppedError {
  const [kind, message] = STOP_MESSAGES[reason] ?? [
    "cancelled",
    `cancelled${reason && reason !== "cancelled" ? `: ${reason}` : ""}`,
  ];
  return new StoppedError(kind, message);
}

/** Another worker took the job over: this attempt must write nothing more. */
const lockLost = (error: unknown): boolean => error instanceof StoppedError && error.reason === "lock-lost";

/**
 * A job that waits sleeps in the delayed set, holding no slot, until what it waits for wakes it
 * (or `untilMs`). Woken on its way there, it promotes itself. Leaves BullMQ nothing to do.
 */
async function sleep(scheduler: Scheduler, job: Job, token: string, untilMs: number): Promise<never> {
  await job.moveToDelayed(untilMs, token);
  if (await scheduler.parked(job.id!)) await scheduler.promote([job.id!]);
  throw new DelayedError();
}

async function finish(
  write: (record: ResultRecord) => Promise<void>,
  record: ResultRecord,
  started: Date,
  state: "completed" | "failed" | "retrying",
  decision?: FailureDecision,
): Promise<void> {
  const now = new Date();
  await write({
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

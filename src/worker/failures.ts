/**
 * Why an attempt failed, as the worker sees it. `classifyFailure` (retry-policy.ts) turns any of
 * these, or anything else thrown, into one retry decision.
 */

/** opencode returned an assistant message with `info.error` set (HTTP 200 from the route). */
export class ModelError extends Error {
  constructor(
    readonly errorName: string,
    readonly data: {
      message?: string;
      statusCode?: number;
      isRetryable?: boolean;
      responseHeaders?: Record<string, string>;
    },
  ) {
    super(data.message || errorName);
    this.name = "ModelError";
  }
}

/** An opencode route answered with an HTTP error. */
export class OpencodeHttpError extends Error {
  constructor(
    readonly operation: string,
    readonly status: number,
    detail: string,
  ) {
    super(`opencode ${operation} answered ${status}${detail ? `: ${detail}` : ""}`);
    this.name = "OpencodeHttpError";
  }
}

/** The attempt was stopped on purpose; `reason` says why. */
export type StopReason = "timeout" | "stall" | "cancelled" | "shutdown" | "server-died" | "lock-lost";

export class StoppedError extends Error {
  constructor(
    readonly reason: StopReason,
    message: string,
  ) {
    super(message);
    this.name = "StoppedError";
  }
}

/** The job's payload does not match the task schema (for example written by another client). */
export class PayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PayloadError";
  }
}

/** The session's running cost or tokens passed the job's cap. Never retried. */
export class BudgetExceededError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BudgetExceeded";
  }
}

/** The structured answer still missed the task's schema after the repair prompts. Never retried. */
export class SchemaMismatchError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`the structured answer does not match the schema: ${problems.join("; ")}`);
    this.name = "SchemaMismatch";
  }
}

/**
 * Before an attempt of a job with a budget: the error when what is left of it is less than an
 * attempt has cost on average so far (starting would most likely pass the cap), else undefined.
 */
export function checkBudgetLeft(
  caps: { maxCost?: number; maxTokens?: number },
  spent: { tokens: number; cost: number; attempts: number },
): BudgetExceededError | undefined {
  if (spent.attempts === 0) return undefined;
  const perAttempt = { tokens: spent.tokens / spent.attempts, cost: spent.cost / spent.attempts };
  if (caps.maxCost !== undefined && caps.maxCost - spent.cost < perAttempt.cost) {
    return new BudgetExceededError(
      `budget exceeded: $${spent.cost.toFixed(4)} spent over ${spent.attempts} attempts of --max-cost $${caps.maxCost}; what is left is less than an attempt costs ($${perAttempt.cost.toFixed(4)})`,
    );
  }
  if (caps.maxTokens !== undefined && caps.maxTokens - spent.tokens < perAttempt.tokens) {
    return new BudgetExceededError(
      `budget exceeded: ${spent.tokens} tokens spent over ${spent.attempts} attempts of --max-tokens ${caps.maxTokens}; what is left is less than an attempt uses (${Math.round(perAttempt.tokens)})`,
    );
  }
  return undefined;
}

/** The budget error for a turn's running totals, or undefined while they are within the caps. */
export function checkBudget(
  caps: { maxCost?: number; maxTokens?: number },
  tokens: number,
  cost: number,
): BudgetExceededError | undefined {
  if (caps.maxCost !== undefined && cost > caps.maxCost) {
    return new BudgetExceededError(`budget exceeded: cost $${cost.toFixed(4)} passed --max-cost $${caps.maxCost}`);
  }
  if (caps.maxTokens !== undefined && tokens > caps.maxTokens) {
    return new BudgetExceededError(`budget exceeded: ${tokens} tokens passed --max-tokens ${caps.maxTokens}`);
  }
  return undefined;
}

/**
 * The provider said "too many requests" (HTTP 429, a quota or rate-limit message): the attempt
 * stops and the job waits, without spending an attempt, until the provider's hold passes.
 */
export class ProviderBusyError extends Error {
  constructor(
    /** When the provider said it takes calls again (Retry-After, or opencode's next try). */
    readonly untilMs: number,
    message: string,
  ) {
    super(message);
    this.name = "ProviderBusy";
  }
}

/**
 * The turn was answered but its session could not be stored for other workers. The attempt is
 * retried; the next one stores the session (the answer is kept, the model is not asked again).
 */
export class SessionNotStoredError extends Error {
  constructor(
    message: string,
    /** The server could not give the transcript (rather than Redis refusing to keep it). */
    readonly unreadable = false,
  ) {
    super(message);
    this.name = "SessionNotStored";
  }
}

/**
 * A follow-up would run on a transcript older than its predecessor's: the turn of the job before
 * it is neither on this worker's opencode server nor in the stored copy. Retried (a worker that
 * holds the turn, or a stored copy that has it, can run it); never run on the older transcript.
 */
export class SessionBehindError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SessionBehind";
  }
}

/**
 * A job this one is built on did not give it what it needs: the job it forks ended without a
 * session to copy, or (gather with `thenOn: "completed"`) children of it did not complete. No retry
 * can change that: it fails for good, without a model call.
 */
export class UpstreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UpstreamFailed";
  }
}

/**
 * The job cannot run as it asks, whoever tries: its `worktree` directory is not in a git
 * repository, or the session it continues exists nowhere (neither on this server nor stored in
 * the queue), or only a spawned server could import it. Not an HTTP failure: fails for good.
 */
export class NotRunnableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotRunnable";
  }
}

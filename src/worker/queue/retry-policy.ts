import {
  BudgetExceededError,
  ModelError,
  OpencodeHttpError,
  PayloadError,
  ProviderBusyError,
  SchemaMismatchError,
  SessionBehindError,
  SessionNotStoredError,
  StoppedError,
  UpstreamError,
  NotRunnableError,
} from "../failures.js";

export interface FailureDecision {
  /** Retry with backoff (true) or fail the job now (false). */
  retryable: boolean;
  /** Stable name for the result record and metrics. */
  name: string;
  message: string;
  statusCode?: number;
  /** The provider's Retry-After, when it gave one. */
  retryAfterMs?: number;
}

/** Provider statuses that no retry can fix. */
const PERMANENT_STATUS = new Set([400, 401, 403, 404, 422]);

/** Message errors that say the same prompt would fail the same way again. */
const PERMANENT_MESSAGE_ERRORS = new Set([
  "ProviderAuthError",
  "MessageOutputLengthError",
  "ContextOverflowError",
  "ContentFilterError",
  "StructuredOutputError",
]);

/** The single place that decides retry or fail-now for every failure an attempt can meet. */
export function classifyFailure(error: unknown): FailureDecision {
  if (error instanceof PayloadError) return { retryable: false, name: "InvalidPayload", message: error.message };
  if (error instanceof BudgetExceededError) return { retryable: false, name: "BudgetExceeded", message: error.message };
  if (error instanceof UpstreamError || error instanceof NotRunnableError)
    return { retryable: false, name: error.name, message: error.message };
  // The model was already told what is wrong, in the same session; a fresh attempt is no likelier to match.
  if (error instanceof SchemaMismatchError) return { retryable: false, name: "SchemaMismatch", message: error.message };
  if (error instanceof StoppedError) {
    const retryable = error.reason !== "cancelled";
    const names = {
      timeout: "Timeout",
      stall: "Stalled",
      cancelled: "Cancelled",
      shutdown: "Shutdown",
      "server-died": "ServerDied",
      "lock-lost": "LockLost",
    };
    return { retryable, name: names[error.reason], message: error.message };
  }
  if (error instanceof SessionNotStoredError || error instanceof SessionBehindError)
    return { retryable: true, name: error.name, message: error.message };
  if (error instanceof ModelError) return classifyModelError(error);
  if (error instanceof OpencodeHttpError) {
    // 400: opencode rejected the request itself (unknown agent, bad model, bad parts).
    // 404: a session or resource this job names does not exist.
    const retryable = !(error.status === 400 || error.status === 404);
    return { retryable, name: "OpencodeHttpError", message: error.message, statusCode: error.status };
  }
  // Anything else (fetch failed, connection refused or reset, a server that died): retry.
  const message = error instanceof Error ? error.message : String(error);
  return { retryable: true, name: error instanceof Error ? error.name : "Error", message };
}

function classifyModelError(error: ModelError): FailureDecision {
  const base = { name: error.errorName, message: error.message };
  if (PERMANENT_MESSAGE_ERRORS.has(error.errorName)) return { ...base, retryable: false };
  if (error.errorName === "MessageAbortedError") return { ...base, retryable: true };
  const status = error.data.statusCode;
  if (status !== undefined) {
    const retryAfterMs = parseRetryAfter(error.data.responseHeaders);
    const retryable =
      !PERMANENT_STATUS.has(status) &&
      (status === 408 || status === 409 || status === 429 || status >= 500 || error.data.isRetryable === true);
    return { ...base, retryable, statusCode: status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
  // UnknownError and an APIError without a status: trust opencode's own verdict, else retry.
  return { ...base, retryable: error.data.isRetryable ?? true };
}

export function parseRetryAfter(headers: Record<string, string> | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  const entry = Object.entries(headers).find(([key]) => key.toLowerCase() === "retry-after");
  if (!entry) return undefined;
  const seconds = Number(entry[1]);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1_000);
  const date = Date.parse(entry[1]);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Backoff before the next attempt: Retry-After when the provider gave one (capped), else exponential. */
export function backoffDelay(
  attemptsMade: number,
  decision: Pick<FailureDecision, "retryAfterMs"> | undefined,
  baseMs = 2_000,
  capMs = 300_000,
): number {
  if (decision?.retryAfterMs !== undefined) return Math.min(decision.retryAfterMs, capMs);
  return Math.min(baseMs * 2 ** Math.max(0, attemptsMade - 1), capMs);
}

/**
 * While opencode retries a provider call itself, its session status carries only the error's
 * message, not its status code. These patterns recognise the errors no retry fixes (bad key,
 * forbidden, unknown model, invalid request), so the worker can stop the loop at once.
 */
const HOPELESS_MESSAGE =
  /\b(400|401|403|404|422)\b|unauthori[sz]ed|forbidden|api[ _-]?key|authenticat|permission denied|invalid[ _]request|model[ _]not[ _]found|does not exist/i;

/** The ModelError data a retry status message stands for. */
export function retryStatusError(message: string): { message: string; isRetryable: boolean; statusCode?: number } {
  const code = /\b(400|401|403|404|422|429|5\d\d)\b/.exec(message)?.[1];
  return {
    message,
    isRetryable: !HOPELESS_MESSAGE.test(message),
    ...(code ? { statusCode: Number(code) } : {}),
  };
}

/** How long a provider asks to be left alone when it gives no Retry-After. */
export const DEFAULT_PROVIDER_HOLD_MS = 5_000;

/** Words providers use for "too many requests" (opencode's retry status carries only the message). */
const BUSY_MESSAGE = /\b429\b|rate[ _-]?limit|too many requests|quota|resource[ _-]?exhausted|overloaded/i;

/** Whether a provider message (as opencode's retry status shows it) says the provider is over its quota. */
export const isProviderBusyMessage = (message: string): boolean =>
  BUSY_MESSAGE.test(message) && !HOPELESS_MESSAGE.test(message.replace(/\b429\b/g, ""));

/**
 * When the provider will take calls again, if the failure says it is over its quota: a
 * ProviderBusyError from the session watch, or a model error with status 429 (Retry-After
 * honoured, else DEFAULT_PROVIDER_HOLD_MS). Undefined for every other failure.
 */
export function providerBusyUntil(error: unknown, now = Date.now()): number | undefined {
  if (error instanceof ProviderBusyError) return Math.max(now, Math.ceil(error.untilMs));
  if (error instanceof ModelError && error.data.statusCode === 429) {
    return Math.ceil(now + (parseRetryAfter(error.data.responseHeaders, now) ?? DEFAULT_PROVIDER_HOLD_MS));
  }
  return undefined;
}

import { describe, expect, it } from "vitest";
import {
  BudgetExceededError,
  ModelError,
  OpencodeHttpError,
  NotRunnableError,
  UpstreamError,
  PayloadError,
  SchemaMismatchError,
  StoppedError,
} from "../../src/worker/failures";
import {
  backoffDelay,
  classifyFailure,
  parseRetryAfter,
  retryStatusError,
  type FailureDecision,
} from "../../src/worker/queue/retry-policy";

const apiError = (statusCode: number | undefined, extra: Partial<ModelError["data"]> = {}) =>
  new ModelError("APIError", { message: `provider said ${statusCode}`, statusCode, ...extra });

/** Every branch of classifyFailure: [case, thrown, expected decision (subset)]. */
const TABLE: [string, unknown, Partial<FailureDecision>][] = [
  // schema
  [
    "payload that fails its schema",
    new PayloadError("invalid job payload: prompt: Required"),
    { retryable: false, name: "InvalidPayload", message: "invalid job payload: prompt: Required" },
  ],
  // budgets
  [
    "structured answer still off the schema after repairs",
    new SchemaMismatchError(["age: is required"]),
    {
      retryable: false,
      name: "SchemaMismatch",
      message: "the structured answer does not match the schema: age: is required",
    },
  ],
  [
    "cost or token budget passed",
    new BudgetExceededError("cost 1.2 passed the budget 1"),
    { retryable: false, name: "BudgetExceeded", message: "cost 1.2 passed the budget 1" },
  ],
  // stopped on purpose
  ["timeout", new StoppedError("timeout", "attempt timed out after 10 ms"), { retryable: true, name: "Timeout" }],
  ["stall watchdog", new StoppedError("stall", "no progress"), { retryable: true, name: "Stalled" }],
  ["cancel", new StoppedError("cancelled", "cancelled"), { retryable: false, name: "Cancelled" }],
  [
    "worker shutdown",
    new StoppedError("shutdown", "the worker is shutting down"),
    { retryable: true, name: "Shutdown" },
  ],
  [
    "opencode server died",
    new StoppedError("server-died", "the opencode server died"),
    { retryable: true, name: "ServerDied" },
  ],
  // provider errors opencode reports in the message
  ...[400, 401, 403, 404, 422].map((status): [string, unknown, Partial<FailureDecision>] => [
    `provider ${status}`,
    apiError(status, { isRetryable: false }),
    { retryable: false, name: "APIError", statusCode: status },
  ]),
  [
    "provider 401 even when opencode calls it retryable",
    apiError(401, { isRetryable: true }),
    { retryable: false, statusCode: 401 },
  ],
  ["provider 408", apiError(408), { retryable: true, statusCode: 408 }],
  ["provider 409", apiError(409), { retryable: true, statusCode: 409 }],
  ["provider 429", apiError(429, { isRetryable: true }), { retryable: true, statusCode: 429 }],
  [
    "provider 429 with Retry-After seconds",
    apiError(429, { responseHeaders: { "Retry-After": "7" } }),
    { retryable: true, statusCode: 429, retryAfterMs: 7_000 },
  ],
  ["provider 500", apiError(500, { isRetryable: true }), { retryable: true, statusCode: 500 }],
  ["provider 503", apiError(503), { retryable: true, statusCode: 503 }],
  [
    "provider 418, not retryable by opencode",
    apiError(418, { isRetryable: false }),
    { retryable: false, statusCode: 418 },
  ],
  [
    "provider 418 that opencode calls retryable",
    apiError(418, { isRetryable: true }),
    { retryable: true, statusCode: 418 },
  ],
  [
    "APIError without a status, opencode says retryable",
    apiError(undefined, { isRetryable: true }),
    { retryable: true, name: "APIError" },
  ],
  [
    "APIError without a status, opencode says not",
    apiError(undefined, { isRetryable: false }),
    { retryable: false, name: "APIError" },
  ],
  [
    "UnknownError without a verdict",
    new ModelError("UnknownError", { message: "boom" }),
    { retryable: true, name: "UnknownError", message: "boom" },
  ],
  [
    "missing provider key",
    new ModelError("ProviderAuthError", { message: "no key" }),
    { retryable: false, name: "ProviderAuthError" },
  ],
  [
    "output too long",
    new ModelError("MessageOutputLengthError", {}),
    { retryable: false, name: "MessageOutputLengthError" },
  ],
  [
    "context overflow",
    new ModelError("ContextOverflowError", { message: "too long" }),
    { retryable: false, name: "ContextOverflowError" },
  ],
  ["content filter", new ModelError("ContentFilterError", {}), { retryable: false, name: "ContentFilterError" }],
  [
    "structured output",
    new ModelError("StructuredOutputError", {}),
    { retryable: false, name: "StructuredOutputError" },
  ],
  [
    "message aborted (server-side abort)",
    new ModelError("MessageAbortedError", { message: "aborted" }),
    { retryable: true, name: "MessageAbortedError" },
  ],
  // a job that cannot run as it asks, and one whose upstream job did not give it what it needs
  [
    "not runnable (worktree outside a git repository)",
    new NotRunnableError("worktree: /tmp/x is not inside a git repository"),
    { retryable: false, name: "NotRunnable" },
  ],
  [
    "upstream failed (a fork of a failed job)",
    new UpstreamError("job x ended failed"),
    { retryable: false, name: "UpstreamFailed" },
  ],
  // opencode's own routes
  [
    "opencode route 400 (bad agent/model)",
    new OpencodeHttpError("session.prompt", 400, "bad"),
    { retryable: false, name: "OpencodeHttpError", statusCode: 400 },
  ],
  [
    "opencode route 404 (no such session)",
    new OpencodeHttpError("session.prompt", 404, ""),
    { retryable: false, statusCode: 404 },
  ],
  [
    "opencode route 409 (session busy)",
    new OpencodeHttpError("session.prompt", 409, ""),
    { retryable: true, statusCode: 409 },
  ],
  ["opencode route 500", new OpencodeHttpError("session.create", 500, ""), { retryable: true, statusCode: 500 }],
  [
    "opencode unreachable (status 0)",
    new OpencodeHttpError("session.create", 0, ""),
    { retryable: true, statusCode: 0 },
  ],
  // transport and anything else
  ["fetch failed", new TypeError("fetch failed"), { retryable: true, name: "TypeError", message: "fetch failed" }],
  [
    "connection refused",
    Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:4096"), { code: "ECONNREFUSED" }),
    { retryable: true, name: "Error" },
  ],
  ["a thrown string", "weird", { retryable: true, name: "Error", message: "weird" }],
];

describe("classifyFailure: one retry decision for every failure", () => {
  it.each(TABLE)("%s", (_case, error, expected) => {
    const decision = classifyFailure(error);
    expect(decision).toMatchObject(expected);
    expect(typeof decision.message).toBe("string");
    if (expected.retryAfterMs === undefined) expect(decision.retryAfterMs).toBeUndefined();
  });
});

describe("Retry-After and backoff", () => {
  it("reads Retry-After as seconds or an HTTP date, case-insensitively", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    expect(parseRetryAfter({ "retry-after": "2" }, now)).toBe(2_000);
    expect(parseRetryAfter({ "RETRY-AFTER": "0" }, now)).toBe(0);
    expect(parseRetryAfter({ "Retry-After": "Tue, 01 Jan 2030 00:00:30 GMT" }, now)).toBe(30_000);
    expect(parseRetryAfter({ "Retry-After": "Mon, 31 Dec 2029 00:00:00 GMT" }, now)).toBe(0);
    expect(parseRetryAfter({ "Retry-After": "soon" }, now)).toBeUndefined();
    expect(parseRetryAfter({}, now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it("honours Retry-After up to the cap, else grows exponentially up to the cap", () => {
    expect(backoffDelay(1, { retryAfterMs: 7_000 })).toBe(7_000);
    expect(backoffDelay(1, { retryAfterMs: 3_600_000 })).toBe(300_000);
    expect(backoffDelay(1, undefined)).toBe(2_000);
    expect(backoffDelay(2, {})).toBe(4_000);
    expect(backoffDelay(3, undefined)).toBe(8_000);
    expect(backoffDelay(30, undefined)).toBe(300_000);
    expect(backoffDelay(0, undefined)).toBe(2_000);
  });
});

describe("a retry status seen while opencode retries a provider call", () => {
  const decide = (message: string) => classifyFailure(new ModelError("APIError", retryStatusError(message)));
  it.each([
    ["fake error 401", false, 401],
    ["Incorrect API key provided: sk-xx", false, undefined],
    ["invalid x-api-key", false, undefined],
    ["403 Forbidden", false, 403],
    ["The model `gpt-9` does not exist", false, undefined],
    ["Unauthorized", false, undefined],
    ["fake error 503", true, 503],
    ["Rate limit reached (429)", true, 429],
    ["Overloaded", true, undefined],
    ["socket hang up", true, undefined],
  ])("%s → retryable %s", (message, retryable, statusCode) => {
    const decision = decide(message);
    expect(decision.retryable).toBe(retryable);
    expect(decision.statusCode).toBe(statusCode);
  });
});

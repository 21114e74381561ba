/**
 * Manual approvals: a job whose approval policy is `manual` is parked when its agent asks for a
 * permission (state `awaiting-approval`, holding no worker or flow-control slot) until a person
 * answers the ask (`approve` / `reject`) or its approval timeout passes. The answer is one key per
 * ask (QueueKeys.approval), set once: by the producer that approves or rejects it, or by the worker
 * that finds the ask timed out; whoever comes second reads the answer that holds.
 */
import type { Redis } from "ioredis";
import { z } from "zod";
import type { QueueKeys } from "./keys.js";

/** The answer to one manual ask. */
export const Decision = z.object({
  /** `once`: this ask; `always`: this and every ask it covers, for the rest of the job; `reject`. */
  answer: z.enum(["once", "always", "reject"]),
  /** Who answered (a person's name, or `timeout`). */
  by: z.string(),
  at: z.string(),
  /** What the person said with a reject (the agent is told). */
  message: z.string().optional(),
});
export type Decision = z.infer<typeof Decision>;

/** How long an answer is kept after its ask timed out (the resumed attempt reads it well before). */
const DECISION_KEEP_MS = 7 * 86_400_000;

/**
 * Sets the answer to an ask unless it has one. With ARGV[4] "1", only while the job's record says
 * it is awaiting approval of that very ask. KEYS: record, answer. ARGV: ask ID, answer JSON, ttl
 * ms, check record ("1"/"0"). Returns -1 when the record does not wait on that ask, else the
 * answer that holds (the one given, or the one set before).
 */
const DECIDE = `
if ARGV[4] == '1' then
  local raw = redis.call('GET', KEYS[1])
  if not raw then return -1 end
  local ok, record = pcall(cjson.decode, raw)
  if not ok or type(record) ~= 'table' or record.state ~= 'awaiting-approval' or type(record.approval) ~= 'table' or record.approval.id ~= ARGV[1] then return -1 end
end
local existing = redis.call('GET', KEYS[2])
if existing then return existing end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return ARGV[2]
`;

/**
 * Answers an ask once. Returns the answer that holds (the one given, or an earlier one: compare),
 * or null when `checkRecord` is set and the job's record does not wait on that ask.
 */
export async function decide(
  redis: Redis,
  keys: QueueKeys,
  jobId: string,
  ask: { id: string; timeoutAt: string },
  decision: Decision,
  checkRecord: boolean,
): Promise<Decision | null> {
  const keepMs = Math.max(Date.parse(ask.timeoutAt) - Date.now(), 0) + DECISION_KEEP_MS;
  const reply = await redis.eval(
    DECIDE,
    2,
    keys.result(jobId),
    keys.approval(jobId, ask.id),
    ask.id,
    JSON.stringify(decision),
    keepMs,
    checkRecord ? "1" : "0",
  );
  if (reply === -1) return null;
  return Decision.parse(JSON.parse(String(reply)));
}

/** The answer to an ask, if it has one. */
export async function readDecision(
  redis: Redis,
  keys: QueueKeys,
  jobId: string,
  askId: string,
): Promise<Decision | null> {
  const raw = await redis.get(keys.approval(jobId, askId));
  return raw === null ? null : Decision.parse(JSON.parse(raw));
}

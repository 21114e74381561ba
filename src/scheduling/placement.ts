import type { Redis } from "ioredis";
import type { QueueKeys } from "../shared/keys.js";
import type { Task } from "../shared/task.js";

export interface Placement {
  /** The job this one runs after (and whose session it continues). */
  after?: string;
  thread?: string;
}

/**
 * Puts a follow-up at the end of its thread, atomically: a job started fresh is the root of
 * thread `job:<id>`; `session: S` names thread `ses:S` (or the thread of the job that opened S).
 * The place is kept (`placed:<job>`): placing the same job again — a re-submission after a
 * crash between placing and adding — finds its earlier place instead of queueing behind
 * itself. A job only ever runs after one placed before it, so a thread cannot form a cycle.
 */
const PLACE = `
local S, job, cont, session, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local threadOf, tail, sessionThread, now = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local rcall = redis.call
local function set(key, value)
  if ttl > 0 then rcall('SET', key, value, 'PX', ttl) else rcall('SET', key, value) end
end
local placed = rcall('GET', S .. 'placed:' .. job)
if placed then
  return {rcall('GET', threadOf .. job) or '', string.match(placed, '^(.-)\\t') or ''}
end
local thread
if cont ~= '' then thread = rcall('GET', threadOf .. cont) or ('job:' .. cont)
else thread = rcall('GET', sessionThread .. session) or ('ses:' .. session) end
local previous = rcall('GET', tail .. thread)
set(tail .. thread, job)
set(threadOf .. job, thread)
local after = ''
if previous and previous ~= job then after = previous
elseif cont ~= '' then after = cont
elseif string.sub(thread, 1, 4) == 'job:' then after = string.sub(thread, 5) end
if after == job then after = '' end
set(S .. 'placed:' .. job, after .. '\\t' .. now)
return {thread, after}
`;

export async function placeInThread(
  redis: Redis,
  keys: QueueKeys,
  task: Task,
  jobId: string,
  ttlMs: number,
): Promise<Placement> {
  if (!task.continue && !task.session) return {};
  const [thread, after] = (await redis.eval(
    PLACE,
    1,
    `${keys.sched}seq`,
    keys.sched,
    jobId,
    task.continue ?? "",
    task.continue ? "" : task.session!,
    ttlMs,
    keys.threadOf(""),
    keys.threadTail(""),
    keys.sessionThread(""),
    Date.now(),
  )) as [string, string];
  return { thread, ...(after ? { after } : {}) };
}

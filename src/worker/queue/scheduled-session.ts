import type { Redis } from "ioredis";
import { isFinal } from "../../shared/job-state.js";
import type { ResultStore } from "../../shared/result-store.js";
import { firingDueAt, scheduleKeys } from "../../shared/schedule.js";

/** How long a firing remembers the firing before it (longer than BullMQ keeps any job). */
const AFTER_TTL_MS = 30 * 86_400_000;

/**
 * The firing before this one, assigned once (at the firing's first pickup) and the same at every
 * later pickup; also returns the schedule's stored session. KEYS: schedule hash, this firing's
 * `after` key. ARGV: job ID, ttl ms. Returns { previous job ID or "", stored session or "" }.
 */
const PREVIOUS = `
local mine = redis.call('GET', KEYS[2])
if not mine then
  mine = redis.call('HGET', KEYS[1], 'last') or ''
  redis.call('HSET', KEYS[1], 'last', ARGV[1])
  redis.call('SET', KEYS[2], mine, 'PX', ARGV[2])
end
return { mine, redis.call('HGET', KEYS[1], 'session') or '' }
`;

/**
 * What a job of a schedule runs with, called on every pickup before its payload is read; any
 * other job's data comes back as it is, without a Redis call.
 * - A firing BullMQ made carries the schedule's template: its `enqueuedAt` becomes the time the
 *   firing was due.
 * - A firing of a `sameSession` schedule runs after the firing that started before it (`after`:
 *   the scheduling core's chain gate holds it until that one has ended) and in that firing's
 *   session (`session`), or the schedule's last known one; the first firing opens a new session.
 *   The session is stored with the schedule as soon as a later firing sees it.
 */
export async function scheduledFiring(
  store: ResultStore,
  redis: Redis,
  job: { id?: string | undefined; data: unknown },
): Promise<unknown> {
  const data = job.data as {
    schedule?: unknown;
    sameSession?: unknown;
    enqueuedAt?: unknown;
    session?: unknown;
    after?: unknown;
  } | null;
  if (!data || typeof data.schedule !== "string" || !job.id) return job.data;
  const jobId = job.id;
  const firing: Record<string, unknown> = { ...data, enqueuedAt: firingDueAt(jobId, data.schedule) ?? data.enqueuedAt };
  if (data.sameSession !== true || data.session !== undefined) return firing;
  const keys = scheduleKeys(store.keys, data.schedule);
  const [previous, stored] = (await redis.eval(PREVIOUS, 2, keys.schedule, keys.after(jobId), jobId, AFTER_TTL_MS)) as [
    string,
    string,
  ];
  if (!previous || previous === jobId) return firing; // the schedule's first firing: a new session
  const before = await store.get(previous);
  // A firing waiting to be let in has no record yet, only its job.
  const ended = before ? isFinal(before.state) : !(await redis.exists(`${store.keys.bull}${previous}`));
  let session = before?.sessionId ?? (stored || undefined);
  if (session && session !== stored && before?.sessionId === session)
    await redis.hset(keys.schedule, "session", session);
  // A session whose transcript the queue no longer holds (it expired) cannot be continued: begin anew.
  if (session && ended && !(await redis.exists(store.keys.sessionExport(session)))) session = undefined;
  if (session) return { ...firing, session, after: previous };
  // No session yet, and the firing before may still open one: wait for it (then look again).
  return ended ? firing : { ...firing, after: previous };
}

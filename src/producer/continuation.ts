import type { Redis } from "ioredis";
import { givenSessionThread, rootOfThread, rootThread, type QueueKeys } from "../shared/keys.js";
import type { Task } from "../shared/task.js";

export interface Placement {
  /** The job this one runs after (and whose session it continues). */
  after?: string;
  thread?: string;
}

/**
 * Puts a continuing task at the end of its thread: the chain of jobs that share one session.
 * A job started fresh is the root of thread `job:<id>`; `session: S` names thread `ses:S`. Each
 * follow-up runs after the thread's previous tail (set atomically with SET … GET, so follow-ups
 * submitted at once by several producers still form one chain), in the order submitted.
 * Callers have checked that a `continue` names a job that exists or comes earlier in the same
 * submission (see follow-ups.ts): it may be in the very chunk still being written.
 */
export async function placeInThread(
  redis: Redis,
  keys: QueueKeys,
  task: Task,
  jobId: string,
  ttlMs: number,
): Promise<Placement> {
  if (!task.continue && !task.session) return {};
  let thread: string;
  if (task.continue) {
    thread = (await redis.get(keys.threadOf(task.continue))) ?? rootThread(task.continue);
  } else {
    // A session a job of ours opened belongs to that job's thread, so `session: S` and
    // `continue: <the job that opened S>` queue up in one order.
    thread = (await redis.get(keys.sessionThread(task.session!))) ?? givenSessionThread(task.session!);
  }
  const px = ttlMs > 0 ? (["PX", ttlMs] as const) : ([] as const);
  const previous = (await redis.call("SET", keys.threadTail(thread), jobId, ...px, "GET")) as string | null;
  await redis.call("SET", keys.threadOf(jobId), thread, ...px);
  // A retried enqueue of the same key finds itself at the tail: keep the chain, never wait on itself.
  // With no tail yet, a follow-up waits for the job it continues, or the job that began the thread.
  const root = rootOfThread(thread);
  const after = previous && previous !== jobId ? previous : (task.continue ?? root);
  return { thread, ...(after && after !== jobId ? { after } : {}) };
}

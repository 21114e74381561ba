import { randomUUID } from "node:crypto";
import { getNextMillis, type JobSchedulerJson, type JobsOptions, type Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { Config } from "../shared/config.js";
import { parseDuration } from "../shared/duration.js";
import { InputError, NotFoundError } from "../shared/errors.js";
import type { QueueKeys } from "../shared/keys.js";
import { scheduleKeys, ScheduleName } from "../shared/schedule.js";
import { toPayload, type JobPayload, type Task } from "../shared/task.js";
import { DEFAULT_GROUP, type Scheduler } from "../scheduling/scheduler.js";
import { addJobs } from "./add-jobs.js";
import type { DispatchTask, EnqueueReceipt } from "./dispatcher.js";

/** What a schedule is: when it fires, and the task each firing runs. */
export interface ScheduleSpec {
  /** Letters, digits, `_ . -` (≤ 100); adding a schedule of a name that exists replaces it. */
  name: string;
  /** A cron pattern (5 fields, or 6 with seconds first), e.g. "0 2 * * *"; give this or `every`. */
  cron?: string;
  /** The IANA time zone `cron` is read in, e.g. "Europe/Paris". @defaultValue UTC */
  tz?: string;
  /** Fire every this long: ms, or a duration string ("15m"); at least 1 s. Give this or `cron`. */
  every?: number | string;
  /** Run each firing in the session of the firing before it, one firing at a time. */
  sameSession?: boolean;
  /**
   * The task every firing runs: the fields of `enqueue`, except `id`, `continue`, `session`,
   * `delay`, `group` and `worktree` (a firing gets its own job ID and starts when it is due).
   */
  task: DispatchTask;
}

/** A schedule as stored. */
export interface ScheduleInfo {
  name: string;
  cron: string | null;
  tz: string | null;
  /** Milliseconds between firings (an `every` schedule). */
  every: number | null;
  sameSession: boolean;
  /** When the next firing is due (ISO), if one is planned. */
  next: string | null;
  /** Firings BullMQ has let start so far (not counting `run`). */
  firings: number;
  /** The session the firings of a `sameSession` schedule run in, once one opened it. */
  sessionId: string | null;
  /** The task each firing runs, as the job carries it. */
  task: Omit<JobPayload, "enqueuedAt" | "v" | "schedule" | "sameSession">;
}

export interface ScheduleDeps {
  queue: Queue;
  redis: Redis;
  scheduler: Scheduler;
  keys: QueueKeys;
  config: Config;
  jobName: string;
  /** Validates a task as `enqueue` does (InputError naming the field). */
  parse(input: DispatchTask): Task;
  /** A task's BullMQ job options, as `enqueue` gives them. */
  jobOptions(task: Task, jobId: string): JobsOptions & { jobId: string };
}

/** Task fields a schedule refuses, and why. */
const NOT_IN_SCHEDULES: Record<string, string> = {
  id: "each firing gets its own job ID",
  continue: "a firing continues no earlier job (give sameSession / --same-session to continue the firing before)",
  session: "firings run in a new session each, or in the previous firing's (sameSession / --same-session)",
  delay: "a firing starts when it is due (cron / every)",
  group: "firings are not part of a fair-share group",
  worktree: "a firing's job ID (repeat:<name>:<time>) is no branch name",
};

const MIN_EVERY_MS = 1_000;

/**
 * Recurring tasks, on BullMQ's job schedulers: `dispatcher.schedules.add/list/get/remove/run`.
 * Each firing is an ordinary job (status, webhooks, result record with `schedule` set).
 */
export class Schedules {
  constructor(private readonly deps: () => Promise<ScheduleDeps>) {}

  /**
   * Validates (InputError naming the field) and stores a schedule, replacing one of that name.
   * An `every` schedule fires first at once, a `cron` one at its next time.
   */
  async add(spec: ScheduleSpec): Promise<ScheduleInfo & { replaced: boolean }> {
    const deps = await this.deps();
    const name = checkName(spec.name);
    const repeat = repeatOptions(spec);
    if (typeof spec.task !== "object" || spec.task === null)
      throw new InputError("task: must be an object with at least a prompt");
    const refused = Object.keys(spec.task).filter(
      (field) => field in NOT_IN_SCHEDULES && (spec.task as Record<string, unknown>)[field] !== undefined,
    );
    if (refused.length)
      throw new InputError(refused.map((f) => `task.${f}: not in a schedule: ${NOT_IN_SCHEDULES[f]}`).join("; "));
    if (spec.sameSession !== undefined && typeof spec.sameSession !== "boolean")
      throw new InputError("sameSession: must be true or false");
    const task = deps.parse(spec.task);
    const data: JobPayload = {
      ...toPayload(task, { timeoutMs: deps.config.jobTimeoutMs }),
      schedule: name,
      ...(spec.sameSession ? { sameSession: true } : {}),
    };
    const { jobId: _, delay: __, ...opts } = deps.jobOptions(task, name);
    const replaced = (await deps.queue.getJobScheduler(name)) !== undefined;
    // A new schedule of an old name begins afresh (its firings' session too).
    if (!replaced) await deps.redis.del(scheduleKeys(deps.keys, name).schedule);
    await deps.queue.upsertJobScheduler(name, repeat, { name: deps.jobName, data, opts });
    return { ...(await this.get(name))!, replaced };
  }

  /** Every schedule of the queue, by name. */
  async list(): Promise<ScheduleInfo[]> {
    const deps = await this.deps();
    const all = await deps.queue.getJobSchedulers(0, -1, true);
    const infos = await Promise.all(all.map((s) => this.info(deps, s)));
    return infos.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The schedule of this name, or null. */
  async get(name: string): Promise<ScheduleInfo | null> {
    const deps = await this.deps();
    const found = await deps.queue.getJobScheduler(checkName(name));
    return found ? this.info(deps, found) : null;
  }

  /** Removes a schedule and its next firing (one already running finishes). NotFoundError if there is none. */
  async remove(name: string): Promise<void> {
    const deps = await this.deps();
    if (!(await deps.queue.removeJobScheduler(checkName(name)))) throw unknown(name, deps);
    await deps.redis.del(scheduleKeys(deps.keys, name).schedule);
  }

  /** Fires a schedule once now, besides its plan: an ordinary job of its task. NotFoundError if there is none. */
  async run(name: string): Promise<EnqueueReceipt> {
    const deps = await this.deps();
    const found = await deps.queue.getJobScheduler(checkName(name));
    const template = found?.template;
    if (!template?.data) throw unknown(name, deps);
    const jobId = `${name}-run-${randomUUID()}`;
    const data: JobPayload = { ...(template.data as JobPayload), enqueuedAt: new Date().toISOString() };
    await addJobs(deps.queue, deps.scheduler, [
      { name: deps.jobName, data, opts: { ...template.opts, jobId }, group: DEFAULT_GROUP },
    ]);
    return { jobId, duplicate: false };
  }

  private async info(deps: ScheduleDeps, s: JobSchedulerJson): Promise<ScheduleInfo> {
    const data = (s.template?.data ?? {}) as Partial<JobPayload>;
    const { enqueuedAt: _, v: __, schedule: ___, sameSession, ...task } = data;
    const sessionId = sameSession ? await deps.redis.hget(scheduleKeys(deps.keys, s.key).schedule, "session") : null;
    return {
      name: s.key,
      cron: s.pattern ?? null,
      tz: s.tz ?? null,
      every: s.every ?? null,
      sameSession: sameSession === true,
      next: s.next ? new Date(s.next).toISOString() : null,
      // BullMQ counts the firing it has planned next among its iterations.
      firings: Math.max(0, (s.iterationCount ?? 0) - (s.next ? 1 : 0)),
      sessionId,
      task: task as ScheduleInfo["task"],
    };
  }
}

function checkName(name: unknown): string {
  const parsed = ScheduleName.safeParse(name);
  if (!parsed.success) throw new InputError(`name: ${parsed.error.issues[0]?.message ?? "is not a schedule name"}`);
  return parsed.data;
}

const unknown = (name: string, deps: ScheduleDeps) =>
  new NotFoundError(`no schedule named "${name}" in queue "${deps.queue.name}"`);

/** BullMQ's repeat options for a spec: exactly one of a valid cron (in a valid time zone) or an interval. */
function repeatOptions(spec: ScheduleSpec): { pattern: string; tz?: string } | { every: number } {
  const hasCron = spec.cron !== undefined;
  const hasEvery = spec.every !== undefined;
  if (hasCron && hasEvery) throw new InputError("cron: give either cron or every, not both");
  if (!hasCron && !hasEvery)
    throw new InputError('cron: give cron (e.g. "0 2 * * *") or every (e.g. 15m): when the schedule fires');
  if (hasEvery) {
    if (spec.tz !== undefined) throw new InputError("tz: only with cron (an every schedule has no time of day)");
    let every: number;
    try {
      every = parseDuration(spec.every!);
    } catch (error) {
      throw new InputError(`every: ${(error as Error).message}`);
    }
    if (every < MIN_EVERY_MS) throw new InputError(`every: must be at least 1s (got ${every} ms)`);
    return { every };
  }
  const pattern = typeof spec.cron === "string" ? spec.cron.trim() : "";
  if (!pattern) throw new InputError('cron: must be a cron pattern, e.g. "0 2 * * *"');
  if (spec.tz !== undefined) {
    try {
      new Intl.DateTimeFormat("en", { timeZone: spec.tz });
    } catch {
      throw new InputError(`tz: "${String(spec.tz)}" is not a time zone (use an IANA name, e.g. Europe/Paris)`);
    }
  }
  // BullMQ's own reading of the pattern: what it accepts here, it can plan.
  let next: number | undefined;
  try {
    next = getNextMillis(Date.now(), { pattern, ...(spec.tz ? { tz: spec.tz } : {}) });
  } catch (error) {
    throw new InputError(`cron: "${pattern}" is not a cron pattern: ${(error as Error).message}`);
  }
  if (!next) throw new InputError(`cron: "${pattern}" never fires`);
  return { pattern, ...(spec.tz ? { tz: spec.tz } : {}) };
}

/**
 * Keeps the worker's opencode server alive and healthy: spawns or attaches, health checks, wedged
 * or dead servers, recycling by jobs or memory, and the intake paused while a server is replaced.
 * One class because these all decide when the one current server changes.
 */
import { readFile } from "node:fs/promises";
import { DelayedError, WaitingError, type Job } from "bullmq";
import type { Logger } from "../../shared/logger.js";
import { createClient, type OpencodeClient } from "./opencode-client.js";
import { checkHealth, type OpencodeServer } from "./opencode-server.js";
import { onTrouble } from "./event-hub.js";
import { existingWorktree } from "../session/worktree.js";

/** What the keeper needs of the BullMQ worker: stop and restart fetching jobs, abort a running one. */
export interface Intake {
  pause(): Promise<void>;
  resume(): void;
  cancelJob(jobId: string, reason: string): void;
}

export interface KeeperOptions {
  /** Starts a server (spawned or attached). */
  start(): Promise<OpencodeServer>;
  /** Whether servers are spawned by this worker (only those are watched and recycled). */
  spawned: boolean;
  /** Replace the server after this many jobs (0: never) or once its RSS passes `rssBytes`. */
  recycle: { jobs: number; rssBytes?: number };
  log: Logger;
  /**
   * Health checks of a spawned server (GET /global/health), each bounded by `timeoutMs`: every
   * `intervalMs`, and at once after a job stalled. A server that fails `failures` periodic checks in
   * a row, or the check after a stall, is alive but wedged: it is treated as dead (its jobs are
   * aborted and retried, it is killed and replaced). Unset: no checks.
   */
  health?: { intervalMs: number; timeoutMs: number; failures: number };
  /** Called whenever the server is replaced, whatever the reason. */
  onReplaced?(why: "died" | "recycled"): void;
  /** A replacement server could not be started: the worker should stop. */
  onFatal(error: unknown): void;
}

type Processor<R> = (job: Job, token?: string, signal?: AbortSignal) => Promise<R>;

/**
 * Keeps the worker's opencode server alive and fresh. A spawned server that dies is replaced at
 * once (the jobs it was running are aborted with "server-died" and retried); one that has run
 * `recycle.jobs` jobs or grown past `recycle.rssBytes` is replaced once no job runs on it. While a
 * server is replaced the worker takes no new jobs, and a job that was fetched just before waits
 * for the new server.
 */
export class ServerKeeper {
  private current: OpencodeServer;
  private currentClient: OpencodeClient;
  /** The server being replaced on purpose: its exit is not a death. */
  private retiring: OpencodeServer | undefined;
  private replacing: Promise<void> | undefined;
  private generation = 0;
  private jobsOnServer = 0;
  private running = 0;
  /** Running jobs (not those waiting for a replacement) and the generation of their server. */
  private readonly runningOn = new Map<string, number>();
  private idle: (() => void)[] = [];
  private intake: Intake | undefined;
  private closed = false;
  /** A health check after a stall: no job starts until it has answered. */
  private suspect: Promise<void> | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private failedChecks = 0;
  private offTrouble: () => void = () => undefined;

  static async start(opts: KeeperOptions): Promise<ServerKeeper> {
    return new ServerKeeper(opts, await opts.start());
  }

  private constructor(
    private readonly opts: KeeperOptions,
    server: OpencodeServer,
  ) {
    this.current = server;
    this.currentClient = createClient(server);
    this.watch(server);
    this.listenForStalls();
    this.scheduleHealth();
  }

  server(): OpencodeServer {
    return this.current;
  }

  client(): OpencodeClient {
    return this.currentClient;
  }

  /** Jobs in the processor now (not those waiting for a replacement server). */
  runningJobs(): number {
    return this.running;
  }

  /** Connects the BullMQ worker, once it exists. */
  attach(intake: Intake): void {
    this.intake = intake;
  }

  /**
   * Wraps a processor: holds jobs while the server is replaced, counts those that ran (not those
   * sent back to the queue), recycles when due.
   */
  wrap<R>(processor: Processor<R>): Processor<R> {
    return async (job, token, signal) => {
      while (this.replacing || this.suspect) await (this.replacing ?? this.suspect)!.catch(() => undefined);
      const generation = this.generation;
      if (job.id) this.runningOn.set(job.id, generation);
      this.running += 1;
      // A job sent back to the queue (waiting for its turn, a provider hold, a hand-back) did not run here.
      let ran = true;
      try {
        return await processor(job, token, signal);
      } catch (error) {
        if (error instanceof DelayedError || error instanceof WaitingError) ran = false;
        throw error;
      } finally {
        if (job.id) this.runningOn.delete(job.id);
        this.running -= 1;
        if (ran && generation === this.generation) this.jobsOnServer += 1;
        if (this.running === 0) this.idle.splice(0).forEach((resolve) => resolve());
        if (ran && generation === this.generation) await this.disposeWorktree(job);
        void this.recycleIfDue();
      }
    };
  }

  /**
   * opencode keeps state for every directory it is asked about (watchers, LSP and MCP processes)
   * until the server ends; every `--worktree` job is a new directory. Its instance is disposed
   * when the job ends (a follow-up in the same worktree gets a fresh one).
   */
  private async disposeWorktree(job: Job): Promise<void> {
    const data = job.data as { worktree?: boolean; directory?: string } | undefined;
    if (!data?.worktree || !data.directory || !job.id) return;
    const directory = await existingWorktree(data.directory, job.id);
    if (!directory) return;
    try {
      const answer = await this.currentClient.instance.dispose({ directory }, { signal: AbortSignal.timeout(5_000) });
      if (answer.response?.ok === false) throw new Error(`HTTP ${answer.response.status}`);
      this.opts.log.debug({ directory }, "disposed the opencode instance of the job's worktree");
    } catch (error) {
      this.opts.log.warn({ err: error, directory }, "could not dispose the opencode instance of the job's worktree");
    }
  }

  private watch(server: OpencodeServer): void {
    if (!this.opts.spawned) return;
    const generation = this.generation;
    void server.exited.then((exit) => {
      if (this.closed || server !== this.current || server === this.retiring) return;
      this.opts.log.error({ ...exit }, "opencode server died; restarting it");
      this.lost(generation);
    });
  }

  /** The server of `generation` is gone or wedged: its jobs are aborted (and retried), it is replaced. */
  private lost(generation: number): void {
    // Only the jobs that ran on it: those waiting for a replacement have not started.
    for (const [jobId, on] of this.runningOn) if (on === generation) this.intake?.cancelJob(jobId, "server-died");
    void this.replace("died");
  }

  /** One health check of the current server; false when it does not answer healthy in time. */
  private async healthy(): Promise<{ ok: boolean; reason?: string }> {
    const health = this.opts.health!;
    const result = await checkHealth(this.current, AbortSignal.timeout(health.timeoutMs));
    return result.ok ? { ok: true } : { ok: false, reason: result.reason };
  }

  private scheduleHealth(): void {
    const health = this.opts.health;
    if (!this.opts.spawned || !health || this.closed) return;
    this.healthTimer = setTimeout(() => void this.periodicCheck(), health.intervalMs);
    this.healthTimer.unref();
  }

  private async periodicCheck(): Promise<void> {
    const generation = this.generation;
    if (!this.replacing && !this.suspect) {
      const result = await this.healthy();
      if (!this.closed && !this.replacing && generation === this.generation) {
        this.failedChecks = result.ok ? 0 : this.failedChecks + 1;
        if (this.failedChecks >= this.opts.health!.failures) {
          this.opts.log.error(
            { reason: result.reason, checks: this.failedChecks },
            "opencode server fails its health checks; replacing it",
          );
          this.lost(generation);
        }
      }
    }
    this.scheduleHealth();
  }

  /**
   * A stalled job may mean a wedged server: it is checked at once, before another job goes there.
   * An aborted session that stays busy (opencode's abort is cooperative; its shell commands may
   * keep running) gets the server recycled once its other jobs are done.
   */
  private listenForStalls(): void {
    this.offTrouble();
    this.offTrouble = onTrouble(this.currentClient, (trouble) => {
      if (trouble === "stall") return this.checkAfterStall();
      if (!this.opts.spawned || this.closed || this.replacing) return;
      this.opts.log.warn(
        "an aborted session did not go idle; recycling the opencode server once its running jobs are done",
      );
      void this.replace("recycled");
    });
  }

  private checkAfterStall(): void {
    if (!this.opts.spawned || !this.opts.health || this.closed || this.replacing || this.suspect) return;
    const generation = this.generation;
    this.suspect = (async () => {
      const result = await this.healthy();
      if (result.ok || this.closed || this.replacing || generation !== this.generation) return;
      this.opts.log.error(
        { reason: result.reason },
        "a job stalled and the opencode server does not answer its health check; replacing it",
      );
      this.lost(generation);
    })().finally(() => (this.suspect = undefined));
  }

  private async recycleIfDue(): Promise<void> {
    if (!this.opts.spawned || this.closed || this.replacing) return;
    const { jobs, rssBytes } = this.opts.recycle;
    let why: Record<string, unknown> | undefined;
    if (jobs > 0 && this.jobsOnServer >= jobs) why = { jobs: this.jobsOnServer, limit: jobs };
    else if (rssBytes !== undefined && this.current.pid !== undefined) {
      const rss = await readRss(this.current.pid);
      if (rss !== undefined && rss > rssBytes) why = { rssBytes: rss, limit: rssBytes };
    }
    if (why && !this.closed && !this.replacing) {
      this.opts.log.info(why, "recycling the opencode server once its running jobs are done");
      void this.replace("recycled");
    }
  }

  /** Replaces the server: pauses intake, (when recycling) waits for running jobs, swaps, resumes. */
  private replace(why: "died" | "recycled"): Promise<void> {
    this.replacing ??= (async () => {
      await this.intake?.pause();
      if (why === "recycled") await this.drained();
      if (this.closed) return;
      const old = this.current;
      this.retiring = old;
      await old
        .close()
        .catch((error: unknown) => this.opts.log.warn({ err: error }, "error while stopping the old opencode server"));
      try {
        this.current = await this.opts.start();
      } catch (error) {
        this.opts.log.fatal({ err: error }, "could not start a new opencode server; stopping the worker");
        this.opts.onFatal(error);
        return;
      }
      this.currentClient = createClient(this.current);
      this.listenForStalls();
      this.generation += 1;
      this.jobsOnServer = 0;
      this.failedChecks = 0;
      this.retiring = undefined;
      this.watch(this.current);
      this.opts.onReplaced?.(why);
      this.opts.log.info({ opencode: this.current.url, why }, "opencode server replaced");
    })().finally(() => {
      this.replacing = undefined;
      if (!this.closed) this.intake?.resume();
    });
    return this.replacing;
  }

  private drained(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Stops watching and recycling (the worker is shutting down); the server keeps running. */
  stopWatching(): void {
    this.closed = true;
    clearTimeout(this.healthTimer);
    this.offTrouble();
    this.idle.splice(0).forEach((resolve) => resolve());
  }

  /** Stops watching and recycling, waits for a replacement in progress, stops the server. */
  async close(): Promise<void> {
    this.stopWatching();
    await this.replacing?.catch(() => undefined);
    await this.current.close();
  }
}

/** Resident memory of a process in bytes (Linux: VmRSS in /proc/<pid>/status), or undefined. */
export async function readRss(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

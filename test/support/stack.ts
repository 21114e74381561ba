/**
 * A whole dispatch stack for a test: the fake model, a hermetic opencode environment, a unique
 * queue on the shared Redis, a Dispatcher, and (optionally) an in-process worker spawning a real
 * `opencode serve`. `close()` tears everything down and deletes the queue's keys. Its fake model is
 * reset before each test (per-test.ts), so a test configures the model it needs in the test itself.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, inject } from "vitest";
import { Redis } from "ioredis";
import { loadConfig, type Config } from "../../src/shared/config";
import { createLogger, type Logger } from "../../src/shared/logger";
import { Dispatcher } from "../../src/producer/dispatcher";
import { startWorker, type RunningWorker } from "../../src/worker/worker";
import { startCli, type CliProcess } from "./cli";
import { startFakeModel, type FakeModel } from "./fake-model";
import { registerFakeModel } from "./fake-registry";
import { makeOpencodeEnv, type OpencodeEnv } from "./opencode-env";

export interface Stack {
  queue: string;
  redisUrl: string;
  config: Config;
  fake: FakeModel;
  opencode: OpencodeEnv;
  dispatcher: Dispatcher;
  /** Environment for a child process (CLI or worker) on this stack. */
  childEnv: NodeJS.ProcessEnv;
  /** `log`: where the worker logs (default: the stack's level, on stderr). */
  startWorker(opts?: {
    concurrency?: number;
    attach?: string;
    recycle?: { jobs?: number; rssBytes?: number };
    log?: Logger;
  }): Promise<RunningWorker>;
  /**
   * Runs `opencode-dispatch worker ARGS` (logging at info) as a child process and resolves once it
   * is ready (its "worker ready" line, or `readyLine`). Killed with SIGKILL by `close()` if still running.
   */
  startCliWorker(args?: string[], opts?: { detached?: boolean; readyLine?: RegExp }): Promise<CliProcess>;
  close(): Promise<void>;
}

/** A lock and stalled-job check short enough that a killed worker's jobs are taken back in seconds. */
export const SHORT_LOCK = { DISPATCH_LOCK_DURATION: "3s", DISPATCH_STALLED_INTERVAL: "1s" };

export async function startStack(opts: { configEnv?: Record<string, string>; redisUrl?: string } = {}): Promise<Stack> {
  const redisUrl = opts.redisUrl ?? inject("redisUrl");
  const queue = `test-${randomUUID().slice(0, 8)}`;
  const fake = await startFakeModel();
  const unregister = registerFakeModel(fake); // reset before each test (per-test.ts)
  const opencode = await makeOpencodeEnv(fake.url);
  const configEnv = {
    REDIS_URL: redisUrl,
    DISPATCH_QUEUE: queue,
    DISPATCH_DATA_DIR: `${opencode.root}/workers`,
    DISPATCH_SHUTDOWN_GRACE: "5s",
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
    ...opts.configEnv,
  };
  const config = loadConfig(configEnv);
  const dispatcher = new Dispatcher({ config });
  const workers: RunningWorker[] = [];
  const cliWorkers: CliProcess[] = [];
  const childEnv = { ...process.env, ...opencode.env, ...configEnv };
  return {
    queue,
    redisUrl,
    config,
    fake,
    opencode,
    dispatcher,
    childEnv,
    async startWorker(workerOpts = {}) {
      const worker = await startWorker({
        config,
        ...workerOpts,
        serverEnv: { ...process.env, ...opencode.env },
        log: workerOpts.log ?? createLogger(config.logLevel, { test: queue }),
      });
      workers.push(worker);
      return worker;
    },
    async startCliWorker(args = [], cliOpts = {}) {
      const worker = startCli(["worker", ...args], {
        env: { ...childEnv, LOG_LEVEL: "info" },
        detached: cliOpts.detached,
      });
      cliWorkers.push(worker);
      await worker.waitFor(cliOpts.readyLine ?? /worker ready/, 90_000);
      return worker;
    },
    async close() {
      await Promise.all(cliWorkers.map((w) => w.stop("SIGKILL")));
      await Promise.all(workers.map((w) => w.close({ graceMs: 0 })));
      await dispatcher.close();
      await deleteQueueKeys(redisUrl, queue);
      unregister();
      await fake.close();
      await opencode.cleanup();
    },
  };
}

export interface UseStackOptions {
  configEnv?: Record<string, string>;
  redisUrl?: string;
  /** Start an in-process worker with these options before the first test. */
  worker?: Parameters<Stack["startWorker"]>[0];
}

/** A stack registered with the enclosing suite: `worker` is the one `UseStackOptions.worker` started. */
export type SuiteStack = Stack & { readonly worker: RunningWorker };

/**
 * The stack of the enclosing describe (or file): started before its first test (with a worker when
 * `worker` is given) and closed after the last. Read it only inside hooks and tests. `options` may
 * be a function, called in that beforeAll: for options known only once an earlier hook ran (a
 * Redis or a receiver the test starts first; register that hook before useStack). (Every
 * stack's fake model is reset before each test: see per-test.ts.)
 */
export function useStack(
  options: UseStackOptions | (() => UseStackOptions | Promise<UseStackOptions>) = {},
): SuiteStack {
  let current: Stack | undefined;
  let worker: RunningWorker | undefined;
  beforeAll(async () => {
    const opts = typeof options === "function" ? await options() : options;
    current = await startStack(opts);
    if (opts.worker) worker = await current.startWorker(opts.worker);
  });
  afterAll(async () => {
    await current?.close();
  });
  return new Proxy({} as SuiteStack, {
    get(_, key) {
      if (!current) throw new Error(`useStack: stack.${String(key)} read before the suite's beforeAll started it`);
      if (key === "worker") {
        if (!worker) throw new Error("useStack: no worker was asked for (give useStack({ worker: {...} }))");
        return worker;
      }
      return Reflect.get(current, key);
    },
  });
}

export async function deleteQueueKeys(redisUrl: string, queue: string): Promise<void> {
  const redis = new Redis(redisUrl);
  try {
    const keys = await redis.keys(`dispatch:{${queue}}:*`);
    if (keys.length) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}

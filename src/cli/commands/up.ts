import { join } from "node:path";
import { Command } from "commander";
import { startEmbeddedRedis } from "../embedded-redis.js";
import { exitWith, intOption, withConnection } from "../options.js";
import { runWorkerUntilSignal, withWorkerOptions, type WorkerFlags } from "./worker.js";

interface UpFlags extends WorkerFlags {
  redisPort: number;
  dataDir: string;
}

export function upCommand(): Command {
  const command = new Command("up").description(
    "run everything on this machine: a local redis-server with AOF (unless REDIS_URL or --redis is set) and one worker",
  );
  withWorkerOptions(command)
    .option(
      "--redis-port <port>",
      "port for the local Redis (the next free one if taken)",
      intOption("--redis-port", 1, 65_535),
      6379,
    )
    .option("--data-dir <path>", "where the local Redis keeps its AOF files", join(".opencode-dispatch", "redis"));
  return withConnection(command).action(
    exitWith(async (flags: UpFlags) => {
      // --redis, or REDIS_URL through it: use that Redis and run just the worker.
      if (flags.redis) return runWorkerUntilSignal(flags);
      const redis = await startEmbeddedRedis(flags.dataDir, flags.redisPort);
      process.stderr.write(
        `Redis: ${redis.url} (AOF in ${flags.dataDir}). Enqueue with:\n` +
          `  REDIS_URL=${redis.url} npx opencode-dispatch enqueue "hello" --wait\n`,
      );
      return runWorkerUntilSignal({ ...flags, redis: redis.url }, () => redis.close());
    }),
  );
}

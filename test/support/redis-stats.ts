/** What a Redis server says it has done, for tests that count commands (INFO commandstats, stats). */
import type { Redis } from "ioredis";

/** Redis's count of calls of a command so far. */
export async function commandCalls(redis: Redis, command: string): Promise<number> {
  const info = await redis.info("commandstats");
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
}

/** SCAN and KEYS calls so far (the dashboard must never make them). */
export async function scansSoFar(redis: Redis): Promise<number> {
  return (await commandCalls(redis, "scan")) + (await commandCalls(redis, "keys"));
}

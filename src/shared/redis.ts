import { Redis, type RedisOptions } from "ioredis";
import { RedisUnavailableError, redactUrl } from "./errors.js";

/**
 * Connection roles, after BullMQ's production guide:
 * - `producer`: fails fast while Redis is away (no offline queue), reconnects in the background;
 * - `worker`: waits for Redis forever (`maxRetriesPerRequest: null`), as BullMQ requires for
 *   blocking connections, so a Redis restart never crashes a worker;
 * - `subscriber`: like `worker`, for pub/sub.
 */
export type RedisRole = "producer" | "worker" | "subscriber";

function optionsFor(role: RedisRole): RedisOptions {
  const retryStrategy = (times: number) => Math.min(100 * 2 ** Math.min(times, 6), 5_000);
  if (role === "producer") {
    return {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 5_000,
      retryStrategy,
    };
  }
  return { lazyConnect: true, maxRetriesPerRequest: null, connectTimeout: 10_000, retryStrategy };
}

/**
 * Opens a connection and waits until it is ready, or throws RedisUnavailableError (the URL in the
 * message has its password masked). `rediss://` URLs use TLS; ACL users come from the URL.
 */
export async function connectRedis(
  url: string,
  role: RedisRole,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<Redis> {
  const redis = new Redis(url, optionsFor(role));
  let lastError: Error | undefined;
  const onError = (error: Error) => {
    lastError = error;
  };
  redis.on("error", onError);
  const timeoutMs = opts.timeoutMs ?? 5_000;
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (why: string) => reject(new RedisUnavailableError(`Redis at ${redactUrl(url)} is unreachable: ${why}`));
      const timer = setTimeout(() => fail(lastError?.message ?? `no answer within ${timeoutMs} ms`), timeoutMs);
      const onAbort = () => fail("aborted");
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      redis.once("ready", () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      redis.connect().catch((error: Error) => {
        lastError = error;
        // ioredis keeps retrying; only a auth/protocol error is worth failing on at once.
        if (/NOAUTH|WRONGPASS|ERR/.test(error.message)) {
          clearTimeout(timer);
          fail(error.message);
        }
      });
    });
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  return redis;
}

/** Quits politely, then disconnects; safe to call on a connection that is already gone. */
export async function closeRedis(redis: Redis | undefined): Promise<void> {
  if (!redis || redis.status === "end") return;
  try {
    await Promise.race([redis.quit(), new Promise((resolve) => setTimeout(resolve, 1_000))]);
  } catch {
    // already closing or not connected
  }
  redis.disconnect();
}

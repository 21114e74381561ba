import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
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
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 5_000,
      retryStrategy,
    };
  }
  return { maxRetriesPerRequest: null, connectTimeout: 10_000, retryStrategy };
}

/** `redis+cluster://` and `rediss+cluster://` URLs name a Redis Cluster (see openRedis). */
export function isClusterUrl(url: string): boolean {
  return /^rediss?\+cluster:\/\//i.test(url);
}

/**
 * A client for a URL, not yet connected. `redis://[user:pass@]host:port[/db]` and `rediss://`
 * (TLS) give a plain connection; `redis+cluster://[user:pass@]host:port[?nodes=h:p,h:p]` and
 * `rediss+cluster://` give an ioredis Cluster seeded with that node (and any extra `nodes`); it
 * discovers the other masters itself. A Cluster is returned typed as `Redis`: it serves the same
 * commands, pub/sub and `quit`/`disconnect`, and BullMQ accepts either.
 */
export function openRedis(url: string, role: RedisRole): Redis {
  if (!isClusterUrl(url)) return new Redis(url, optionsFor(role));
  const parsed = new URL(url.replace(/^(rediss?)\+cluster:/i, "$1:"));
  const seed = { host: parsed.hostname, port: Number(parsed.port || 6379) };
  const extra = (parsed.searchParams.get("nodes") ?? "")
    .split(",")
    .filter(Boolean)
    .map((node) => {
      const [host, port] = node.split(":");
      return { host: host!, port: Number(port || 6379) };
    });
  const { lazyConnect: _lazy, retryStrategy, ...perNode } = optionsFor(role);
  const options: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: role !== "producer",
    clusterRetryStrategy: retryStrategy,
    redisOptions: {
      ...perNode,
      username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
      password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
      tls: parsed.protocol === "rediss:" ? {} : undefined,
    },
  };
  return new Cluster([seed, ...extra], options) as unknown as Redis;
}

/**
 * Opens a connection and waits until it is ready, or throws RedisUnavailableError (the URL in the
 * message has its password masked). `rediss://` URLs use TLS; ACL users come from the URL;
 * `redis+cluster://` opens a Redis Cluster (see openRedis).
 */
export async function connectRedis(
  url: string,
  role: RedisRole,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<Redis> {
  const redis = openRedis(url, role);
  let lastError: Error | undefined;
  const onError = (error: Error) => {
    lastError = error;
  };
  // Auth and protocol errors will not heal by reconnecting: fail at once on those.
  const fatal = (error: Error) => /NOAUTH|WRONGPASS|NOPERM|ERR /.test(error.message);
  redis.on("error", onError);
  const timeoutMs = opts.timeoutMs ?? 5_000;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (why: string) =>
        reject(new RedisUnavailableError(`Redis at ${redactUrl(url)} is unreachable: ${why}`));
      timer = setTimeout(() => fail(lastError?.message ?? `no answer within ${timeoutMs} ms`), timeoutMs);
      redis.on("error", (error: Error) => {
        if (fatal(error)) fail(error.message);
      });
      onAbort = () => fail("aborted");
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      redis.once("ready", () => resolve());
      // A lazy client (a Cluster) connects on request; errors arrive through the listeners above.
      if (redis.status === "wait") redis.connect().catch(() => undefined);
    });
  } catch (error) {
    redis.disconnect();
    throw error;
  } finally {
    clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener("abort", onAbort);
  }
  return redis;
}

/** Quits politely, then disconnects; safe to call on a connection that is already gone. */
export async function closeRedis(redis: Redis | undefined): Promise<void> {
  if (!redis || redis.status === "end") return;
  try {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([redis.quit(), new Promise((resolve) => (timer = setTimeout(resolve, 1_000)))]).finally(() =>
      clearTimeout(timer),
    );
  } catch {
    // already closing or not connected
  }
  redis.disconnect();
}

/** ioredis errors once connected: the connection dropped, or it gave up on a command while away. */
export function isRedisConnectionError(error: unknown): boolean {
  const e = error as { name?: string; message?: string } | undefined;
  return (
    e?.name === "MaxRetriesPerRequestError" ||
    /Connection is closed|Stream isn't writeable|enableOfflineQueue|ECONNREFUSED|ECONNRESET|ETIMEDOUT/.test(
      e?.message ?? "",
    )
  );
}

// Values handed from the global setups (test/support/global-setup.ts, long-task-setup.ts) to tests via `inject()`.
import "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    /** redis://host:port of the Redis that tests share (REDIS_URL, a container, or redis-server). */
    redisUrl: string;
    /** The >300 s task test/support/long-task-setup.ts started (null when it started none). */
    longTask: { redisUrl: string; queue: string; jobId: string } | null;
  }
}

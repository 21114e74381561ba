// Values handed from test/support/global-setup.ts to tests via `inject()`.
import "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    /** redis://host:port of the Redis that tests share (REDIS_URL, a container, or redis-server). */
    redisUrl: string;
  }
}

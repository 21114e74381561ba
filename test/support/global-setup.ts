/**
 * Vitest globalSetup: checks that the machine has what the suite needs (./machine), then provides
 * `redisUrl` (read it in tests with `inject("redisUrl")`).
 * Order: REDIS_URL from the environment; else a redis:7-alpine container if a Docker engine
 * answers within 2 s; else the local `redis-server` binary (see ./redis).
 */
import type { TestProject } from "vitest/node";
import { checkMachine } from "./machine";
import { startRedisServer } from "./redis";

const DOCKER_PROBE_MS = 2_000;

async function dockerAvailable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("docker probe timed out")), DOCKER_PROBE_MS);
    });
    try {
      await Promise.race([getContainerRuntimeClient(), timeout]);
      return true;
    } finally {
      clearTimeout(timer);
    }
  } catch {
    return false;
  }
}

async function startContainer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const { GenericContainer, Wait } = await import("testcontainers");
  const container = await new GenericContainer("redis:7-alpine")
    .withCommand(["redis-server", "--appendonly", "yes", "--maxmemory-policy", "noeviction"])
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage("Ready to accept connections"))
    .start();
  return {
    url: `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
    stop: async () => {
      await container.stop();
    },
  };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  checkMachine();
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv) {
    console.log(`[global-setup] Redis: REDIS_URL ${fromEnv}`);
    project.provide("redisUrl", fromEnv);
    return async () => {};
  }
  if (await dockerAvailable()) {
    const { url, stop } = await startContainer();
    console.log(`[global-setup] Redis: testcontainers redis:7-alpine at ${url}`);
    project.provide("redisUrl", url);
    return stop;
  }
  const redis = await startRedisServer({ appendonly: true });
  console.log(`[global-setup] Redis: local redis-server at ${redis.url} (no Docker engine)`);
  project.provide("redisUrl", redis.url);
  return () => redis.close();
}

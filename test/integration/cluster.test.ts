/**
 * Scale-out: the whole pipeline on a local 3-master Redis Cluster. Every key of a queue shares the
 * hash tag `{queue}`, so BullMQ's multi-key scripts and our result records live in one slot.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queueKeys } from "../../src/shared/keys";
import { closeRedis, connectRedis } from "../../src/shared/redis";
import { startRedisCluster, type RedisCluster } from "../support/redis-cluster";
import { useStack } from "../support/stack";

describe("on a Redis Cluster", () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  });
  afterAll(async () => {
    await cluster?.close();
  });
  const stack = useStack(() => ({ configEnv: { REDIS_URL: cluster.url }, worker: { concurrency: 2 } }));

  it("runs enqueue → worker → result through redis+cluster://", async () => {
    const jobs = await Promise.all(
      ["one", "two", "three"].map((word) =>
        stack.dispatcher.enqueue({ prompt: `cluster ${word}`, model: "fake/echo" }),
      ),
    );
    const records = await Promise.all(jobs.map(({ jobId }) => stack.dispatcher.wait(jobId, { timeoutMs: 120_000 })));
    expect(records.map((r) => [r.state, r.text])).toEqual([
      ["completed", "echo: cluster one"],
      ["completed", "echo: cluster two"],
      ["completed", "echo: cluster three"],
    ]);
    expect(records.every((r) => r.sessionId?.startsWith("ses_"))).toBe(true);

    // The records really are on the cluster, all in the queue's one slot.
    const redis = await connectRedis(cluster.url, "producer");
    try {
      const keys = queueKeys(stack.queue);
      const raw = await redis.get(keys.result(jobs[0]!.jobId));
      expect(JSON.parse(raw!)).toMatchObject({ state: "completed", text: "echo: cluster one" });
      const slots = new Set(
        await Promise.all(
          [keys.result("a"), keys.events, `${keys.bullPrefix}:${stack.queue}:wait`].map((k) =>
            redis.cluster("KEYSLOT", k),
          ),
        ),
      );
      expect(slots.size).toBe(1);
      const info = String(await redis.cluster("INFO"));
      expect(info).toContain("cluster_known_nodes:3");
    } finally {
      await closeRedis(redis);
    }
  });
});

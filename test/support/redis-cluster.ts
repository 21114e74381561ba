/**
 * A local Redis Cluster for tests: three masters (no replicas), each a real `redis-server` with
 * `cluster-enabled yes` on free loopback ports and its own temp dir, joined with
 * `redis-cli --cluster create`. `url` is a `redis+cluster://` URL seeded with the first node.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./redis";
import { until } from "./until";

const run = promisify(execFile);

export interface RedisCluster {
  url: string;
  ports: number[];
  close(): Promise<void>;
}

export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const root = await mkdtemp(join(tmpdir(), "ocd-cluster-"));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  const close = async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGKILL");
          }),
      ),
    );
    await rm(root, { recursive: true, force: true, maxRetries: 3 });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      const busPort = await freePort();
      const dir = join(root, `node-${i}`);
      await run("mkdir", ["-p", dir]);
      const child = spawn(
        "redis-server",
        [
          "--bind",
          "127.0.0.1",
          "--port",
          String(port),
          "--cluster-enabled",
          "yes",
          "--cluster-port",
          String(busPort),
          "--cluster-config-file",
          join(dir, "nodes.conf"),
          "--cluster-node-timeout",
          "5000",
          "--dir",
          dir,
          "--save",
          "",
          "--appendonly",
          "no",
          "--protected-mode",
          "no",
          "--maxmemory-policy",
          "noeviction",
          "--logfile",
          join(dir, "redis.log"),
        ],
        { stdio: "ignore" },
      );
      children.push(child);
      ports.push(port);
    }
    for (const port of ports)
      await until(`node ${port} to answer PING`, async () => (await cli(port, "PING")) === "PONG", 20_000);
    await run(
      "redis-cli",
      ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"],
      {
        timeout: 30_000,
      },
    );
    for (const port of ports) {
      // Slots can be served before gossip has told every node of every other one.
      await until(
        `node ${port} to report cluster_state:ok and know all ${ports.length} nodes`,
        async () => {
          const info = await cli(port, "CLUSTER", "INFO");
          return info.includes("cluster_state:ok") && info.includes(`cluster_known_nodes:${ports.length}`);
        },
        20_000,
      );
    }
  } catch (error) {
    await close();
    throw new Error(
      `could not start a Redis Cluster (needs redis-server and redis-cli on PATH): ${(error as Error).message}`,
    );
  }
  return { url: `redis+cluster://127.0.0.1:${ports[0]}`, ports, close };
}

async function cli(port: number, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { timeout: 5_000 });
    return stdout.trim();
  } catch {
    return "";
  }
}

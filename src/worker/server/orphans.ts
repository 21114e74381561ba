/**
 * No opencode server outlives its worker. Two mechanisms:
 * - a reaper: a tiny `sh` process started next to each spawned server, reading a pipe from the
 *   worker. When the worker exits in any way (kill -9 included) the pipe closes, and the reaper
 *   kills the server and removes its data directory;
 * - a sweep: each server's data directory holds `pids.json` (worker pid, server pid, port); a
 *   worker starting on the same DISPATCH_DATA_DIR kills the server of every directory whose worker
 *   is gone (checking /proc/<pid>/cmdline that it still is that `opencode serve`) and removes it.
 *   This catches what a reaper could not (the reaper killed too, a crash before it started).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../shared/logger.js";

export const PIDS_FILE = "pids.json";

interface Pids {
  owner: number;
  /** When the owner process started (ms): tells this process from an earlier one with the same pid. */
  ownerStartedAt: number;
  server: number;
  port: number;
}

const processStartedAt = Math.round(Date.now() - process.uptime() * 1_000);

/** The pids file of a server this process spawns. */
export function ownPids(server: number, port: number): Pids {
  return { owner: process.pid, ownerStartedAt: processStartedAt, server, port };
}

/** Records who owns a server's data directory. */
export function writePids(dataDir: string, pids: Pids): void {
  writeFileSync(join(dataDir, PIDS_FILE), JSON.stringify(pids));
}

/** Starts the reaper of a spawned server; `stop()` retires it when the worker stops the server itself. */
export function startReaper(serverPid: number, dataDir: string): { stop(): void } {
  let reaper: ChildProcess | undefined;
  try {
    reaper = spawn(
      "sh",
      [
        "-c",
        'cat >/dev/null; kill -9 -- -"$1" 2>/dev/null || kill -9 "$1" 2>/dev/null; rm -rf "$2"',
        "reaper",
        String(serverPid),
        dataDir,
      ],
      {
        stdio: ["pipe", "ignore", "ignore"],
        detached: true,
      },
    );
    reaper.on("error", () => undefined);
    reaper.stdin?.on("error", () => undefined);
    reaper.unref();
  } catch {
    // no sh: the sweep still covers this server
  }
  return {
    stop() {
      reaper?.kill("SIGKILL"); // before the pipe closes, so that it kills nothing
      reaper?.stdin?.destroy();
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** True if the pid is still that `opencode serve` on that port (where /proc says so). */
async function isServer(pid: number, port: number): Promise<boolean> {
  try {
    const args = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    return args.includes("serve") && args.includes(String(port));
  } catch {
    return process.platform !== "linux" && alive(pid);
  }
}

/** Kills the servers of dead workers under `dataDir` and removes their directories. Returns how many it removed. */
export async function sweepOrphans(dataDir: string, log: Logger): Promise<number> {
  let entries: string[];
  try {
    entries = (await readdir(dataDir)).filter((name) => name.startsWith("worker-"));
  } catch {
    return 0;
  }
  let swept = 0;
  for (const name of entries) {
    const dir = join(dataDir, name);
    let pids: Pids;
    try {
      pids = JSON.parse(await readFile(join(dir, PIDS_FILE), "utf8")) as Pids;
    } catch {
      continue; // being created, or not ours
    }
    const ownerAlive =
      pids.owner === process.pid ? Math.abs(pids.ownerStartedAt - processStartedAt) < 5_000 : alive(pids.owner);
    if (ownerAlive) continue;
    if (alive(pids.server) && (await isServer(pids.server, pids.port))) {
      try {
        try {
          process.kill(-pids.server, "SIGKILL"); // its process group: the server and what its tools started
        } catch {
          process.kill(pids.server, "SIGKILL");
        }
        log.warn({ pid: pids.server, dir }, "killed the opencode server of a worker that is gone");
      } catch {
        // exited meanwhile
      }
    }
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    swept += 1;
  }
  return swept;
}
